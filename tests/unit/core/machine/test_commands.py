"""Commands into the machine's inputs: authenticated, or refused with the reason; a start
checked against the rollouts held, and a set of commands tried in order on a copy of them,
each admitted one taken as applied (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from controller.core.machine import Trial, commands, start_problem, step, taken
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.rollout import CommandInput, CommandRefused, Rollout
from controller.core.trust.signing import generate_key, load_public_key
from controller.core.wire import sent_object
from controller.core.wire.messages import Command, CommandAction, MonitorAlert
from controller.ctl.operate.commands import command_model, signed_model

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
KEY, PUBLIC = generate_key()
OTHER, _ = generate_key()
KEYS = {"ops-1": load_public_key(PUBLIC)}
PLAN = Plan(
    stages=[
        Stage(percent=5, min_duration=timedelta(hours=1)),
        Stage(percent=100, min_units_per_arm=0),
    ]
)


def signed(key: Ed25519PrivateKey = KEY, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"key_id": "ops-1", "actor": "ana", "ts_ms": NOW_MS}
    return sent_object(
        signed_model(CommandAction.PAUSE, "checkout", private_key=key, **{**fields, **extra})
    )


def tampered() -> dict[str, Any]:
    raw = signed()
    raw["flag"] = "payments"
    return raw


REFUSALS: dict[str, tuple[dict[str, Any], str | None]] = {
    "valid": (signed(), None),
    "unsigned": (
        sent_object(command_model("pause", "checkout", actor="ana", key_id="ops-1")),
        "unsigned command",
    ),
    "unknown key": (signed(key_id="bob"), "unknown key id 'bob'"),
    "other key": (signed(OTHER), "bad signature"),
    "tampered": (tampered(), "bad signature"),
    "stale": (signed(ts_ms=NOW_MS - 600_000), "stale command: 600s from now, limit 300s"),
    "from the future": (signed(ts_ms=NOW_MS + 600_000), "stale command"),
    "just fresh": (signed(ts_ms=NOW_MS - 299_000), None),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal(case: str) -> None:
    raw, want = REFUSALS[case]
    command = Command.model_validate(raw)
    got = commands.refusal(command, raw, keys=KEYS, now=NOW, max_age_seconds=300)
    if want is None:
        assert got is None
    else:
        assert got is not None
        assert got.startswith(want)


NEVER_COMPLETES = Plan(
    stages=[Stage(percent=1), Stage(percent=100, min_units_per_arm=100)]
).model_dump(mode="json")
BAD_PLAN = {"stages": "none"}
OVER = {"kind": "allow", "rule": "FREQ=DAILY;COUNT=5", "duration": "1h"}  # from 2024-01-01
TO_COME = {**OVER, "start": "2027-01-04T09:00:00"}
ADMISSIONS: dict[str, tuple[dict[str, Any], str | None, str | None]] = {
    # case: (command fields, refused before, the refusal's reason or None when admitted)
    "authenticated": ({}, None, None),
    "refused": ({}, "bad signature", "bad signature"),
    "replayed": ({}, commands.REPLAYED, "replayed command id"),
    "a plan that works": ({"plan": PLAN.model_dump(mode="json")}, None, None),
    "an invalid plan": ({"plan": BAD_PLAN}, None, "invalid plan"),
    "a plan that cannot work": ({"plan": NEVER_COMPLETES}, None, "plan cannot work: error:"),
    "a window that is over": (
        {"plan": {**PLAN.model_dump(mode="json"), "windows": [OVER]}},
        None,
        "plan cannot work: error: windows[0].rule: its COUNT or UNTIL ends it before 2026-11-22",
    ),
    "a window to come": (
        {"plan": {**PLAN.model_dump(mode="json"), "windows": [TO_COME]}},
        None,
        None,
    ),
    "unleash without unleash": (
        {"plan": {**PLAN.model_dump(mode="json"), "backend": {"unleash": {"feature": "f"}}}},
        None,
        "invalid plan: backend.unleash: this controller has no Unleash",
    ),
    "a refusal wins over the plan": ({"plan": BAD_PLAN}, "unsigned command", "unsigned command"),
}


@pytest.mark.parametrize("case", sorted(ADMISSIONS))
def test_admitted(case: str) -> None:
    extra, refused, want = ADMISSIONS[case]
    action = "start" if "plan" in extra else "pause"
    base = {"type": "command", "v": 1, "id": "c1", "ts": NOW_MS, "action": action}
    command = Command.model_validate({**base, "flag": "f", "actor": "ana", **extra})
    got = commands.admitted(
        command, refused=refused, now=NOW, backends=frozenset(), rollout_id="r", salt="s"
    )
    if want is None:
        assert isinstance(got, CommandInput)
        assert (got.command_id, got.new_rollout_id, got.new_salt, got.now) == ("c1", "r", "s", NOW)
        assert (got.plan is not None) == ("plan" in extra)
    else:
        assert isinstance(got, CommandRefused)
        assert got.reason.startswith(want)
        assert (got.command_id, got.action, got.actor, got.now) == ("c1", action, "ana", NOW)
        assert got.key_id is None  # unsigned here: the refusal says so in its evidence


def test_parse_reads_alerts_and_commands_and_refuses_what_breaks_the_contract() -> None:
    alert = {"type": "monitor", "v": 1, "id": "a1", "ts": NOW_MS}
    alert |= {"monitor": "api", "status": "down"}
    assert isinstance(commands.parse(orjson.dumps(alert), alert=True), MonitorAlert)
    raw = signed()
    parsed = commands.parse(orjson.dumps(raw), alert=False)
    assert isinstance(parsed, tuple)
    assert (parsed[0].id, parsed[1]) == (raw["id"], raw)
    with pytest.raises(ValueError, match="JSON object"):
        commands.parse(b"[1]", alert=False)
    with pytest.raises(ValidationError):
        commands.parse(orjson.dumps(raw), alert=True)
    with pytest.raises(orjson.JSONDecodeError):
        commands.parse(b"{", alert=False)


# -- what a start meets: the rollouts held, and a set tried in order on a copy of them ---

STAGES: dict[str, Any] = {"stages": [{"percent": 5}, {"percent": 100, "min_units_per_arm": 0}]}
HOLDOUT_SAYS = "every flag naming it must give it the same percent"


def plan(percent: float | None = None, *parents: str) -> Plan:
    holdout = None if percent is None else {"name": "hx7", "percent": percent}
    needs = [{"flag": p, "variants": ["treatment"]} for p in parents] or None
    return Plan.model_validate(STAGES | {"holdout": holdout, "requires": needs})


def start(flag: str, the_plan: Plan | None) -> CommandInput:
    return CommandInput(
        action=CommandAction.START,
        flag=flag,
        command_id=f"c-{flag}",
        actor="bo",
        now=NOW,
        plan=the_plan,
        new_rollout_id=f"r-{flag}",
        new_salt="0" * 16,
    )


def running(flag: str, the_plan: Plan) -> Rollout:
    made, _ = step(None, start(flag, the_plan))
    assert made is not None
    return made


@pytest.mark.parametrize(
    ("flag", "the_plan", "plans", "said"),
    [
        ("g7-new", plan(1), {"g7-live": plan(2)}, "invalid plan: holdout: holdout hx7 is 2% on"),
        ("g7-new", plan(2), {"g7-live": plan(2)}, None),
        ("g7-live", plan(1), {"g7-live": plan(2)}, None),  # its own percent is replaced
        ("g7-new@dev", plan(1), {"g7-live": plan(2)}, None),  # another environment's
        ("g7-new", None, {"g7-live": plan(2)}, None),
        ("b", plan(None, "a"), {}, "invalid plan: requires: b requires a, an unknown flag"),
        ("b", plan(None, "a"), {"a": plan()}, None),
        ("b", plan(None, "a"), {"a": plan(None, "b")}, "invalid plan: requires: "),
    ],
)
def test_a_start_is_checked_against_every_rollout_held(
    flag: str, the_plan: Plan | None, plans: dict[str, Plan], said: str | None
) -> None:
    found = start_problem(flag, the_plan, plans)
    assert found == said if said is None else (found or "").startswith(said), found


def test_a_pipeline_may_not_start_where_a_rollout_still_runs() -> None:
    assert taken("s@dev", running("s@dev", plan())) == (
        "s@dev has a rollout running: a pipeline starts its own"
    )
    assert taken("s@dev", None) is None


def test_a_trial_takes_each_admitted_start_as_applied_and_keeps_the_refused_out() -> None:
    trial = Trial({"g7-live": running("g7-live", plan(2))})
    assert trial.command(start("g7-live", plan(1))) == "a rollout is already running"
    refused = trial.command(start("g7-new", plan(1)))
    assert refused is not None
    assert refused.endswith(f"hx7 is 2% on g7-live, not 1%: {HOLDOUT_SAYS}")
    assert "g7-new" not in trial.rollouts
    assert trial.command(start("g7-other", plan(2))) is None
    assert trial.rollouts["g7-other"].plan.holdout == plan(2).holdout
    said = CommandRefused(
        action=CommandAction.START,
        flag="x",
        command_id="c",
        actor="bo",
        key_id="k",
        reason="plan cannot work",
        now=NOW,
    )
    assert trial.command(said) == "plan cannot work"
