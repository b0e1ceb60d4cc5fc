"""Every kind of decision leaves the daemon signed, whichever method publishes it.

The kinds are the contract's own (``Decision.kind``): a kind added there is
published through :class:`SigningOutputs` here before this test passes. That
every part of the daemon publishing decisions is wired through it is shown end
to end by ``tests/scenarios/operators/test_signed_export.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import orjson
import pytest

from controller.core.trust.signing import StateSigner, StateVerifier, generate_key
from controller.core.wire import Decision
from controller.daemon.outputs import SigningOutputs

KINDS: tuple[str, ...] = get_args(Decision.model_fields["kind"].annotation)
KEY, PUBLIC = generate_key()
VERIFIER = StateVerifier({"ctl-1": PUBLIC})


class _Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes | None]] = []

    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        self.published.extend(messages)

    async def publish_values(self, messages: Sequence[tuple[str, str, bytes | None]]) -> None:
        self.published.extend(messages)


def _decision(kind: str) -> bytes:
    decision = Decision.model_validate(
        {"type": "decision", "v": 1, "id": f"d-{kind}", "ts": 1_790_000_000_000}
        | {"flag": f"{kind}:x", "kind": kind, "action": "act", "outcome": "applied"}
        | {"evidence": {}}
    )
    return decision.model_dump_json(exclude_none=True).encode()


def test_the_kinds_are_read_from_the_contract() -> None:
    assert {"command", "segment", "app_key", "pipeline", "ingest"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["publish", "publish_values"])
async def test_a_decision_of_every_kind_is_signed_on_its_way_out(kind: str, method: str) -> None:
    inner = _Recorder()
    outputs = SigningOutputs(
        inner, flag_state_topic="fs", signer=StateSigner(KEY, "ctl-1"), decisions_topic="dec"
    )
    await getattr(outputs, method)([("dec", "k", _decision(kind))])
    [(topic, key, value)] = inner.published
    assert (topic, key) == ("dec", "k")
    assert value is not None
    published = orjson.loads(value)
    assert (published["kind"], published["key_id"]) == (kind, "ctl-1")
    assert VERIFIER.decision_problem(published) is None


async def test_values_on_other_topics_and_tombstones_pass_as_they_are() -> None:
    inner = _Recorder()
    outputs = SigningOutputs(
        inner, flag_state_topic="fs", signer=StateSigner(KEY, "ctl-1"), decisions_topic="dec"
    )
    record = b'{"type":"segment","name":"beta"}'
    await outputs.publish_values([("segments", "beta", record), ("dec", "gone", None)])
    assert inner.published == [("segments", "beta", record), ("dec", "gone", None)]
