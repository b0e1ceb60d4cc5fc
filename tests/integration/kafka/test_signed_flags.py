"""Threaded apps and OpenFeature verify flag states too, on a real broker.

The flag-state topic holds a state the controller signed, then a forgery of
the same flag at the top version and 100%, then the controller's signed
kill. ``SyncFlags`` given the controller's key, and the OpenFeature provider
over it, serve the signed state and then the kill, and count the forgery.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import Reason

from controller.core.trust.signing import StateSigner, generate_key
from controller.core.wire import JsonObject
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm, FlagState, FlagStatus
from controller.sdk.openfeature import RolloutProvider
from controller.sdk.sync import SyncFlags
from controller.settings import KafkaSettings

pytestmark = pytest.mark.integration

TopicFactory = Callable[..., Awaitable[str]]
FLAG = "checkout.new-flow"
UNITS = [f"user-{i}" for i in range(200)]


def _message(state: dict[str, Any]) -> bytes:
    envelope = {"type": "flag_state", "v": 1, "id": uuid.uuid4().hex, "ts": time.time_ns() // 10**6}
    return orjson.dumps(envelope | state)


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    async with AIOKafkaProducer(bootstrap_servers=bootstrap) as producer:
        for value in values:
            await producer.send_and_wait(topic, key=FLAG.encode(), value=value)


async def test_sync_flags_and_openfeature_serve_only_signed_states(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    flag_topic = await topic_factory("flag-state", partitions=1)
    events_topic = await topic_factory("events", partitions=1)
    key, public = generate_key()
    signer = StateSigner(key, "controller")
    state: JsonObject = {"flag": FLAG, "status": "rolling_out", "percent": 30.0, "salt": "s1"}
    signed = signer.sign(state | {"version": 3})
    forged = state | {"version": 2**31 - 1, "status": "completed", "percent": 100.0}
    # Given a signed state and, after it, a forgery on the topic
    await _produce(kafka_bootstrap, flag_topic, [_message(signed), _message(forged)])
    flags = SyncFlags(
        KafkaSettings(bootstrap_servers=kafka_bootstrap),
        flag_topic=flag_topic,
        events_topic=events_topic,
        flag_keys={"controller": public},
    )
    domain = f"signed-{uuid.uuid4().hex[:8]}"
    try:
        assert await asyncio.to_thread(flags.wait_loaded, 30)
        api.set_provider_and_wait(RolloutProvider(flags, exposures="off"), domain)
        client = api.get_client(domain)
        # When an app evaluates the flag through OpenFeature
        for unit in UNITS:
            details = client.get_string_details(FLAG, "none", EvaluationContext(unit))
            # Then it gets the signed state's arm, and the forgery was refused and counted
            assert details.value == assign(FLAG, "s1", unit, 30.0).value
            assert details.flag_metadata["version"] == 3
        assert (flags.book.rejected, flags.book.rejected_by) == (1, {"unsigned": 1})
        # When the controller's signed kill follows
        killed = threading.Event()

        def changed(new: FlagState | None) -> None:
            if new is not None and new.status is FlagStatus.KILLED:
                killed.set()

        flags.on_change(changed)
        kill = signer.sign(state | {"version": 4, "status": "killed", "percent": 0.0})
        await _produce(kafka_bootstrap, flag_topic, [_message(kill)])
        assert await asyncio.to_thread(killed.wait, 30)
        # Then every unit is served control, through OpenFeature too
        details = client.get_string_details(FLAG, "none", EvaluationContext("user-1"))
        assert (details.value, details.reason) == (Arm.CONTROL.value, Reason.DISABLED)
        assert flags.book.rejected == 1
    finally:
        api.clear_providers()
        await asyncio.to_thread(flags.close)
