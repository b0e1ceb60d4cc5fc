"""Release pipelines on the real daemon, broker and Redis: dev, then staging, then production,
on the controller's own flag states, with apps in each environment; a regression in staging
rolls staging back and production never starts; a rollout stored before environments stays
where it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.adapters.redis.aggregates import connect
from controller.core.release import rollout_id_of
from controller.core.trust import signing
from controller.core.wire import sent_object
from controller.core.wire.messages import Arm
from controller.ctl.operate.commands import signed_model
from controller.sdk.flags import FlagClient
from controller.settings import KafkaSettings, RedisSettings
from tests.scenarios.harness import KEY_ID, Scenario, manual_plan
from tests.scenarios.operators.test_rolloutctl import Operator
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENVIRONMENTS = '{"names": ["dev", "staging", "production"], "default": "production"}'
STEPS = ("dev", "staging", "production")
PLAN = {
    "stages": [
        {"percent": 50, "min_duration": "2s", "min_units_per_arm": 20},
        {"percent": 100, "min_duration": "0s", "min_units_per_arm": 0},
    ],
    "guardrails": [{"metric": "error_rate"}],
    # Each test of healthy traffic runs three rollouts, and a pipeline that must complete
    # fails on any false rollback: at 0.01 one came now and then (dev rolled back at its
    # first look, p = 0.0044, and the test timed out). The regressions here (15 times the
    # error rate) are caught as fast at 0.001. The split's check, likewise, at the harness's
    # level: at the default 0.001 a healthy staging paused on it once (p = 0.00057).
    "alpha": 0.001,
    "srm_p_threshold": 0.0001,
}
PIPELINE = {
    "name": "release",
    "plans": {"fast": PLAN},
    "plan": "fast",
    "steps": [{"environment": e} for e in STEPS],
}


def key_in(flag: str, environment: str) -> str:
    """The flag's key in ``environment``: production is the default, the flag's own key."""
    return flag if environment == "production" else f"{flag}@{environment}"


def regressed_in_treatment(_state: dict[str, Any], arm: Arm) -> float:
    return 0.30 if arm is Arm.TREATMENT else 0.02


class Release:
    """A daemon serving three environments (or ``environments``) and its HTTP API, and the
    operator's pipeline."""

    def __init__(self, scenario: Scenario, environments: str = ENVIRONMENTS) -> None:
        self.scenario = scenario
        self.port = free_port()
        scenario.configure(
            RC_ENGINE__ENVIRONMENTS=environments,
            RC_HTTP__PORT=str(self.port),
            RC_HTTP__HOST="127.0.0.1",
        )

    async def start(
        self, flag: str, pipeline: dict[str, Any] = PIPELINE, *, timeout: float = 30
    ) -> dict[str, Any]:
        """Send the pipeline command; its decision (the first step's start, or the refusal)."""
        command = self.scenario.pipeline_command(flag, pipeline)
        return await self.scenario.decided(
            command, flag=flag, what="the pipeline's decision", timeout=timeout
        )

    def decided(self, flag: str) -> list[tuple[str, str | None]]:
        return [
            (d["action"], d["evidence"].get("environment"))
            for d in self.scenario.observed.decisions
            if d["flag"] == flag and d["kind"] == "pipeline"
        ]

    async def status(self, flag: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as http:
            answer = await http.get(f"/pipelines/{flag}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    async def no_run(self, flag: str) -> bool:
        """Whether the flag has no pipeline run (the status route answers 404)."""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as http:
            answer = await http.get(f"/pipelines/{flag}")
        assert answer.status_code in (200, 404), answer.text
        return answer.status_code == 404

    async def ofrep(self, flag: str, environment: str, unit: str) -> dict[str, Any]:
        path = f"/env/{environment}/ofrep/v1/evaluate/flags/{flag}"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as http:
            answer = await http.post(path, json={"context": {"targetingKey": unit}})
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_each_environment_completes_and_starts_the_next(
    scenario: Scenario, tmp_path: Path
) -> None:
    # Given a controller serving dev, staging and production, and apps in each
    flag = "pipe-ok"
    release = Release(scenario)
    scenario.start_daemon()
    for environment in STEPS:
        scenario.run_apps(key_in(flag, environment))

    # When the operator starts the pipeline
    first = await release.start(flag)
    assert (first["action"], first["outcome"]) == ("pipeline_start", "applied")
    assert first["evidence"]["environment"] == "dev"

    # Then each environment completes and starts the next, as decisions with evidence
    await scenario.until(
        lambda: ("pipeline_complete", "production") in release.decided(flag),
        timeout=180,
        what="production completing the pipeline",
    )
    assert release.decided(flag) == [
        ("pipeline_start", "dev"),
        ("pipeline_step", "dev"),
        ("pipeline_start", "staging"),
        ("pipeline_step", "staging"),
        ("pipeline_start", "production"),
        ("pipeline_complete", "production"),
    ]
    # And apps in each environment read that environment's state, by the flag's own name
    sdk = FlagClient(
        KafkaSettings(bootstrap_servers=scenario.bootstrap),
        topic=scenario.topics["flag_state"],
        environment="staging",
    )
    async with sdk:
        await scenario.until(sdk.ready.is_set, timeout=30, what="the SDK's states")
        staging = sdk.state(flag)
        assert staging is not None
        assert staging.flag == f"{flag}@staging"
        assert staging.status.value == "completed"
        answer = await release.ofrep(flag, "staging", "u-1")
        assert answer["metadata"]["flag_version"] == staging.version
        assert answer["value"] is True
        assert sdk.evaluate(flag, "u-1").version == staging.version
    view = await release.status(flag)
    assert view["phase"] == "completed"
    assert [e["status"] for e in view["environments"]] == ["completed"] * 3

    # And the flag's report covers each environment's rollout, in the pipeline's order
    ctl = Operator(scenario, tmp_path, release.port)
    answered = await ctl("report", flag, "--json")
    assert answered.code == 0, answered.err
    data = answered.json()
    assert data["pipeline"]["run_id"] == view["run_id"]
    sections = data["sections"]
    assert [(s["environment"], s["key"]) for s in sections] == [(e, key_in(flag, e)) for e in STEPS]
    for section in sections:
        shown = section["report"]
        assert (shown["flag"], shown["phase"]) == (section["key"], "completed")
        assert "start" in [d["action"] for d in shown["decisions"]]
        assert shown["rollout_id"] == rollout_id_of(view["run_id"], section["environment"])
    text = (await ctl("report", flag, "--markdown")).out
    assert [line for line in text.splitlines() if line.startswith("## Environment")] == [
        f"## Environment {e} ({key_in(flag, e)})" for e in STEPS
    ]
    # ...or the one asked for, as the report of one rollout
    one = await ctl("report", flag, "--environment", "staging", "--json")
    assert one.code == 0, one.err
    assert (one.json()["flag"], one.json()["phase"]) == (f"{flag}@staging", "completed")


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_a_regression_in_staging_rolls_it_back_and_production_never_starts(
    scenario: Scenario,
) -> None:
    # Given the pipeline, with a regression in staging's treatment
    flag = "pipe-bad"
    release = Release(scenario)
    scenario.start_daemon()
    scenario.run_apps(key_in(flag, "dev"))
    scenario.run_apps(key_in(flag, "staging"), errors=regressed_in_treatment)
    scenario.run_apps(flag)
    await release.start(flag)

    # When staging's guardrail catches it, staging rolls back and the pipeline stops there
    stop = await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="pipeline_stop"),
        timeout=180,
        what="the pipeline stopping at staging",
    )
    assert stop["evidence"]["environment"] == "staging"
    assert stop["evidence"]["not_started"] == ["production"]
    assert "staging rolled back" in stop["reason"]
    assert "production will not start" in stop["reason"]
    # (alerts travel on their own topic, so the alert may reach the reader after the decision)
    await scenario.until(
        lambda: scenario.observed.alert_where(flag=flag, kind="pipeline_stopped"),
        timeout=30,
        what="the pipeline_stopped alert",
    )

    # Then production never starts, however long the controller goes on
    await scenario.gates_ran("pipe-marker")
    assert not [s for s in scenario.observed.flag_states if s["flag"] == flag]
    assert ("pipeline_start", "production") not in release.decided(flag)
    assert await scenario.rollout(flag) is None
    view = await release.status(flag)
    assert (view["phase"], view["stopped_at"]) == ("stopped", "staging")
    assert [e["status"] for e in view["environments"]] == ["completed", "rolled_back", "pending"]


async def test_a_rollout_stored_before_environments_stays_in_the_default_one(
    scenario: Scenario,
) -> None:
    # Given a rollout started by today's controller, with one environment
    flag = "legacy-flag"
    scenario.start_daemon()
    await scenario.start(flag, manual_plan())
    await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="start"),
        timeout=30,
        what="today's rollout started",
    )
    before = await scenario.rollout(flag)
    assert before is not None
    decided = len([d for d in scenario.observed.decisions if d["flag"] == flag])

    # When the controller is upgraded to serve dev, staging and production (the default)
    scenario.daemon.kill()
    Release(scenario)
    scenario.start_daemon()

    # Then the rollout is where it was, nothing about it is decided again
    await scenario.gates_ran("legacy-marker")
    assert len([d for d in scenario.observed.decisions if d["flag"] == flag]) == decided
    after = await scenario.rollout(flag)
    assert after == before
    # And a command naming no environment, or the default one, acts on it
    pause = scenario.command("pause", flag, environment="production")
    paused = await scenario.decided(pause, flag=flag, what="the pause in production")
    assert (paused["flag"], paused["outcome"], paused["rollout_id"]) == (
        flag,
        "applied",
        before.rollout_id,
    )
    # ...while dev has no rollout of it
    resume = scenario.command("resume", flag, environment="dev")
    elsewhere = await scenario.decided(resume, flag=flag, what="the resume in dev")
    assert (elsewhere["flag"], elsewhere["reason"]) == (
        f"{flag}@dev",
        "no rollout exists for this flag",
    )


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_killed_between_staging_completed_and_production_started_production_starts_once(
    scenario: Scenario,
) -> None:
    # Given the pipeline, where production's rollout cannot be saved yet: its outbox key holds
    # a value of another type, so the start the run asks for fails after the run was saved
    flag = "pipe-kill"
    release = Release(scenario)
    scenario.start_daemon()
    for environment in STEPS:
        scenario.run_apps(key_in(flag, environment))
    blocker = f"{{{scenario.prefix}:flag:{flag}}}:outbox"
    async with connect(RedisSettings(url=scenario.redis_url)) as redis:
        await redis.set(blocker, "not a list")
    first = await release.start(flag)
    run_id = first["evidence"]["run_id"]

    # When staging completes, the run is saved with "production starts"...
    await scenario.until(
        lambda: ("pipeline_start", "production") in release.decided(flag),
        timeout=180,
        what="the run deciding production's start",
    )
    # ...and the controller is killed (SIGKILL) before production's rollout was started
    await scenario.until(
        lambda: scenario.observed.alert_where(flag=flag, kind="input_failed"),
        timeout=30,
        what="production's start failing",
    )
    scenario.daemon.kill()
    assert await scenario.rollout(flag) is None
    async with connect(RedisSettings(url=scenario.redis_url)) as redis:
        await redis.delete(blocker)
    scenario.start_daemon()

    # Then the restarted controller starts production, once, and the pipeline completes
    await scenario.until(
        lambda: ("pipeline_complete", "production") in release.decided(flag),
        timeout=180,
        what="production completing after the restart",
    )
    production = await scenario.rollout(flag)
    assert production is not None
    assert production.rollout_id == rollout_id_of(run_id, "production")
    starts = {
        d["id"] for d in scenario.observed.decisions if d["flag"] == flag and d["action"] == "start"
    }
    assert len(starts) == 1
    decided = {
        d["id"]
        for d in scenario.observed.decisions
        if d["flag"] == flag and d["action"] == "pipeline_start"
    }
    assert len(decided) == 3  # dev, staging and production, each once (a republish has its id)


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_production_needs_two_approvers_and_a_dev_key_cannot_promote_it(
    scenario: Scenario, tmp_path: Path
) -> None:
    # Given keys with roles, and a pipeline whose production step needs two approvers
    flag = "pipe-approved"
    people = {name: Ed25519PrivateKey.generate() for name in ("ana", "bo", "dev-1")}
    roles = {"ana": ["approver"], "bo": ["approver"], "dev-1": ["dev"]}
    records: dict[str, Any] = {
        KEY_ID: signing.public_key_text(scenario.key.public_key()),
        **{
            k: {"public_key": signing.public_key_text(v.public_key()), "roles": roles[k]}
            for k, v in people.items()
        },
    }
    book = {
        "roles": [
            {
                "name": "dev",
                "actions": ["start", "promote", "pause", "kill"],
                "environments": ["dev"],
            },
            {"name": "approver", "actions": ["approve"], "environments": ["*"]},
        ]
    }
    release = Release(scenario)
    scenario.configure(
        RC_ENGINE__OPERATOR_KEYS=orjson.dumps(records).decode(),
        RC_ENGINE__ROLES=orjson.dumps(book).decode(),
    )
    scenario.start_daemon()
    for environment in STEPS:
        scenario.run_apps(key_in(flag, environment))
    gated = {
        **PIPELINE,
        "steps": [
            {"environment": "dev"},
            {"environment": "staging"},
            {
                "environment": "production",
                "approval": {"needs": [{"role": "approver", "count": 2}]},
            },
        ],
    }
    await release.start(flag, gated)
    waiting = await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="pipeline_gate"),
        timeout=180,
        what="production waiting for its approvals",
    )
    assert waiting["reason"] == "production waits for: approvals: 2 more from approver"

    async def approve(key_id: str, action: str = "approve") -> dict[str, Any]:
        command = sent_object(
            signed_model(
                action,
                flag,
                private_key=people[key_id],
                key_id=key_id,
                actor=key_id,
                environment="production",
            )
        )
        found: dict[str, Any] = await scenario.decided(
            command, flag=flag, what=f"{key_id}'s {action}"
        )
        return found

    # One approval does not move it, nor a second from the same key
    assert (await approve("ana"))["reason"] == (
        "ana (key ana, approver) approved production: 1 more from approver"
    )
    # ...and the operator's status says who approved, when, what is missing, what it waits for
    shown = await Operator(scenario, tmp_path, release.port)("pipeline", "status", flag)
    assert shown.code == 0, shown.err
    lines = [line.strip() for line in shown.out.splitlines()]
    assert lines[3] == "production   pending; gate: approvals: 2 from approver"
    assert lines[4].startswith("approvals approver: 1 of 2: ana (key ana) at ")
    assert lines[5:] == [
        "still to approve: 1 more from approver",
        "next: production waits for: approvals: 1 more from approver",
    ]
    again = await approve("ana")
    assert again["outcome"] == "rejected"
    assert "a key counts once" in again["reason"]
    # A dev key may neither approve nor promote production
    promote = await approve("dev-1", "promote")
    assert promote["reason"] == (
        "key dev-1 (roles: dev) may not promote in production: it may only in dev"
    )
    assert ("pipeline_start", "production") not in release.decided(flag)
    # A second key's approval starts production, and the audit names both
    await approve("bo")
    started = await scenario.until(
        lambda: next(
            (
                d
                for d in scenario.observed.decisions
                if d["flag"] == flag
                and d["action"] == "pipeline_start"
                and d["evidence"]["environment"] == "production"
            ),
            None,
        ),
        timeout=30,
        what="production starting",
    )
    assert [(a["key_id"], a["role"]) for a in started["evidence"]["approvals"]] == [
        ("ana", "approver"),
        ("bo", "approver"),
    ]
    assert all(a["at"] for a in started["evidence"]["approvals"])
    view = await release.status(flag)
    assert view["environments"][2]["approvals"]["approved"] == {
        "approver": ["ana (ana)", "bo (bo)"]
    }
