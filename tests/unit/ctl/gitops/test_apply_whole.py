"""``rolloutctl apply`` sends a directory whole or not at all against the state the controller
holds: an object its rollouts would refuse (a holdout another flag gives another percent, a
pipeline whose flag runs in one of its environments) is named with the reason before
anything is sent, whichever order its files come in; and when an object is refused after
all (a race the check cannot foresee), what can be undone of the objects applied before it
is undone, newest first, and the rest is said to stay applied; one whose decision did not
come in time may still apply, so nothing is undone then."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from controller.core.machine import Trial, step
from controller.core.reading import CommandChecks
from controller.core.release import Environments, RoleBook
from controller.core.rollouts import CommandInput, Plan, Rollout
from controller.core.trust import signing
from controller.core.wire import CommandAction, Decision, JsonObject
from controller.ctl.app import main
from controller.ctl.exits import EXIT_NO_DECISION, EXIT_REJECTED
from controller.ctl.gitops import checking, live, running
from controller.ctl.gitops.commanding import Batch
from controller.ctl.gitops.desired import Desired
from controller.ctl.operate import steering
from controller.ctl.operate.commands import write_private_key
from controller.daemon.registries import Held, check_commands
from controller.daemon.registries.keyring import Keyring, Registry

CI, CI_PUBLIC = signing.generate_key()
PLAN: dict[str, Any] = {
    "name": "std",
    "stages": [{"percent": 5}, {"percent": 100, "min_units_per_arm": 0}],
}
PIPELINE = {
    "name": "rel",
    "plans": {"std": PLAN},
    "plan": "std",
    "steps": [{"environment": "dev"}, {"environment": "production"}],
}
SEGMENT: dict[str, Any] = {"kind": "segment", "name": "pros", "rule": 'plan in ["pro"]'}
HOLDOUT_REFUSED = (
    "refused: create rollout g7-new: invalid plan: holdout: holdout hx7 is 2% on g7-live, "
    "not 1%: every flag naming it must give it the same percent"
)
TAKEN_REFUSED = (
    "refused: create pipeline search: search@dev has a rollout running: a pipeline starts its own"
)


def held_out(percent: float) -> dict[str, Any]:
    return PLAN | {"holdout": {"name": "hx7", "percent": percent}}


def running_on(key: str, plan: dict[str, Any]) -> Rollout:
    """A rollout a person started on ``key``."""
    start = CommandInput(
        action=CommandAction.START,
        flag=key,
        command_id=f"by-hand-{key}",
        actor="bo",
        now=datetime.now(UTC),
        plan=Plan.model_validate(plan),
        new_rollout_id=f"r-{key.replace('@', '-')}",
        new_salt="0" * 16,
    )
    made, _ = step(None, start)
    assert made is not None
    return made


class Controller:
    """The controller apply talks to: nothing of the files held yet, its check answered by
    the daemon's own over ``held``, and every command sent recorded and decided by
    ``decide`` (the command's JSON -> outcome and reason)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, held: dict[str, Rollout]) -> None:
        self.held = held
        self.sent: list[JsonObject] = []
        self.refuse: dict[str, str] = {}
        """Refused on arrival, though the check admitted them: a command's type -> why."""
        environments = Environments(names=("dev", "production"), default="production")
        self.keys = Keyring(Registry({"ci": CI_PUBLIC}, RoleBook(roles=()), environments))
        monkeypatch.setattr(live, "read_live", self._nothing_held)
        monkeypatch.setattr(checking, "_ask", self._check)
        monkeypatch.setattr(running, "_send", self._send)

    @staticmethod
    def _nothing_held(base: str, objects: list[Desired]) -> dict[str, None]:
        return {desired.label: None for desired in objects}

    def _check(self, base: str, commands: Sequence[JsonObject]) -> CommandChecks:
        values = [orjson.dumps(command) for command in commands]
        held = Held(Trial(dict(self.held)))
        now = datetime.now(UTC)
        found = check_commands(values, keys=self.keys, now=now, max_age_seconds=300, held=held)
        return CommandChecks(results=found)

    def _send(self, args: Any, batch: Batch) -> steering.Answered:
        last = orjson.loads(orjson.dumps(batch.commands[-1].model_dump(mode="json")))
        self.sent.append(last)
        why = self.refuse.get(last.get("type", "command"), "")
        decided = {
            "type": "decision",
            "v": 1,
            "id": f"d-{len(self.sent)}",
            "ts": 1767225600000,
            "flag": last.get("flag") or last.get("segment"),
            "kind": "segment" if last.get("type") == "segment_command" else "command",
            "action": last["action"],
            "outcome": "rejected" if why else "applied",
            "reason": why,
        }
        return steering.Answered(Decision.model_validate(decided), {})


def apply(tmp_path: Path, files: dict[str, Any]) -> int:
    repo = tmp_path / "repo"
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(yaml.safe_dump(data))
    key = tmp_path / "ci.key"
    write_private_key(key, CI)
    url = "http://controller.test"
    return main(["apply", "-f", str(repo), "--key", str(key), "--key-id", "ci", "--url", url])


@pytest.mark.parametrize(
    ("files", "held", "refused"),
    [
        # The segment's file read first, then the rollout's; and the other way round.
        (
            {
                "a-pros.yaml": SEGMENT,
                "b-new.yaml": {"flag": "g7-new", "plan": held_out(1)},
            },
            {"g7-live": running_on("g7-live", held_out(2))},
            HOLDOUT_REFUSED,
        ),
        (
            {
                "a-new.yaml": {"flag": "g7-new", "plan": held_out(1)},
                "b-pros.yaml": SEGMENT,
            },
            {"g7-live": running_on("g7-live", held_out(2))},
            HOLDOUT_REFUSED,
        ),
        # A pipeline's environment taken by a rollout started by hand.
        (
            {"a-pros.yaml": SEGMENT, "b-search.yaml": {"flag": "search", "pipeline": PIPELINE}},
            {"search@dev": running_on("search@dev", PLAN)},
            TAKEN_REFUSED,
        ),
        (
            {"a-search.yaml": {"flag": "search", "pipeline": PIPELINE}, "b-pros.yaml": SEGMENT},
            {"search@dev": running_on("search@dev", PLAN)},
            TAKEN_REFUSED,
        ),
    ],
)
def test_an_object_the_held_state_refuses_is_named_and_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    files: dict[str, dict[str, Any]],
    held: dict[str, Rollout],
    refused: str,
) -> None:
    controller = Controller(monkeypatch, held)
    before = dict(held)

    code = apply(tmp_path, files)

    out, err = capsys.readouterr()
    assert out.splitlines() == [refused], out + err
    assert "nothing was sent: the controller would refuse 1 of 2 objects" in err
    assert code == EXIT_REJECTED
    assert controller.sent == []
    assert controller.held == before


def test_the_same_files_apply_once_nothing_held_conflicts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    controller = Controller(monkeypatch, {"g7-live": running_on("g7-live", held_out(1))})
    files = {"a-new.yaml": {"flag": "g7-new", "plan": held_out(1)}, "b-pros.yaml": SEGMENT}

    code = apply(tmp_path, files)

    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert [(c.get("type"), c["action"]) for c in controller.sent] == [
        ("segment_command", "put"),
        ("command", "start"),
    ]


def test_an_object_refused_after_all_undoes_the_segments_created_before_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given files the check admits, whose second rollout a start by hand then beats
    controller = Controller(monkeypatch, {})
    files = {
        "a-pros.yaml": SEGMENT,
        "b-old.yaml": {"flag": "g7-old", "plan": held_out(1)},
        "c-new.yaml": {"flag": "g7-new", "plan": held_out(1)},
    }
    sent = controller._send

    def race(args: Any, batch: Batch) -> steering.Answered:
        if getattr(batch.commands[-1], "flag", "") == "g7-new":
            controller.refuse["command"] = "a rollout is already running"
        return sent(args, batch)

    monkeypatch.setattr(running, "_send", race)

    # When they are applied
    code = apply(tmp_path, files)

    # Then the refused object is named, the segment created before it deleted, and the
    # rollout started before it said to stay applied, with why
    out, err = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert out.splitlines() == [
        "applied: create segment pros",
        "applied: create rollout g7-old",
        "rejected: create rollout g7-new: a rollout is already running",
        "left applied: create rollout g7-old: a start served the flag: an abort would not "
        "unserve it, and the next apply would take the aborted rollout as in sync",
        "undone: create segment pros",
    ], out + err
    assert "undone 1 of the 2 objects applied before (segment pros); the rest stay" in err
    assert [(c.get("segment") or c.get("flag"), c["action"]) for c in controller.sent] == [
        ("pros", "put"),
        ("g7-old", "start"),
        ("g7-new", "start"),
        ("pros", "delete"),
    ]


def test_an_object_whose_decision_did_not_come_undoes_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a rollout whose decision does not come in time (it may still apply, and find
    # the segment before it)
    controller = Controller(monkeypatch, {})
    sent = controller._send

    def silent(args: Any, batch: Batch) -> steering.Answered | None:
        answered = sent(args, batch)
        return None if getattr(batch.commands[-1], "flag", "") == "g7-new" else answered

    monkeypatch.setattr(running, "_send", silent)
    files = {"a-pros.yaml": SEGMENT, "b-new.yaml": {"flag": "g7-new", "plan": held_out(1)}}

    # When the files are applied
    code = apply(tmp_path, files)

    # Then the segment stays: nothing is sent after the rollout
    out, err = capsys.readouterr()
    assert code == EXIT_NO_DECISION
    assert out.splitlines() == ["applied: create segment pros"], out + err
    assert "no decision came within" in err
    assert [c["action"] for c in controller.sent] == ["put", "start"]


def diff(tmp_path: Path, files: dict[str, Any], *signing: str) -> int:
    repo = tmp_path / "repo"
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(yaml.safe_dump(data))
    return main(["diff", "-f", str(repo), "--url", "http://controller.test", *signing])


def test_diff_says_a_create_apply_will_refuse_and_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    controller = Controller(monkeypatch, {"g7-live": running_on("g7-live", held_out(2))})
    files = {"a-pros.yaml": SEGMENT, "b-new.yaml": {"flag": "g7-new", "plan": held_out(1)}}
    key = tmp_path / "ci.key"
    write_private_key(key, CI)

    code = diff(tmp_path, files, "--key", str(key), "--key-id", "ci")

    out, _ = capsys.readouterr()
    said = [line for line in out.splitlines() if not line.startswith("  ")]
    why = HOLDOUT_REFUSED.removeprefix("refused: create rollout g7-new: ")
    assert said == [
        "+ segment pros: create: not on the controller",
        f"+ rollout g7-new: create: not on the controller; apply will be refused: {why}",
    ]
    assert code == 1
    assert controller.sent == []


def test_diff_without_a_key_says_it_did_not_ask(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no key where apply looks for one
    for name in ("ROLLOUTCTL_KEY", "ROLLOUTCTL_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    Controller(monkeypatch, {"g7-live": running_on("g7-live", held_out(2))})

    code = diff(tmp_path, {"b-new.yaml": {"flag": "g7-new", "plan": held_out(1)}})

    out, err = capsys.readouterr()
    assert "+ rollout g7-new: create: not on the controller\n" in out
    assert "not asked whether the controller would admit these: no signing key" in err
    assert code == 1
