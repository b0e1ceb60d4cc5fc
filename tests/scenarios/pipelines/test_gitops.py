"""Desired state in files, applied by ``rolloutctl apply`` to the real daemon, broker and Redis.

Apply then diff shows nothing; a second apply sends nothing; a segment changed by
hand is reported and left alone, and ``--force`` puts the files' version back; a
rollout promoted, paused and killed by hand is shown with who moved it each time, when
and why; a CI key whose
roles allow only part of the files applies none of them, and names each object refused;
files a flag held refuses (its holdout at another percent) apply none of them either;
segments are applied before the rollouts whose audiences name them.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.common import as_datetime
from controller.core.trust import signing
from controller.core.wire import Decision
from controller.ctl.operate.commands import write_private_key
from tests.scenarios.harness import KEY_ID, Scenario, manual_plan
from tests.scenarios.operators.test_rolloutctl import Operator
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
FLAG = "gitops-flag"


def desired_state(directory: Path) -> Path:
    """A plan, the flag's rollout by it, a rule segment, an id-list segment and a client key."""
    directory.mkdir()
    plan = manual_plan().model_dump(mode="json") | {"name": "by-hand"}
    files: dict[str, Any] = {
        "plans/by-hand.yaml": plan,
        "rollouts/gitops-flag.yaml": {"kind": "rollout", "flag": FLAG, "plan": "by-hand"},
        "segments/pros.yaml": {"kind": "segment", "name": "pros", "rule": 'plan in ["pro"]'},
        "segments/beta.yaml": {"kind": "segment", "name": "beta", "ids_file": "beta.txt"},
        "keys/shop-web.yaml": {"kind": "app_key", "name": "shop-web", "client": True},
    }
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(yaml.safe_dump(data))
    (directory / "segments/beta.txt").write_text("u-1\nu-2\nu-3\n")
    return directory


def operator(scenario: Scenario, tmp_path: Path, port: int) -> Operator:
    ctl = Operator(scenario, tmp_path, port)
    ctl.env["PYTHONPATH"] = str(ROOT)  # the rolloutctl of this tree
    return ctl


async def decisions_after(scenario: Scenario, count: int, command_id: str) -> list[dict[str, Any]]:
    """The decisions published after the first ``count``, once one on ``command_id`` is in."""
    await scenario.until(
        lambda: scenario.observed.decision_where(command_id=command_id),
        timeout=60,
        what=f"the decision on {command_id}",
    )
    return scenario.observed.decisions[count:]


@pytest.mark.timeout(420)  # a dozen rolloutctl processes, one after another
async def test_apply_holds_the_files_and_leaves_a_hand_change_alone_until_forced(
    scenario: Scenario, tmp_path: Path
) -> None:
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    ctl = operator(scenario, tmp_path, port)
    repo = desired_state(tmp_path / "repo")
    secrets = tmp_path / "secrets"

    # Given the files checked offline
    checked = await ctl("validate", "-f", str(repo))
    assert checked.code == 0, checked.out + checked.err
    assert "rollouts/gitops-flag.yaml: valid rollout" in checked.out

    # When they are applied, each object is applied and the new key's secret kept
    applied = await ctl("apply", "-f", str(repo), "--secrets-dir", str(secrets))
    assert applied.code == 0, applied.out + applied.err
    lines = sorted(applied.out.splitlines())
    assert lines == [
        "applied: create app-key shop-web",
        f"applied: create rollout {FLAG} -> running, stage 1/4 (1%)",
        "applied: create segment beta",
        "applied: create segment pros",
    ], applied.err
    secret = secrets / "shop-web.secret"
    assert secret.read_text().startswith("rc_client_")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600

    # Then diff shows nothing, and a second apply sends nothing
    same = await ctl("diff", "-f", str(repo))
    assert (same.code, same.out) == (0, ""), same.err
    before = len(scenario.observed.decisions)
    again = await ctl("apply", "-f", str(repo), "--secrets-dir", str(secrets))
    assert (again.code, again.out) == (0, ""), again.err

    # When a segment is changed by hand (the first decision after the second apply is its)
    hand = await ctl("segment", "put", "pros", "--rule", 'plan in ["free"]', "--json")
    assert hand.code == 0, hand.err
    since = await decisions_after(scenario, before, hand.json()["command_id"])
    assert [d["command_id"] for d in since] == [hand.json()["command_id"]]

    # Then diff reports it, and apply leaves it alone
    drift = await ctl("diff", "-f", str(repo))
    assert drift.code == 1, drift.err
    assert drift.out.startswith("! segment pros: changed by hand: made or changed by hand"), drift
    held = await ctl("apply", "-f", str(repo), "--secrets-dir", str(secrets))
    assert held.code == 1, held.err
    assert held.out.startswith("! segment pros: changed by hand"), held.out
    kept = await ctl("segment", "show", "pros")
    assert 'rule: plan in ["free"]' in kept.out, kept

    # And --force puts the files' version back; then nothing differs
    forced = await ctl("apply", "-f", str(repo), "--force", "--secrets-dir", str(secrets))
    assert (forced.code, forced.out.strip()) == (0, "applied: update segment pros"), forced
    back = await ctl("segment", "show", "pros")
    assert 'rule: plan in ["pro"]' in back.out, back
    settled = await ctl("diff", "-f", str(repo))
    assert (settled.code, settled.out) == (0, ""), settled.err

    # When the rollout is promoted to its next stage by hand
    promoted = await ctl("promote", FLAG, "--reason", "looks fine")
    assert promoted.code == 0, promoted.out + promoted.err

    # Then diff has nothing to send, but says who moved it, when and why
    moved = await ctl("diff", "-f", str(repo))
    assert moved.code == 0, moved.err
    said = f"= rollout {FLAG}: in sync: running (plan by-hand); changed by hand: promoted "
    assert moved.out.startswith(f"{said}from stage 1/4 (1%) 20"), moved.out
    assert moved.out.endswith("Z by ana (looks fine)\n"), moved.out

    # And when it is paused by hand, then killed by hand, diff says each, oldest first
    paused = await ctl("pause", FLAG, "--reason", "a call at 4")
    assert paused.code == 0, paused.out + paused.err
    held_by_hand = await ctl("diff", "-f", str(repo))
    assert held_by_hand.code == 0, held_by_hand.err
    said = f"= rollout {FLAG}: in sync: paused (plan by-hand); changed by hand: promoted "
    assert held_by_hand.out.startswith(said), held_by_hand.out
    assert "by ana (looks fine); paused at stage 2/4 (5%) 20" in held_by_hand.out
    assert held_by_hand.out.endswith("Z by ana (a call at 4)\n"), held_by_hand.out
    killed = await ctl("kill", FLAG, "--reason", "errors up")
    assert killed.code == 0, killed.out + killed.err
    steered = await ctl("diff", "-f", str(repo))
    assert steered.code == 0, steered.err
    said = f"= rollout {FLAG}: in sync: killed (plan by-hand); changed by hand: promoted "
    assert steered.out.startswith(said), steered.out
    assert "(looks fine); paused at stage 2/4 " in steered.out, steered.out
    assert "(a call at 4); killed 20" in steered.out, steered.out
    assert steered.out.endswith("Z by ana (errors up)\n"), steered.out
    shown = await ctl("diff", "-f", str(repo), "--json")
    rows = [orjson.loads(line) for line in shown.out.splitlines()]
    assert [(r["name"], r["change"]) for r in rows] == [(FLAG, "in sync")], shown.out
    assert rows[0]["changed_by_hand"].endswith(" by ana (errors up)"), rows


@pytest.mark.timeout(420)  # a handful of rolloutctl processes, one after another
async def test_a_ci_key_allowed_part_of_the_files_applies_none_of_them(
    scenario: Scenario, tmp_path: Path
) -> None:
    # Given a CI key whose roles manage segments and start rollouts in dev only
    port = free_port()
    ci = Ed25519PrivateKey.generate()
    keys = {
        KEY_ID: signing.public_key_text(scenario.key.public_key()),
        "ci": {
            "public_key": signing.public_key_text(ci.public_key()),
            "roles": ["ci-dev", "segments"],
        },
    }
    role = {"name": "ci-dev", "actions": ["start"], "environments": ["dev"]}
    segments = {"name": "segments", "actions": ["manage_segments"], "environments": ["*"]}
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
        RC_ENGINE__OPERATOR_KEYS=orjson.dumps(keys).decode(),
        RC_ENGINE__ROLES=orjson.dumps({"roles": [role, segments]}).decode(),
        RC_ENGINE__ENVIRONMENTS='{"names": ["dev", "production"], "default": "production"}',
    )
    scenario.start_daemon()
    ctl = operator(scenario, tmp_path, port)
    key_file = tmp_path / "ci.key"
    write_private_key(key_file, ci)
    secrets = tmp_path / "secrets"
    # ...and files for a segment, an app key and the flag's rollouts in dev and production
    # by a plan whose audience names the segment
    repo = tmp_path / "repo"
    plan = manual_plan().model_dump(mode="json") | {"audience": 'user_id in segment("pros")'}
    files: dict[str, Any] = {
        "rollouts/dev.yaml": {"kind": "rollout", "flag": FLAG, "environment": "dev", "plan": plan},
        "rollouts/production.yaml": {"kind": "rollout", "flag": FLAG, "plan": plan},
        "segments/pros.yaml": {"kind": "segment", "name": "pros", "rule": 'plan in ["pro"]'},
        "keys/shop-web.yaml": {"kind": "app_key", "name": "shop-web", "client": True},
    }
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(yaml.safe_dump(data))
    before = len(scenario.observed.decisions)

    # When CI applies them with its key
    refused = await ctl(
        "apply", "-f", str(repo), "--key", str(key_file), "--key-id", "ci",
        "--secrets-dir", str(secrets),
    )  # fmt: skip

    # Then nothing is sent, and each object the controller would refuse is named with why
    assert refused.code == 3, refused.out + refused.err
    assert refused.out.splitlines() == [
        "refused: create app-key shop-web: key ci (roles: ci-dev, segments) may not "
        "manage_keys in every environment: it may nowhere",
        f"refused: create rollout {FLAG}: key ci (roles: ci-dev, segments) may not start in "
        "production: it may only in dev",
    ], refused.out
    assert "nothing was sent: the controller would refuse 2 of 4 objects" in refused.err
    assert not secrets.exists()

    # When a key holding every role applies the same files
    applied = await ctl("apply", "-f", str(repo), "--secrets-dir", str(secrets))

    # Then all four are applied, the segment first, so the rollouts naming it find it...
    assert applied.code == 0, applied.out + applied.err
    assert [line.split(" -> ")[0] for line in applied.out.splitlines()] == [
        "applied: create segment pros",
        "applied: create app-key shop-web",
        f"applied: create rollout {FLAG}@dev",
        f"applied: create rollout {FLAG}",
    ]

    # ...and the decisions published since are these objects' only: CI's sent none
    def started() -> dict[str, Any] | None:
        return scenario.observed.decision_where(
            kind="command", flag=FLAG, action="start", outcome="applied"
        )

    await scenario.until(started, timeout=60, what="the production rollout's start decided")
    since = scenario.observed.decisions[before:]
    assert [d["outcome"] for d in since if d["outcome"] == "rejected"] == [], since
    segment = [d for d in since if d["kind"] == "segment"]
    assert [d["outcome"] for d in segment] == ["applied"], segment
    starts = [d for d in since if d["kind"] == "command" and d["action"] == "start"]
    assert starts, since
    decided = [as_datetime(Decision.model_validate(d).ts) for d in (*segment, *starts)]
    assert decided[0] <= min(decided[1:])
    settled = await ctl("diff", "-f", str(repo))
    assert (settled.code, settled.out) == (0, ""), settled.err


async def test_what_apply_applied_is_known_after_a_restart_and_a_running_pipeline_is_blocked(
    scenario: Scenario, tmp_path: Path
) -> None:
    # Given a controller serving dev and production, and files for a pipeline and a rollout
    port = free_port()
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
        RC_ENGINE__ENVIRONMENTS='{"names": ["dev", "production"], "default": "production"}',
    )
    scenario.start_daemon()
    ctl = operator(scenario, tmp_path, port)
    repo = tmp_path / "repo"
    repo.mkdir()
    plan = manual_plan().model_dump(mode="json")
    pipeline = {
        "name": "release",
        "plans": {"by-hand": plan},
        "plan": "by-hand",
        "steps": [{"environment": "dev"}, {"environment": "production", "soak": "1h"}],
    }
    files = {
        "release.yaml": {"kind": "rollout", "flag": "piped", "pipeline": pipeline},
        "dev-only.yaml": {"kind": "rollout", "flag": FLAG, "environment": "dev", "plan": plan},
    }
    for name, data in files.items():
        (repo / name).write_text(yaml.safe_dump(data))

    # When they are applied, and the controller restarts
    applied = await ctl("apply", "-f", str(repo))
    assert applied.code == 0, applied.out + applied.err
    assert sorted(line.split(" -> ")[0] for line in applied.out.splitlines()) == [
        "applied: create pipeline piped",
        f"applied: create rollout {FLAG}@dev",
    ]
    scenario.daemon.kill()
    scenario.start_daemon()

    # Then the restarted controller still holds what apply applied: nothing differs
    async def nothing_differs() -> bool:
        same = await ctl("diff", "-f", str(repo))
        assert (same.code, same.out) == (0, ""), same.out + same.err
        return True

    await eventually(nothing_differs, timeout=60, what="an empty diff after the restart")

    # When the running pipeline changes in the files, it is blocked, not restarted
    pipeline["steps"] = [{"environment": "dev"}, {"environment": "production", "soak": "2h"}]
    (repo / "release.yaml").write_text(yaml.safe_dump(files["release.yaml"]))
    blocked = await ctl("apply", "-f", str(repo), "--force")
    assert blocked.code == 1, blocked.out + blocked.err
    assert blocked.out.startswith("! pipeline piped: blocked: pipeline release running"), blocked


@pytest.mark.timeout(300)  # a handful of rolloutctl processes, one after another
async def test_a_holdout_another_flag_gives_another_percent_refuses_the_files_before_any_is_sent(
    scenario: Scenario, tmp_path: Path
) -> None:
    # Given a flag started by hand holding out hx7 at 2%
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    ctl = operator(scenario, tmp_path, port)
    plan = manual_plan().model_dump(mode="json")
    by_hand = tmp_path / "live-plan.yaml"
    by_hand.write_text(yaml.safe_dump(plan | {"holdout": {"name": "hx7", "percent": 2}}))
    started = await ctl("start", "g7-live", "--plan", str(by_hand), "--reason", "by hand")
    assert started.code == 0, started.out + started.err
    # ...and files, valid offline, for a segment and a rollout holding out hx7 at 1%
    repo = tmp_path / "repo"
    files: dict[str, Any] = {
        "rollouts/g7-new.yaml": {
            "kind": "rollout",
            "flag": "g7-new",
            "plan": plan | {"holdout": {"name": "hx7", "percent": 1}},
        },
        "segments/pros.yaml": {"kind": "segment", "name": "pros", "rule": 'plan in ["pro"]'},
    }
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(yaml.safe_dump(data))
    checked = await ctl("validate", "-f", str(repo))
    assert checked.code == 0, checked.out + checked.err
    before = len(scenario.observed.decisions)

    # When they are applied
    refused = await ctl("apply", "-f", str(repo))

    # Then the rollout is named with the controller's reason, and nothing is sent
    assert refused.code == 3, refused.out + refused.err
    assert refused.out.splitlines() == [
        "refused: create rollout g7-new: invalid plan: holdout: holdout hx7 is 2% on g7-live, "
        "not 1%: every flag naming it must give it the same percent"
    ]
    assert "nothing was sent: the controller would refuse 1 of 2 objects" in refused.err
    # ...so a command sent after is the first one decided since, and both objects still differ
    marker = await ctl("segment", "put", "marker", "--rule", 'plan in ["x"]', "--json")
    assert marker.code == 0, marker.err
    since = await decisions_after(scenario, before, marker.json()["command_id"])
    assert [d["command_id"] for d in since] == [marker.json()["command_id"]]
    left = await ctl("diff", "-f", str(repo))
    assert left.code == 1, left.err
    assert sorted(line.split(":")[0] for line in left.out.splitlines() if line[0] in "+~!=") == [
        "+ rollout g7-new",
        "+ segment pros",
    ], left.out
