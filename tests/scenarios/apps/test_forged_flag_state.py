"""A forged flag state cannot pin apps: verifying apps refuse it, and a kill reaches all.

Someone who can write to the flag-state topic (or answer in the controller's
place over HTTP) publishes the controller's flag at version 2**31 - 1 and 100%.
Before signing, every app held it and ignored every later state of the flag,
the kill included. Here the real daemon signs its states; apps given its
public key refuse the forgery and count it, and apps that do not verify, which
do hold it, still take the kill.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from controller.core.trust import signing
from controller.core.wire.messages import Arm, FlagStatus
from controller.sdk.flags import FlagBook, FlagClient
from controller.sdk.poller import FlagPoller
from controller.settings import KafkaSettings
from tests.scenarios.harness import Scenario, manual_plan
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "search.ranking-v3"
KEY_ID = "controller-test"
MAX_VERSION = 2**31 - 1


def _forged(state: dict[str, Any], **change: Any) -> dict[str, Any]:
    """The daemon's state of ``FLAG`` raised to the top version at 100%, unsigned."""
    fields = ("flag", "salt", "rollout_id", "stage")
    forged = {k: state[k] for k in fields} | {"status": "completed", "percent": 100.0}
    return forged | {"version": MAX_VERSION} | change


class _Forging(httpx.AsyncBaseTransport):
    """A proxy in front of the daemon's /flags that puts a forged state before the real one."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code != 200:
            return response
        states = orjson.loads(await response.aread())
        forged = [_forged(s, key_id=KEY_ID, sig=s["sig"]) for s in states]
        headers = {"ETag": response.headers.get("ETag", "")}
        return httpx.Response(200, content=orjson.dumps(forged + states), headers=headers)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _holds(book: FlagBook, status: FlagStatus, version: int | None = None) -> bool:
    state = book.state(FLAG)
    if state is None or state.status is not status:
        return False
    return version is None or state.version == version


async def test_a_forged_state_is_refused_and_the_kill_reaches_every_app(
    scenario: Scenario,
) -> None:
    key, public = signing.generate_key()
    keys = {KEY_ID: public}
    port = free_port()
    # Apps poll /flags without a key here; who may read it is test_read_access's subject.
    scenario.configure(
        RC_HTTP__PUBLIC_FLAGS="true",
        RC_HTTP__PORT=str(port),
        RC_SIGNING__KEY=signing.private_key_text(key),
        RC_SIGNING__KEY_ID=KEY_ID,
    )
    scenario.start_daemon()
    kafka = KafkaSettings(bootstrap_servers=scenario.bootstrap)
    topic = scenario.topics["flag_state"]
    url = f"http://127.0.0.1:{port}"
    await scenario.start(FLAG, manual_plan())
    async with (
        FlagClient(kafka, topic=topic, keys=keys) as verifying,
        FlagClient(kafka, topic=topic) as trusting,
        FlagPoller(url, interval=0.1, keys=keys) as poller,
        FlagPoller(url, interval=0.1, keys=keys, transport=_Forging()) as proxied,
        AIOKafkaProducer(bootstrap_servers=scenario.bootstrap) as producer,
    ):
        # Given every app serving the daemon's signed state of the rollout's first stage
        books = (verifying, trusting, poller, proxied)
        await scenario.until(
            lambda: all(_holds(b, FlagStatus.ROLLING_OUT) for b in books),
            timeout=30,
            what="every app at the first stage",
        )
        real = verifying.state(FLAG)
        assert real is not None
        assert (real.key_id, proxied.rejected >= 1) == (KEY_ID, True)
        genuine = orjson.loads(real.model_dump_json())
        # When states of the flag at the top version and 100% go straight to the topic:
        # unsigned, and with the daemon's key id and another state's signature
        forgeries = [_forged(genuine), _forged(genuine, key_id=KEY_ID, sig=real.sig)]
        for forged in forgeries:
            message = {"type": "flag_state", "v": 1, "id": "forged", "ts": _now_ms(), **forged}
            await producer.send_and_wait(topic, key=FLAG.encode(), value=orjson.dumps(message))
        # Then the app that trusts the topic holds the forgery (it cannot tell)...
        await scenario.until(
            lambda: _holds(trusting, FlagStatus.COMPLETED, MAX_VERSION),
            timeout=30,
            what="the trusting app to read the forgery",
        )
        # ...while the verifying app read both, refused and counted them, and kept the real state
        await scenario.until(
            lambda: verifying.rejected == 2, timeout=30, what="both forgeries refused"
        )
        assert verifying.state(FLAG) == real
        assert verifying.rejected_by == {"unsigned": 1, "bad_signature": 1}
        assert verifying.arm(FLAG, "user-1")[1] == real.version
        assert trusting.arm(FLAG, "user-1") == (Arm.TREATMENT, MAX_VERSION)

        # When the operator kills the flag
        await scenario.send(scenario.command("kill", FLAG, reason="forged state"), flag=FLAG)
        # Then the kill reaches every app: over Kafka, over /flags, through the forging proxy,
        # and the app that holds the forged version too
        await scenario.until(
            lambda: all(b.arm(FLAG, "user-1") == (Arm.CONTROL, 0) for b in books),
            timeout=30,
            what="every app to serve control after the kill",
        )
        kill = verifying.state(FLAG)
        assert kill is not None
        assert (kill.status, kill.key_id) == (FlagStatus.KILLED, KEY_ID)
        assert kill.version > real.version
        # /flags carries the same signature as the topic: the same signed bytes
        assert _served(poller) == _served(proxied) == _served(verifying)
        assert (trusting.overridden, trusting.rejected) == (1, 0)
        assert proxied.rejected >= 2  # the forgery in front of the stage and of the kill
        assert poller.rejected == 0


def _served(book: FlagBook) -> tuple[Any, ...]:
    state = book.state(FLAG)
    assert state is not None
    return (state.version, state.status, state.percent, state.salt, state.key_id, state.sig)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_without_a_key_states_are_unsigned_with_a_warning_and_verifying_apps_hold_none(
    scenario: Scenario,
) -> None:
    port = free_port()
    # Apps poll /flags without a key here; who may read it is test_read_access's subject.
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__PUBLIC_FLAGS="true")
    scenario.start_daemon()
    kafka = KafkaSettings(bootstrap_servers=scenario.bootstrap)
    topic = scenario.topics["flag_state"]
    _key, public = signing.generate_key()
    await scenario.start(FLAG, manual_plan())
    async with (
        FlagClient(kafka, topic=topic) as plain,
        FlagClient(kafka, topic=topic, keys={KEY_ID: public}) as verifying,
        FlagPoller(f"http://127.0.0.1:{port}", interval=0.1, keys={KEY_ID: public}) as poller,
    ):
        # Given a daemon with no signing key: it says so at start, and works as before
        assert "flag_states_unsigned" in scenario.daemon.log_text()
        await scenario.until(
            lambda: _holds(plain, FlagStatus.ROLLING_OUT), timeout=30, what="the plain app"
        )
        state = plain.state(FLAG)
        assert state is not None
        assert (state.key_id, state.sig) == (None, None)
        # Then apps told to verify refuse its states, count them, and serve control
        await scenario.until(
            lambda: verifying.rejected >= 1 and poller.rejected >= 1,
            timeout=30,
            what="the verifying apps to refuse the unsigned state",
        )
        for book in (verifying, poller):
            assert book.state(FLAG) is None
            assert book.arm(FLAG, "user-1") == (Arm.CONTROL, 0)
