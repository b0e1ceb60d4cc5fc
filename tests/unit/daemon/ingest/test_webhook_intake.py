"""The webhook intake takes a claim only for a signal it publishes, under injected faults."""

from __future__ import annotations

import asyncio

import pytest

from controller.core.common.errors import StoreUnavailable
from controller.daemon.metrics import Metrics
from controller.daemon.serving.intake import MonitorIntake
from controller.integrations.monitors import MonitorSignal, PayloadError

SIGNAL = MonitorSignal("monitor", "payments", "down", "pd-1")


class Claims:
    """Claims in a set; ``fail_claim`` makes the next claim call raise after landing."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.fail_claim: BaseException | None = None

    async def claim(self, claim_id: str, *, ttl_s: int) -> bool:
        fresh = claim_id not in self.held
        self.held.add(claim_id)
        if self.fail_claim is not None:
            raise self.fail_claim
        return fresh

    async def release(self, claim_id: str) -> None:
        self.held.discard(claim_id)


class Outputs:
    """Records what was published; ``fail`` makes publishing raise it instead."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes]] = []
        self.fail: BaseException | None = None

    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        if self.fail is not None:
            raise self.fail
        self.published.extend(messages)


def intake(claims: Claims, outputs: Outputs) -> MonitorIntake:
    return MonitorIntake(
        claims=claims,
        outputs=outputs,
        topic="monitors",
        monitors={"payments": ["checkout"]},
        dedupe_seconds=60,
        metrics=Metrics(),
    )


async def test_a_published_signal_is_claimed_and_its_redelivery_is_a_duplicate() -> None:
    claims, outputs = Claims(), Outputs()
    first = await intake(claims, outputs).accept(SIGNAL)
    again = await intake(claims, outputs).accept(SIGNAL)
    assert (first.accepted, again.accepted) == (True, False)
    assert first.flags == ["checkout"]
    assert len(outputs.published) == 1
    assert claims.held == {SIGNAL.message_id}


async def test_a_signal_the_contract_refuses_takes_no_claim() -> None:
    claims, outputs = Claims(), Outputs()
    too_long = MonitorSignal("monitor", "payments", "down", "i" * 300)
    with pytest.raises(PayloadError, match="incident_id"):
        await intake(claims, outputs).accept(too_long)
    assert claims.held == set()
    assert outputs.published == []


@pytest.mark.parametrize(
    "failure",
    [StoreUnavailable("broker down"), RuntimeError("a bug"), asyncio.CancelledError()],
    ids=["controller-error", "unexpected", "cancelled"],
)
async def test_any_publish_failure_releases_the_claim_so_a_retry_is_accepted(
    failure: BaseException,
) -> None:
    claims, outputs = Claims(), Outputs()
    outputs.fail = failure
    with pytest.raises(type(failure)):
        await intake(claims, outputs).accept(SIGNAL)
    assert claims.held == set()
    outputs.fail = None
    retry = await intake(claims, outputs).accept(SIGNAL)
    assert retry.accepted
    assert len(outputs.published) == 1


async def test_a_claim_that_failed_after_landing_is_released() -> None:
    claims, outputs = Claims(), Outputs()
    claims.fail_claim = StoreUnavailable("timed out after the write")
    with pytest.raises(StoreUnavailable):
        await intake(claims, outputs).accept(SIGNAL)
    assert claims.held == set()
    claims.fail_claim = None
    assert (await intake(claims, outputs).accept(SIGNAL)).accepted
