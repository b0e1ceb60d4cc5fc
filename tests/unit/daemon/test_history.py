"""Gate history: points from verdicts, thinning, the stored form, and the recorder."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.adapters.memory import (
    MemoryAggregates,
    MemoryGateHistory,
    MemoryOutputs,
    MemoryStates,
)
from controller.core.common.errors import StoreUnavailable
from controller.core.machine.gate import evaluate
from controller.core.reading import history
from controller.core.reading.served_history import HistoryPoint
from controller.core.rollouts.rollout import Rollout, Verdict
from controller.core.stats.aggregates import ArmAggregate
from controller.core.wire import GateEvidence, JsonValue
from controller.daemon.rollouts.engine import build_engine
from controller.daemon.rollouts.history import Recorder
from controller.ports import OutboxMessage
from controller.settings import EngineSettings, HistorySettings, TopicSettings
from tests.support.documents import as_read
from tests.unit.core.machine.gate import test_limit_proof as limit_proof
from tests.unit.core.machine.gate.test_gate import EARLY, EMPTY, HEALTHY, T0, arm, data, rollout
from tests.unit.daemon.rollouts.test_engine import NOW, NoDeadLetters, start

REGRESSED = data(arm(units=1_111, errors=650), arm())


def verdict_at(minutes: float, agg: object = HEALTHY) -> tuple[Verdict, object]:
    now = T0 + timedelta(minutes=minutes)
    return evaluate(rollout(), agg, now), now  # type: ignore[arg-type]


def test_a_point_carries_each_guardrails_test_srm_and_arm_counts() -> None:
    verdict = evaluate(rollout(), REGRESSED, EARLY)
    point = history.point_of(rollout(), verdict, EARLY)
    test = as_read(verdict.evidence)["guardrails"]["error_rate"]
    error_rate = point.guardrails["error_rate"]
    assert error_rate is not None
    assert (error_rate.delta, error_rate.lower, error_rate.regressed) == (
        test["delta"],
        test["lower"],
        True,
    )
    assert error_rate.crossed
    assert point.verdict == "rollback"
    assert point.arms["treatment"] == (1_111, 50_000, 100_000, 650, 5_000)
    assert point.srm_p == as_read(verdict.evidence)["srm"]["sequential_p_value"]
    assert point.ts_ms == int(EARLY.timestamp() * 1000)


def test_insufficient_data_is_kept_as_none() -> None:
    point = history.point_of(rollout(), evaluate(rollout(), EMPTY, EARLY), EARLY)
    assert point.guardrails["error_rate"] is None
    served: Any = point.as_json()  # as a client reads it
    assert served["guardrails"]["error_rate"] is None


def test_stored_form_round_trips_within_five_digits_and_is_small() -> None:
    verdict = evaluate(rollout(), REGRESSED, EARLY)
    point = history.point_of(rollout(), verdict, EARLY)
    raw = history.encode(point)
    back = history.decode(raw)
    assert back is not None
    assert len(raw) < 400  # three guardrails
    assert (back.ts_ms, back.stage, back.verdict, back.arms) == (
        point.ts_ms,
        point.stage,
        point.verdict,
        point.arms,
    )
    for metric, test in point.guardrails.items():
        got = back.guardrails[metric]
        assert (test is None) == (got is None)
        if test is not None and got is not None:
            assert got.lower == pytest.approx(test.lower, rel=1e-4)
            assert got.regressed == test.regressed


def test_infinite_bounds_survive_the_stored_form() -> None:
    point = history.GatePoint(
        ts_ms=1,
        stage=0,
        percent=1.0,
        verdict="hold",
        srm_p=1.0,
        arms={"treatment": (0,) * 5, "control": (0,) * 5},
        guardrails={
            "error_rate": history.GuardrailPoint(0, -math.inf, math.inf, 1, 0, True, False)
        },
    )
    back = history.decode(history.encode(point))
    assert back is not None
    assert back.guardrails["error_rate"] == point.guardrails["error_rate"]
    served: Any = back.as_json()
    assert served["guardrails"]["error_rate"]["upper"] == "inf"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"{}",
        b"[1,2,3]",
        b"[1, 0, 5, 9, 1, [0,0,0,0,0], [0,0,0,0,0], {}]",  # unknown verdict code
        b"[-5, 0, 5, 0, 1, [0,0,0,0,0], [0,0,0,0,0], {}]",  # negative time
        b"[1, 0, 5, 0, 1, [0,0,0,0], [0,0,0,0,0], {}]",  # counts missing
        b'[1, 0, 5, 0, 1, [0,0,0,0,0], [0,0,0,0,0], {"m": [1, 2]}]',
        b"[1, 0, 5, 0, 1, [0,0,0,0,0], [0,0,0,0,0], []]",
        b"[" + b"1," * 5000 + b"1]",  # too big
    ],
)
def test_a_damaged_stored_point_is_dropped_not_raised(raw: bytes) -> None:
    assert history.decode(raw) is None


@given(st.binary(max_size=300))
def test_decode_never_raises(raw: bytes) -> None:
    history.decode(raw)


def point(at_s: float, verdict: str = "hold", stage: int = 0) -> history.GatePoint:
    return history.GatePoint(
        ts_ms=int(at_s * 1000),
        stage=stage,
        percent=5.0,
        verdict=verdict,
        srm_p=1.0,
        arms={"treatment": (0,) * 5, "control": (0,) * 5},
        guardrails={},
    )


def due(last: history.GatePoint | None, new: history.GatePoint) -> bool:
    return history.due(last, new, stage_started_ms=0, min_interval_s=5, points_per_stage=120)


def test_due_keeps_the_first_point_a_changed_verdict_and_a_new_stage() -> None:
    assert due(None, point(1))
    assert not due(point(1), point(3))
    assert due(point(1), point(6))
    assert due(point(1), point(2, "rollback"))
    assert due(point(1), point(2, stage=1))


def test_points_thin_out_as_the_stage_ages() -> None:
    # Gate every second for a day: the points kept grow with the log of the stage's length.
    kept: list[history.GatePoint] = []
    counts = {}
    for second in range(0, 24 * 3600):
        candidate = point(second)
        if due(kept[-1] if kept else None, candidate):
            kept.append(candidate)
        if second + 1 in (600, 3600, 24 * 3600):
            counts[second + 1] = len(kept)
    assert counts[600] == 120
    assert 300 < counts[3600] < 360
    assert 680 < counts[24 * 3600] < 720  # 120 * (1 + ln 144)


def settings(**changes: object) -> HistorySettings:
    return HistorySettings(min_interval_seconds=5, **changes)  # type: ignore[arg-type]


async def test_recorder_keeps_due_points_and_the_published_decisions_and_alerts() -> None:
    store = MemoryGateHistory()
    topics = TopicSettings()
    recorder = Recorder(store=store, settings=settings(), topics=topics)
    for minutes in (1, 1.01, 1.02, 2):  # the middle two come too soon
        verdict, now = verdict_at(minutes)
        await recorder.gate("f", rollout(), verdict, now)  # type: ignore[arg-type]
    verdict = evaluate(rollout(), REGRESSED, T0 + timedelta(minutes=2, seconds=1))
    await recorder.gate("f", rollout(), verdict, T0 + timedelta(minutes=2, seconds=1))
    (stage0,) = await store.points("f", "r", 1)
    kept = [history.decode(p) for p in stage0]
    assert [p.verdict for p in kept if p] == ["hold", "hold", "rollback"]
    messages = [
        OutboxMessage(topics.flag_state, "f", b'{"type": "flag_state"}'),
        OutboxMessage(topics.decisions, "f", b'{"type": "decision"}'),
        OutboxMessage(topics.alerts, "f", b'{"type": "alert"}'),
    ]
    await recorder.published("f", messages)
    assert [orjson.loads(m)["type"] for m in await store.messages("f")] == ["decision", "alert"]
    assert [orjson.loads(m)["type"] for m in await store.recent_alerts(5)] == ["alert"]


class FailingHistory(MemoryGateHistory):
    async def append_point(self, flag: str, rollout_id: str, stage: int, point: bytes) -> None:
        raise StoreUnavailable("redis unreachable")


async def test_a_failing_store_never_fails_the_gate() -> None:
    recorder = Recorder(store=FailingHistory(), settings=settings(), topics=TopicSettings())
    verdict, now = verdict_at(1)
    await recorder.gate("f", rollout(), verdict, now)  # type: ignore[arg-type]
    assert recorder.failures == 1


async def test_a_disabled_history_records_nothing() -> None:
    store = MemoryGateHistory()
    off = settings(enabled=False)
    recorder = Recorder(store=store, settings=off, topics=TopicSettings())
    verdict, now = verdict_at(1)
    await recorder.gate("f", rollout(), verdict, now)  # type: ignore[arg-type]
    assert store.lists == {}


async def test_memory_history_caps_like_the_store() -> None:
    store = MemoryGateHistory(max_points_per_stage=3, alerts_kept=2)
    for i in range(5):
        await store.append_point("f", "r", 0, str(i).encode())
        await store.append_message("f", str(i).encode(), alert=True)
    assert await store.points("f", "r", 2) == [[b"2", b"3", b"4"], []]
    assert await store.recent_alerts(10) == [b"4", b"3"]
    assert await store.latest([("f", "r", 0), ("f", "r", 1)]) == [b"4", None]


async def test_the_engine_records_its_gates_and_the_decisions_it_publishes() -> None:
    store, topics = MemoryGateHistory(), TopicSettings()
    engine = build_engine(
        settings=EngineSettings(),
        topics=topics,
        states=MemoryStates(),
        aggregates=MemoryAggregates(),
        outputs=MemoryOutputs(),
        dead_letters=NoDeadLetters(),
        history=Recorder(store=store, settings=settings(), topics=topics),
        clock=lambda: NOW,
    )
    await engine.rollouts.apply("f", start("f"))
    await engine.gates.gate("f")
    (stage0, _) = await store.points("f", "r-f", 2)
    (kept,) = [history.decode(p) for p in stage0]
    assert kept is not None
    assert (kept.verdict, kept.ts_ms) == ("hold", int(NOW.timestamp() * 1000))
    (decision,) = [orjson.loads(m) for m in await store.messages("f")]
    assert (decision["action"], decision["rollout_id"]) == ("start", "r-f")


OLD_SHAPE = b'[60000, 1, 5.0, 0, 0.5, [10,90,100,2,9], [10,95,100,1,9], {"error_rate": null}]'
NEW_SHAPE = OLD_SHAPE[:-1] + b", [[1.5, 20.25, 80.0], [1.25, null, 70.0]]]"


@pytest.mark.parametrize(
    ("raw", "latency"),
    [
        (OLD_SHAPE, {}),  # stored before each arm's latency was kept: still read
        (NEW_SHAPE, {"treatment": (1.5, 20.25, 80.0), "control": (1.25, None, 70.0)}),
        (OLD_SHAPE[:-1] + b", null]", {}),
        (OLD_SHAPE[:-1] + b", [null, [3, 4, 5]]]", {"control": (3.0, 4.0, 5.0)}),
        (OLD_SHAPE[:-1] + b", [[1.23456789, 2, 3], null]]", {"treatment": (1.235, 2.0, 3.0)}),
    ],
)
def test_points_of_either_stored_shape_decode(
    raw: bytes, latency: dict[str, tuple[float | None, ...]]
) -> None:
    back = history.decode(raw)
    assert back is not None
    assert (back.ts_ms, back.stage, back.verdict, back.arms["control"]) == (
        60_000,
        1,
        "hold",
        (10, 95, 100, 1, 9),
    )
    assert back.latency == latency
    named = {a: dict(zip(("p50", "p95", "p99"), q, strict=True)) for a, q in latency.items()}
    assert back.as_json()["latency"] == (named or None)


@pytest.mark.parametrize(
    "tail",
    [
        b", [[1, 2, 3]]]",  # one arm missing
        b", [[1, 2], [1, 2, 3]]]",  # a quantile missing
        b", [[1, 2, -3], [1, 2, 3]]]",  # negative
        b", [[1, 2, 1e12], [1, 2, 3]]]",  # beyond any latency
        b', [[1, "2", 3], [1, 2, 3]]]',
        b", [[1, true, 3], [1, 2, 3]]]",
        b", {}]",
        b", null, null]",  # too long
    ],
)
def test_damaged_latency_drops_the_point(tail: bytes) -> None:
    assert history.decode(OLD_SHAPE[:-1] + tail) is None


def test_a_point_keeps_each_arms_latency_quantiles_and_round_trips() -> None:
    verdict = evaluate(rollout(), REGRESSED, EARLY)
    point = history.point_of(rollout(), verdict, EARLY)
    gate = as_read(verdict.evidence)["latency"]
    for side in ("treatment", "control"):
        assert point.latency[side] == tuple(gate[side][q] for q in ("p50", "p95", "p99"))
    back = history.decode(history.encode(point))
    assert back is not None
    assert back.latency == point.latency
    empty = history.point_of(rollout(), evaluate(rollout(), EMPTY, EARLY), EARLY)
    assert empty.latency == {"treatment": (None,) * 3, "control": (None,) * 3}


@pytest.mark.parametrize(
    ("evidence", "kept"),
    [
        (None, {}),
        ("nonsense", {}),
        (
            {"treatment": {"p50": 1.0004, "p95": 2, "p99": 3, "count": 3}},
            {"treatment": (1.0, 2.0, 3.0)},
        ),
        (
            {"control": {"p50": -1, "p95": 1e9, "p99": None, "count": 2}},
            {"control": (None, None, None)},
        ),
        ({"control": {"p50": "x", "p95": None}}, {}),  # a damaged arm is left out
    ],
)
def test_latency_evidence_is_kept_bounded(
    evidence: JsonValue, kept: dict[str, tuple[float | None, ...]]
) -> None:
    verdict = evaluate(rollout(), HEALTHY, EARLY)
    changed = replace(
        verdict, evidence=GateEvidence.tolerant({**verdict.evidence.wire(), "latency": evidence})
    )
    assert history.point_of(rollout(), changed, EARLY).latency == kept


def _limit_verdict(errors: int) -> tuple[Rollout, Verdict]:
    limited = limit_proof.limit_stage()
    treated = limit_proof.treated(864, errors)
    return limited, evaluate(limited, data(treated, ArmAggregate()), limit_proof.LATE)


def test_a_limit_stage_point_carries_each_limits_test_and_round_trips() -> None:
    limited, verdict = _limit_verdict(errors=15)
    point = history.point_of(limited, verdict, EARLY)
    test = (verdict.evidence.limits or {})["error_rate"].test
    kept = point.limits["error_rate"]
    assert (kept.rate, kept.upper, kept.ceiling, kept.limit) == (
        test.delta,
        test.upper,
        0.05,
        0.05,
    )
    assert point.guardrails == {"error_rate": None}  # no comparison: nothing else to chart
    back = history.decode(history.encode(point))
    assert back is not None
    assert back.limits["error_rate"].upper == pytest.approx(test.upper, rel=1e-4)
    served = HistoryPoint.model_validate(back.as_json())
    assert served.limits is not None
    assert served.limits["error_rate"].rate == pytest.approx(15 / 864, rel=1e-4)
    compared = history.point_of(rollout(), evaluate(rollout(), HEALTHY, EARLY), EARLY)
    assert compared.limits == {}
    assert len(orjson.loads(history.encode(compared))) == 9  # no limits: stored as before
    assert HistoryPoint.model_validate(compared.as_json()).limits is None


@pytest.mark.parametrize(
    "tail",
    [
        b', null, {"error_rate": [0.1, 0, 0.2, 0.05, 0.05]}]',  # a field missing
        b', null, {"error_rate": [1.5, 0, 0.2, 0.05, 0.05, 0]}]',  # a rate above 1
        b', null, {"error_rate": ["x", 0, 0.2, 0.05, 0.05, 0]}]',
        b", null, []]",
        b', null, {"error_rate": null}]',
    ],
)
def test_damaged_limits_drop_the_point(tail: bytes) -> None:
    assert history.decode(OLD_SHAPE[:-1] + tail) is None


def test_limits_stored_beside_latency_decode() -> None:
    raw = NEW_SHAPE[:-1] + b', {"error_rate": [0.0141, null, 0.072, 0.05, 0.05, 0]}]'
    back = history.decode(raw)
    assert back is not None
    assert back.latency["treatment"] == (1.5, 20.25, 80.0)
    (name, kept), *_ = back.limits.items()
    assert (name, kept.rate, kept.lower, kept.upper, kept.regressed) == (
        "error_rate",
        0.0141,
        None,
        0.072,
        False,
    )
