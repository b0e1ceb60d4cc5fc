"""Rings: targeted plans, the stickiness rule, cohorts, and the vectors other clients use."""

from __future__ import annotations

import json
import random
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from controller.core.common.errors import ConfigError
from controller.core.reading.views import FlagStateView
from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.rules.matching import IdSegments
from controller.core.rules.targeting import Cohort
from controller.core.rules.text import parse
from controller.core.trust.signing import StateSigner, StateVerifier, generate_key
from controller.core.wire import flagstates
from controller.core.wire.bucketing import bucket
from controller.core.wire.evaluation import ErrorCode, Reason, evaluate
from controller.core.wire.messages import Arm, FlagState, FlagStatus, event_adapter
from controller.daemon.outputs.rendering import flag_state_fields
from controller.sdk.events import EventEmitter
from controller.sdk.flags import FlagBook
from controller.sdk.measure import Measurement
from tests.vectors import rings_generate

SEGMENTS = IdSegments({"staff": {"alice", "bob"}, "beta": {"user-1", "user-2"}})
RING_PLAN: dict[str, Any] = {
    "name": "rings",
    "limits": {"error_rate": 0.01, "latency_p95_ms": 200},
    "stages": [
        {"audience": 'user_id in segment("staff")', "percent": 100},
        {"audience": 'user_id in segment("beta")', "percent": 100},
        {"audience": 'country == "TH"', "percent": 25},
        {"percent": 5},
        {"percent": 25},
        {"percent": 50},
        {"percent": 100},
    ],
}
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def rollout(plan: Plan, stage: int, phase: Phase = Phase.RUNNING) -> Rollout:
    return Rollout(
        flag="checkout",
        rollout_id="r-1",
        plan=plan,
        phase=phase,
        stage=stage,
        stage_started_at=NOW,
        salt="pepper",
        flag_version=10 + stage,
        started_at=NOW,
        updated_at=NOW,
    )


def state_of(rollout: Rollout) -> FlagState:
    fields = flag_state_fields(rollout)
    return FlagState.model_validate({"type": "flag_state", "v": 1, "id": "m", "ts": 0, **fields})


def contexts(count: int, seed: int = 7) -> list[tuple[str, dict[str, object]]]:
    """Units with mixed attributes: staff, beta, countries, missing and wrongly typed ones."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        unit = rng.choice(["alice", "bob", "user-1", "user-2"]) if i < 8 else f"u-{i}"
        context: dict[str, object] = {"user_id": unit}
        country = rng.choice(["TH", "US", "DE", None, 66])
        if country is not None:
            context["country"] = country
        out.append((unit, context))
    return out


# -- plans -------------------------------------------------------------------------------


def test_a_ring_plan_reads_audiences_in_text_or_json_form() -> None:
    plan = parse_plan(RING_PLAN)
    assert plan.targeted
    assert plan.stages[2].audience == parse('country == "TH"')
    as_json = {
        **RING_PLAN,
        "audience": json.loads(parse('app_version >= semver("2.0.0")').to_json()),
    }
    assert parse_plan(as_json).audience == parse('app_version >= semver("2.0.0")')
    assert Plan.model_validate_json(plan.model_dump_json()) == plan  # stored and read back


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"audience": 'country = "TH"'}, "line 1, column 9"),
        (
            {
                "stages": [
                    {"audience": 'country == "TH"', "percent": 50},
                    {"audience": 'country == "TH"', "percent": 25},
                ]
            },
            "must serve more of it",
        ),
        ({"stages": [{"percent": 5}, {"audience": 'country == "TH"', "percent": 50}]}, "narrow"),
        ({"limits": None}, "needs `limits`"),
        (
            {"backend": {"unleash": {"feature": "f"}}, "audience": 'country != "TH"'},
            "Unleash cannot serve",
        ),
        (
            {
                "watch": {"duration": "1h"},
                "stages": [{"audience": 'country == "TH"', "percent": 100}],
            },
            "watch",
        ),
        (
            {"audience": "country in [" + ", ".join(f'"{i:0>200}"' for i in range(100)) + "]"},
            "characters",
        ),
    ],
)
def test_a_plan_whose_rings_cannot_widen_is_refused(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_plan({**RING_PLAN, **change})


def test_an_untargeted_plan_is_as_before() -> None:
    plan = parse_plan({"stages": [{"percent": 5}, {"percent": 100}]})
    assert not plan.targeted
    assert rollout(plan, 0).rings() is None
    assert "rings" not in flag_state_fields(rollout(plan, 0))
    with pytest.raises(ConfigError, match="must increase"):
        parse_plan({"stages": [{"percent": 50}, {"percent": 5}]})


# -- rings and stickiness ---------------------------------------------------------------------


def test_the_rings_keep_each_audience_once_with_its_highest_threshold_and_the_current_last() -> (
    None
):
    plan = parse_plan(RING_PLAN)
    rings = rollout(plan, 4).rings()
    assert rings is not None
    assert [(r.audience, r.threshold) for r in rings] == [
        (parse('user_id in segment("staff")'), 100_000),
        (parse('user_id in segment("beta")'), 100_000),
        (parse('country == "TH"'), 25_000),
        (None, 25_000),
    ]
    state = state_of(rollout(plan, 4))
    assert state.percent == 0.0  # a client that reads no rings serves control
    assert state.rings == rings


def test_at_each_stage_exactly_the_units_the_rule_and_percent_say_get_treatment() -> None:
    plan = parse_plan(RING_PLAN)
    units = contexts(10_000)
    treated_before: set[str] = set()
    for k in range(len(plan.stages)):
        state = state_of(rollout(plan, k))
        treated = set()
        for unit, context in units:
            b = bucket("checkout", "pepper", unit)
            staff, beta = unit in {"alice", "bob"}, unit in {"user-1", "user-2"}
            thai = context.get("country") == "TH"
            everyone = max((plan.stages[j].percent for j in range(3, k + 1)), default=0)
            expected = (
                staff
                or (k >= 1 and beta)
                or (k >= 2 and thai and b < 25_000)
                or b < everyone * 1000
            )
            found = evaluate("checkout", state, unit, context, SEGMENTS)
            assert (found.arm is Arm.TREATMENT) == expected, (k, unit, context)
            if expected:
                treated.add(unit)
        assert treated_before <= treated, f"a unit flipped back to control at stage {k}"
        treated_before = treated
    assert len(treated_before) == len({u for u, _ in units})


@pytest.mark.parametrize(
    ("stage", "unit", "context", "arm", "cohort", "reason"),
    [
        (0, "alice", {"user_id": "alice"}, Arm.TREATMENT, Cohort.COMPARED, Reason.TARGETING_MATCH),
        (0, "u-1", {"user_id": "u-1"}, Arm.CONTROL, Cohort.OUTSIDE, Reason.TARGETING_MATCH),
        (1, "alice", {"user_id": "alice"}, Arm.TREATMENT, Cohort.CARRIED, Reason.TARGETING_MATCH),
        (
            1,
            "user-1",
            {"user_id": "user-1"},
            Arm.TREATMENT,
            Cohort.COMPARED,
            Reason.TARGETING_MATCH,
        ),
        (
            2,
            "user-1",
            {"user_id": "user-1", "country": "TH"},
            Arm.TREATMENT,
            Cohort.CARRIED,
            Reason.TARGETING_MATCH,
        ),
        (2, "u-1", {"country": "th"}, Arm.CONTROL, Cohort.OUTSIDE, Reason.TARGETING_MATCH),
        (2, "u-1", {"country": None}, Arm.CONTROL, Cohort.OUTSIDE, Reason.TARGETING_MATCH),
        (3, "u-1", {}, Arm.CONTROL, Cohort.COMPARED, Reason.TARGETING_MATCH),
    ],
)
def test_each_unit_falls_in_one_cohort(
    stage: int, unit: str, context: dict[str, object], arm: Arm, cohort: Cohort, reason: Reason
) -> None:
    state = state_of(rollout(parse_plan(RING_PLAN), stage))
    found = evaluate("checkout", state, unit, context, SEGMENTS)
    assert (found.arm, found.cohort, found.reason) == (arm, cohort, reason)
    assert found.metadata()["cohort"] == cohort.value


def test_the_compared_units_split_exactly_by_the_stage_percent() -> None:
    state = state_of(rollout(parse_plan(RING_PLAN), 2))
    arms = {Arm.TREATMENT: 0, Arm.CONTROL: 0}
    for i in range(20_000):
        found = evaluate("checkout", state, f"t-{i}", {"country": "TH"}, SEGMENTS)
        assert found.cohort is Cohort.COMPARED
        arms[found.arm] += 1
    assert abs(arms[Arm.TREATMENT] / 20_000 - 0.25) < 0.01


def test_the_rollout_audience_bounds_every_ring() -> None:
    plan = parse_plan({**RING_PLAN, "audience": 'app_version >= semver("2.0.0")'})
    state = state_of(rollout(plan, 6))
    old = evaluate(
        "checkout", state, "alice", {"user_id": "alice", "app_version": "1.9.0"}, SEGMENTS
    )
    new = evaluate(
        "checkout", state, "alice", {"user_id": "alice", "app_version": "2.0.0"}, SEGMENTS
    )
    assert (old.arm, old.cohort) == (Arm.CONTROL, Cohort.OUTSIDE)
    assert (new.arm, new.cohort) == (Arm.TREATMENT, Cohort.CARRIED)


@pytest.mark.parametrize("attributes", [None, ["country"], "TH", {"country": object()}])
def test_a_bad_context_serves_control_and_says_why(attributes: Any) -> None:
    state = state_of(rollout(parse_plan(RING_PLAN), 3))
    found = evaluate("checkout", state, "u-1", attributes, SEGMENTS)
    assert found.arm is Arm.CONTROL
    assert found.error in {ErrorCode.INVALID_CONTEXT, None}
    assert found.error is not None or found.cohort is not None


def test_a_killed_targeted_flag_serves_control_to_everyone() -> None:
    state = state_of(rollout(parse_plan(RING_PLAN), 6, Phase.KILLED))
    assert state.status is FlagStatus.KILLED
    found = evaluate("checkout", state, "alice", {"user_id": "alice"}, SEGMENTS)
    assert (found.arm, found.reason) == (Arm.CONTROL, Reason.DISABLED)


def test_a_watch_holdback_lowers_only_the_last_ring() -> None:
    plan = parse_plan({**RING_PLAN, "watch": {"duration": "1h", "holdback_percent": 10}})
    watched = rollout(plan, 6).model_copy(update={"watch_until": NOW + timedelta(hours=1)})
    rings = watched.rings()
    assert rings is not None
    assert rings[0].threshold == 100_000
    assert rings[-1].threshold == 90_000


# -- the vectors --------------------------------------------------------------------------------


def test_the_rings_vector_file_is_what_its_script_makes() -> None:
    assert rings_generate.main(["rings_generate.py", "--check"]) == 0


def test_every_rings_vector_comes_out_of_the_controllers_evaluation() -> None:
    data = json.loads(rings_generate.PATH.read_text(encoding="utf-8"))
    segments = IdSegments({name: set(ids) for name, ids in data["segments"].items()})
    mismatches = []
    for v in data["vectors"]:
        fields = {"flag": v["flag"], "version": 3, "status": "rolling_out", "percent": 0.0}
        fields |= {"salt": v["salt"], "audience": v["audience"], "rings": v["rings"]}
        state = FlagState.model_validate(
            {"type": "flag_state", "v": 1, "id": "m", "ts": 0, **fields}
        )
        found = evaluate(v["flag"], state, v["unit"], v["context"], segments)
        got = (bucket(v["flag"], v["salt"], v["unit"]), found.arm.value, found.cohort)
        if got != (v["bucket"], v["arm"], v["cohort"]):
            mismatches.append((v, got))
    assert not mismatches, mismatches[:3]
    cohorts = {v["cohort"] for v in data["vectors"]}
    assert cohorts == {"compared", "carried", "outside"}


def test_a_javascript_client_written_from_the_spec_passes_every_rings_vector(node: str) -> None:
    script = rings_generate.PATH.with_name("rings.mjs")
    done = subprocess.run(
        [node, str(script), str(rings_generate.PATH)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    checked = len(json.loads(rings_generate.PATH.read_text(encoding="utf-8"))["vectors"])
    assert json.loads(done.stdout) == {"checked": checked, "mismatches": []}


# -- the SDK -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "context", "cohort"),
    [
        ("alice", {"user_id": "alice", "country": "TH"}, "carried"),
        ("u-9", {"country": "US"}, "outside"),
        ("u-9", {"country": "TH"}, None),  # compared: the field is left out
    ],
)
def test_measure_reports_the_cohort_the_evaluation_gave(
    unit: str, context: dict[str, object], cohort: str | None
) -> None:
    book = FlagBook([state_of(rollout(parse_plan(RING_PLAN), 2))], segments=SEGMENTS)
    emitter = EventEmitter()
    with Measurement(book, emitter, "checkout", unit, attributes=context) as served:
        pass
    assert (served, book.state("checkout") is not None) == (
        book.arm("checkout", unit, context)[0],
        True,
    )
    sent = [orjson.loads(value) for _, value in emitter._queue]
    assert [e["type"] for e in sent] == ["exposure", "request"]
    assert all(e.get("cohort") == cohort for e in sent)
    for event in sent:
        event_adapter.validate_python(event)  # the contract takes them


def test_a_signed_ringed_state_verifies_on_the_topic_and_through_flags() -> None:
    """What the daemon signs is what an app rebuilds, from the message and from /flags."""
    key, public = generate_key()
    signer = StateSigner(key, "controller-1")
    verifier = StateVerifier({"controller-1": public})
    plan = parse_plan({**RING_PLAN, "audience": 'app_version >= semver("2.0.0") or beta == true'})
    fields = signer.sign(flag_state_fields(rollout(plan, 3)))
    message = FlagState.model_validate({"type": "flag_state", "v": 1, "id": "m", "ts": 0, **fields})
    assert verifier.problem(message) is None
    assert flagstates.signed_bytes(fields, "controller-1").startswith(
        b'["rollout-controller/flag-state/2",'
    )
    served = FlagStateView.model_validate(fields).served()
    rings = served["rings"]
    assert isinstance(rings, list)
    assert rings[0]["audience"]["op"] == "in"
    polled = FlagState.model_validate({"type": "flag_state", "v": 1, "id": "p", "ts": 0, **served})
    assert verifier.problem(polled) is None
    widened = polled.model_copy(update={"rings": polled.rings[:-1] if polled.rings else None})
    assert verifier.problem(widened) == "bad_signature"


def test_rules_keep_their_wire_keys_when_stored_and_published() -> None:
    """and / or / not, not field names: a stored rollout reads back, and apps read its states."""
    text = 'country == "TH" and not (plan == "free" or beta == true)'
    plan = parse_plan({**RING_PLAN, "audience": text})
    stored = rollout(plan, 3)
    assert Rollout.model_validate_json(stored.model_dump_json()) == stored
    published = orjson.loads(state_of(stored).model_dump_json())
    assert set(published["audience"]) == {"and"}
    assert "not" in published["audience"]["and"][1]
    assert parse(text).model_dump() == published["audience"]
