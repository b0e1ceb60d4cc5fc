"""Holdouts served alike, in process: the one evaluation, OFREP's answers, the SDK's book and
its OpenFeature provider agree, a held-out unit is control with reason ``HOLDOUT``, and its
exposure is folded into the holdout's cell, apart from the arms."""

from __future__ import annotations

import uuid

from openfeature import api
from openfeature.evaluation_context import EvaluationContext

from controller.core.reading.views import FlagStateView
from controller.core.rules import Ring
from controller.core.stats import fold
from controller.core.stats.aggregates import CellDelta, CellKey
from controller.core.wire import FlagState, FlagStatus, Holdout, evaluate, held_out
from controller.core.wire.decoding import Rejection, decode_event
from controller.sdk.events import EventEmitter
from controller.sdk.flags import FlagBook, FlagClient
from controller.sdk.measure import Flags
from controller.sdk.openfeature import RolloutProvider
from tests.unit.adapters.ofrep.test_ofrep_prerequisites import _Source, served

Q3 = Holdout(name="q3-2026", percent=5.0)


def view(flag: str, percent: float, status: FlagStatus = FlagStatus.ROLLING_OUT) -> FlagStateView:
    return FlagStateView(
        flag=flag, version=4, status=status, percent=percent, salt=f"salt-{flag}",
        rollout_id=f"r-{flag}", stage=1, holdout=Q3,
    )  # fmt: skip


VIEWS = [
    view("checkout", 50.0),
    view("banner", 100.0, FlagStatus.COMPLETED),
    view("search", 10.0, FlagStatus.PAUSED),
    view("old", 100.0, FlagStatus.KILLED),
    view("pricing", 0.0).model_copy(update={"rings": [Ring(threshold=60_000)]}),
]


async def test_every_evaluator_holds_the_same_units_out() -> None:
    held = {v.flag: v for v in VIEWS}
    book = FlagBook(
        FlagState.model_validate({"type": "flag_state", "v": 1, "id": v.flag, "ts": 1,
                                  **v.served()})
        for v in VIEWS
    )  # fmt: skip
    provider = RolloutProvider(_Source(book), exposures="off", traces=False)  # type: ignore[arg-type]
    disagreements, held_units = [], 0
    async with served(VIEWS) as client:
        for u in range(600):
            unit = f"u{u}"
            body = {"context": {"targetingKey": unit}}
            answered = (await client.post("/ofrep/v1/evaluate/flags", json=body)).json()
            over_ofrep = {f["key"]: f for f in answered["flags"]}
            out = held_out(Q3.name, Q3.percent, unit)
            held_units += out
            for flag, state in held.items():
                core = evaluate(flag, state, unit, states=held)
                sdk = book.evaluate(flag, unit)
                resolved = provider.resolve_boolean_details(flag, False, EvaluationContext(unit))
                ofrep = over_ofrep[flag]
                answers = {
                    (core.variant, core.reason.value, core.metadata().get("cohort")),
                    (sdk.variant, sdk.reason.value, sdk.metadata().get("cohort")),
                    (ofrep["variant"], ofrep["reason"], ofrep["metadata"].get("cohort")),
                    (
                        resolved.variant,
                        getattr(resolved.reason, "value", resolved.reason),
                        resolved.flag_metadata.get("cohort"),
                    ),
                }
                if len(answers) != 1:
                    disagreements.append((flag, unit, answers))
                disabled = state.status is FlagStatus.KILLED
                expected = ("control", "HOLDOUT", "holdout") if out and not disabled else None
                if expected is not None and answers != {expected}:
                    disagreements.append((flag, unit, answers))
                if out and ofrep["value"] is not False:
                    disagreements.append((flag, unit, ofrep["value"]))
    assert disagreements == []
    assert 10 < held_units < 60  # about 5% of 600


async def test_a_held_out_unit_over_ofrep_reports_its_rollout_and_cohort() -> None:
    unit = next(f"u{i}" for i in range(10_000) if held_out(Q3.name, Q3.percent, f"u{i}"))
    async with served(VIEWS) as client:
        body = {"context": {"targetingKey": unit}}
        one = (await client.post("/ofrep/v1/evaluate/flags/banner", json=body)).json()
        keyless = await client.post("/ofrep/v1/evaluate/flags/banner", json={"context": {}})
    assert (one["variant"], one["value"], one["reason"]) == ("control", False, "HOLDOUT")
    assert one["metadata"] == {
        "version": "4",
        "flag_version": 4,
        "rollout_id": "r-banner",
        "stage": 1,
        "cohort": "holdout",
    }
    assert keyless.json()["errorCode"] == "TARGETING_KEY_MISSING"


def test_the_providers_hook_reports_a_held_out_unit_apart_from_the_arms() -> None:
    held, free = (
        next(f"u{i}" for i in range(10_000) if held_out(Q3.name, Q3.percent, f"u{i}") is out)
        for out in (True, False)
    )
    states = [FlagState.model_validate({"type": "flag_state", "v": 1, "id": "s", "ts": 1,
                                        **VIEWS[1].served()})]  # fmt: skip
    flags = Flags(FlagClient(states=states), EventEmitter())
    flags.book.mark_ready()
    domain = f"test-{uuid.uuid4().hex[:8]}"
    try:
        api.set_provider_and_wait(RolloutProvider(flags, traces=False), domain)
        client = api.get_client(domain)
        assert client.get_boolean_value("banner", True, EvaluationContext(held)) is False
        assert client.get_boolean_value("banner", False, EvaluationContext(free)) is True
    finally:
        api.clear_providers()
    cells: dict[CellKey, CellDelta] = {}
    for _, raw in flags.events._queue:
        decoded = decode_event(raw, max_bytes=9999)
        assert not isinstance(decoded, Rejection), decoded
        fold([decoded], cells)
    assert {key: cell.exp for key, cell in cells.items()} == {
        ("banner", 4, "holdout"): 1,
        ("banner", 4, "treatment"): 1,
    }
