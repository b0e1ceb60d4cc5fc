"""Desired state in files: reading a directory's objects, and what differs from the live ones."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from controller.core.rollouts import Plan
from controller.core.trust import signing
from controller.core.wire import JsonObject, SegmentCommand, sent_object
from controller.ctl import app
from controller.ctl.gitops import checking, commanding, diffing, reading
from controller.ctl.gitops.desired import (
    AppKeyBody,
    Desired,
    RolloutBody,
    SegmentBody,
    parse_files,
)
from controller.ctl.gitops.diffing import Change, Live, Move
from controller.ctl.operate.file_kinds import kind_of, wrong_file

PLAN = {"name": "std", "stages": [{"percent": 5}, {"percent": 100, "min_units_per_arm": 0}]}
PIPELINE = {"name": "rel", "plans": {"std": PLAN}, "plan": "std", "steps": [{"environment": "dev"}]}
SEGMENT = Desired("segment", "pros", SegmentBody(count=2, sha256="0" * 64), "pros.yaml")
ROLLOUT = Desired(
    "rollout",
    "checkout",
    RolloutBody(flag="checkout", environment=None, plan=Plan.model_validate(PLAN)),
    "checkout.yaml",
)
KEY = Desired("app_key", "web", AppKeyBody(scopes=(), client=True, environment=None), "web.yaml")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (PLAN, "plan"),
        (PIPELINE, "pipeline"),
        ({"flag": "f", "plan": "std"}, "rollout"),
        ({"name": "b", "ids_file": "b.txt"}, "segment"),
        ({"name": "b", "rule": "x"}, "segment"),
        ({"name": "k", "scopes": ["events"]}, "app_key"),
        ({"kind": "app-key", "name": "k"}, "app_key"),
        ({"roles": []}, "roles"),
        ({"windows": []}, "windows"),
        ({"kind": "plan", "steps": []}, "plan"),  # the kind said wins over the shape
        ({"kind": "deployment"}, None),
        ({"name": "x"}, None),
        (["stages"], None),
    ],
)
def test_a_files_kind_is_said_or_seen(data: Any, kind: str | None) -> None:
    assert kind_of(data) == kind


@pytest.mark.parametrize(
    ("data", "expected", "said"),
    [
        (PIPELINE, "plan", "this is a pipeline file: use `rolloutctl pipeline validate`"),
        (PLAN, "pipeline", "this is a plan file: use `rolloutctl plan validate`"),
        (
            {"flag": "f", "plan": "p"},
            "plan",
            "this is a rollout file: use `rolloutctl validate -f DIR`",
        ),
        (PLAN, "plan", None),
        ({"stagez": []}, "plan", None),
    ],
)
def test_a_file_given_to_the_wrong_command_names_the_one_that_fits(
    data: Any, expected: Any, said: str | None
) -> None:
    assert wrong_file(data, expected) == said


@pytest.mark.parametrize(
    ("documents", "labels", "problem"),
    [
        ({"p.yaml": PLAN, "r.yaml": {"flag": "f", "plan": "std"}}, ["rollout f"], None),
        ({"r.yaml": {"flag": "f", "plan": PLAN, "environment": "dev"}}, ["rollout f@dev"], None),
        ({"r.yaml": {"flag": "f", "pipeline": PIPELINE}}, ["pipeline f"], None),
        ({"r.yaml": {"flag": "f", "plan": "nope"}}, [], "r.yaml: plan: no plan named 'nope'"),
        ({"r.yaml": {"flag": "f"}}, [], "r.yaml: invalid rollout: a rollout names a plan or"),
        (
            {"r.yaml": {"flag": "f", "pipeline": PIPELINE, "environment": "dev"}},
            [],
            "r.yaml: invalid rollout: a pipeline names its environments",
        ),
        ({"s.yaml": {"name": "s", "rule": 'plan in ["pro"]'}}, ["segment s"], None),
        ({"s.yaml": {"name": "s", "rule": "plan in"}}, [], "s.yaml: invalid rule"),
        ({"s.yaml": {"name": "s", "ids_file": "s.txt"}}, ["segment s"], None),
        ({"t.yaml": {"name": "t", "ids_file": "t.txt"}}, [], "t.yaml: ids_file t.txt: missing"),
        ({"k.yaml": {"name": "k", "scopes": ["events"]}}, ["app-key k"], None),
        ({"k.yaml": {"kind": "app_key", "name": "k"}}, [], "k.yaml: invalid app key: a key needs"),
        (
            {"k.yaml": {"name": "k", "scopes": ["events"], "secret": "x"}},
            [],
            "k.yaml: invalid app key",
        ),
        (
            {
                "a.yaml": {"name": "s", "rule": 'plan in ["a"]'},
                "b.yaml": {"name": "s", "rule": 'plan in ["b"]'},
            },
            ["segment s"],
            "b.yaml: segment s is also in a.yaml",
        ),
        (
            {"w.yaml": {"windows": [{"kind": "deny", "timezone": "Mars/Base"}]}},
            [],
            "w.yaml: invalid windows",
        ),
        (
            {"roles.yaml": {"roles": [{"name": "dev", "actions": ["fly"], "environments": ["*"]}]}},
            [],
            "roles.yaml: invalid roles",
        ),
        ({"x.yaml": {"what": 1}}, [], "x.yaml: not an object of a kind apply knows"),
    ],
)
def test_a_directory_gives_its_objects_or_says_each_problem(
    documents: dict[str, Any], labels: list[str], problem: str | None
) -> None:
    ids: dict[str, tuple[str, ...] | str] = {"s.yaml": ("u-1", "u-2"), "t.yaml": "missing"}
    state = parse_files(documents, ids)
    assert [o.label for o in state.objects] == labels
    if problem is None:
        assert state.problems == []
    else:
        assert len(state.problems) == 1
        assert state.problems[0].startswith(problem), state.problems


def test_the_digest_covers_what_the_object_is_and_nothing_of_its_file() -> None:
    one = parse_files({"a.yaml": {"name": "s", "rule": 'plan in ["pro"]'}}, {}).objects[0]
    moved = parse_files(
        {"b/c.yaml": {"name": "s", "rule": 'plan  in ["pro"]', "reason": "why"}}, {}
    ).objects[0]
    other = parse_files({"a.yaml": {"name": "s", "rule": 'plan in ["free"]'}}, {}).objects[0]
    assert one.digest == moved.digest != other.digest


@pytest.mark.parametrize(
    ("item", "live", "force", "change", "send"),
    [
        (SEGMENT, None, False, Change.CREATE, True),
        (SEGMENT, Live(SEGMENT.digest), False, Change.IN_SYNC, False),
        (SEGMENT, Live("0" * 64), False, Change.UPDATE, True),
        (SEGMENT, Live(None), False, Change.HELD, False),
        (SEGMENT, Live(None), True, Change.UPDATE, True),
        # a rollout's phase is status: as applied, in sync whether running or ended
        (ROLLOUT, Live(ROLLOUT.digest, running=True, state="paused"), False, Change.IN_SYNC, False),
        (ROLLOUT, Live(ROLLOUT.digest, state="rolled_back"), False, Change.IN_SYNC, False),
        # a running rollout never takes another plan, forced or not
        (ROLLOUT, Live("0" * 64, running=True), False, Change.BLOCKED, False),
        (ROLLOUT, Live(None, running=True), True, Change.BLOCKED, False),
        (ROLLOUT, Live("0" * 64, state="rolled_back"), False, Change.UPDATE, True),
        # a completed rollout started again would leave 100% for its first stage
        (ROLLOUT, Live("0" * 64, completed=True), False, Change.HELD, False),
        (ROLLOUT, Live("0" * 64, completed=True), True, Change.UPDATE, True),
        (ROLLOUT, Live(None, state="completed"), False, Change.HELD, False),
        (KEY, Live(KEY.digest, key_id="a" * 16), False, Change.IN_SYNC, False),
        (KEY, Live(KEY.digest, revoked=True), False, Change.HELD, False),
        (KEY, Live(KEY.digest, revoked=True), True, Change.UPDATE, True),
        (KEY, Live("0" * 64, key_id="a" * 16), False, Change.UPDATE, True),
    ],
)
def test_what_differs_from_the_live_object(
    item: Desired, live: Live | None, force: bool, change: Change, send: bool
) -> None:
    compared = diffing.compare(item, live, force=force)
    assert (compared.change, compared.send) == (change, send)
    assert diffing.exit_code([compared]) == (0 if change is Change.IN_SYNC else 1)


AT = datetime(2025, 5, 1, 14, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("phase", "actor", "pause_reason", "said"),
    [
        ("killed", "ana", None, "killed 2025-05-01 14:02Z by ana (bad errors)"),
        ("rolled_back", "bo", None, "rolled back 2025-05-01 14:02Z by bo (bad errors)"),
        ("aborted", "ana", None, "aborted 2025-05-01 14:02Z by ana (bad errors)"),
        ("completed", "ana", None, "promoted to the end 2025-05-01 14:02Z by ana (bad errors)"),
        ("paused", None, "operator", "paused by an operator"),
        # the gate, a monitor or a time box decided: nobody steered it
        ("rolled_back", None, None, None),
        ("completed", None, None, None),
        ("killed", "", None, None),
        ("paused", None, "guardrail", None),
        ("running", "ana", None, None),
    ],
)
def test_a_rollout_steered_by_hand_says_how_when_and_by_whom(
    phase: str, actor: str | None, pause_reason: str | None, said: str | None
) -> None:
    found = diffing.steered(
        phase, actor=actor, at=AT, reason="bad errors", pause_reason=pause_reason
    )
    assert found == said


LATER = datetime(2025, 5, 1, 15, 10, tzinfo=UTC)
PROMOTED = Move("promote", AT, "ana", "looks fine", "stage 1/4 (1%)")
PAUSED = Move("pause", LATER, "bo", "a call at 4", "stage 2/4 (5%)")
RESUMED = Move("resume", None, "bo", "", "stage 2/4 (5%)")


@pytest.mark.parametrize(
    ("phase", "pause_reason", "actor", "moves", "said"),
    [
        # promoted to a next stage by hand, still running
        ("running", None, None, [PROMOTED], "promoted from stage 1/4 (1%) 2025-05-01 14:02Z "
         "by ana (looks fine)"),
        # paused by hand: the kept command says who, when and why (no generic line)
        ("paused", "operator", None, [PAUSED], "paused at stage 2/4 (5%) 2025-05-01 15:10Z "
         "by bo (a call at 4)"),
        # paused and resumed: both, oldest first; a time or reason not kept is left out
        ("running", None, None, [PAUSED, RESUMED], "paused at stage 2/4 (5%) 2025-05-01 "
         "15:10Z by bo (a call at 4); resumed at stage 2/4 (5%) by bo"),
        # promoted, then killed by hand: the ending after the moves
        ("killed", None, "cy", [PROMOTED], "promoted from stage 1/4 (1%) 2025-05-01 14:02Z "
         "by ana (looks fine); killed 2025-05-01 15:10Z by cy (errors)"),
        # promoted by hand, then rolled back by the gate: only the promote
        ("rolled_back", None, None, [PROMOTED], "promoted from stage 1/4 (1%) 2025-05-01 "
         "14:02Z by ana (looks fine)"),
        # resumed, then paused again with no kept command (an older controller): generic
        ("paused", "operator", None, [RESUMED], "resumed at stage 2/4 (5%) by bo; paused by "
         "an operator"),
        # a stage not said, an unknown action: said as kept
        ("running", None, None, [Move("nudge", None, None, "", None)], "nudge its stage"),
        # paused by the gate, nobody's moves: nothing
        ("paused", "guardrail", None, [], None),
    ],
)  # fmt: skip
def test_a_rollout_moved_by_hand_while_it_ran_says_each_move_oldest_first(
    phase: str, pause_reason: str | None, actor: str | None, moves: list[Move], said: str | None
) -> None:
    found = diffing.steered(
        phase, actor=actor, at=LATER, reason="errors", pause_reason=pause_reason, moves=moves
    )
    assert found == said


def test_a_rollout_promoted_by_hand_stays_in_sync_but_is_shown() -> None:
    moved = diffing.steered("running", actor=None, at=None, reason=None, moves=[PROMOTED])
    live = Live(ROLLOUT.digest, running=True, state="running (plan std)", steered=moved)
    item = diffing.compare(ROLLOUT, live)
    assert (item.change, item.send, item.noted) == (Change.IN_SYNC, False, True)
    assert item.why == f"running (plan std); changed by hand: {moved}"


def test_a_rollout_killed_by_hand_stays_in_sync_but_is_shown() -> None:
    steered = "killed 2025-05-01 14:02Z by ana (bad errors)"
    live = Live(ROLLOUT.digest, state="killed (plan std)", steered=steered)
    item = diffing.compare(ROLLOUT, live)
    assert (item.change, item.send, item.noted) == (Change.IN_SYNC, False, True)
    assert item.why == f"killed (plan std); changed by hand: {steered}"
    assert diffing.exit_code([item]) == 0
    assert not diffing.compare(ROLLOUT, Live(ROLLOUT.digest, state="killed")).noted


def test_segments_and_keys_are_sent_before_the_rollouts_that_may_name_them() -> None:
    pipeline = Desired("pipeline", "search", SEGMENT.body, "search.yaml")
    items = [diffing.compare(d, None) for d in (ROLLOUT, KEY, pipeline, SEGMENT)]
    ordered = diffing.in_sending_order(items)
    assert [i.desired.kind for i in ordered] == ["segment", "app_key", "pipeline", "rollout"]


def test_the_check_is_asked_in_chunks_within_the_controllers_bounds() -> None:
    commands: list[JsonObject] = [{"id": f"c{i}", "data": "x" * 100} for i in range(1_200)]
    chunks = checking._chunks(list(enumerate(commands)))
    assert [len(c) for c in chunks] == [500, 500, 200]
    assert [at for chunk in chunks for at, _ in chunk] == list(range(1_200))
    large: list[tuple[int, JsonObject]] = [
        (i, {"id": f"c{i}", "data": "x" * 300_000}) for i in range(20)
    ]
    for chunk in checking._chunks(large):
        assert sum(len(orjson.dumps(c)) for _, c in chunk) <= checking.CHUNK_BYTES


def test_a_replaced_app_key_is_revoked_then_made_anew_and_its_secret_never_shown() -> None:
    item = diffing.compare(KEY, Live("0" * 64, key_id="a" * 16))
    batch = commanding.commands_of(item, commanding.Who("ci", "ci"), None)
    assert [(c["action"], c["target"]) for c in map(sent_object, batch.commands)] == [
        ("revoke", "a" * 16),
        ("create", "web"),
    ]
    assert sent_object(batch.commands[-1])["applied"] == KEY.digest
    assert batch.secret is not None
    assert batch.secret[:10] == "rc_client_"
    shown = commanding.shown(batch.commands[-1])
    assert not {"secret_sha256", "app_key", "id", "ts"} & shown.keys()


def test_an_id_list_is_sent_in_parts_each_with_the_digest(tmp_path: Path) -> None:
    ids = tuple(f"user-{i:07d}" for i in range(40_000))
    (tmp_path / "beta.txt").write_text("\n".join(ids))
    (tmp_path / "beta.yaml").write_text(yaml.safe_dump({"name": "beta", "ids_file": "beta.txt"}))
    state = reading.read_directory(tmp_path)
    assert state.problems == []
    item = diffing.compare(state.objects[0], None)
    private, public = signing.generate_key()
    batch = commanding.commands_of(item, commanding.Who("ci", "ci"), private)
    assert len(batch.commands) > 1
    sent = [sent_object(c) for c in batch.commands]
    assert {c["applied"] for c in sent} == {state.objects[0].digest}
    parts = {SegmentCommand.model_validate(c).ids.parts for c in sent}  # type: ignore[union-attr]
    assert parts == {len(batch.commands)}
    assert all(signing.verify(c, signing.load_public_key(public)) for c in sent)


def test_an_ids_file_outside_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("u-1\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "s.yaml").write_text(yaml.safe_dump({"name": "s", "ids_file": "../secret.txt"}))
    state = reading.read_directory(repo)
    assert state.problems == ["s.yaml: ids_file ../secret.txt: outside the directory"]


def test_plan_validate_on_a_pipeline_file_names_pipeline_validate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipeline = Path(__file__).parents[3] / "examples/pipelines/checkout-release.yaml"
    assert app.main(["plan", "validate", str(pipeline)]) == 78
    said = capsys.readouterr().out
    assert said.strip().endswith("this is a pipeline file: use `rolloutctl pipeline validate`")
    assert app.main(["pipeline", "validate", str(pipeline)]) == 0
    assert (
        "valid pipeline 'checkout-release': dev -> staging -> production" in capsys.readouterr().out
    )


def test_the_example_repository_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).parents[3] / "examples/gitops"
    assert app.main(["validate", "-f", str(example)]) == 0
    said = capsys.readouterr().out.splitlines()
    files = sorted(
        str(p.relative_to(example)) for p in example.rglob("*") if p.suffix in (".yaml", ".json")
    )
    assert [line.split(":")[0] for line in said] == files
    state = reading.read_directory(example)
    assert sorted(o.label for o in state.objects) == [
        "app-key checkout-api",
        "app-key shop-web",
        "pipeline search-ranking",
        "rollout checkout-v2",
        "segment beta-testers",
        "segment pro-plans",
    ]


def test_a_plan_that_cannot_work_is_refused_before_any_command() -> None:
    never = PLAN | {"stages": [{"percent": 100}]}  # at 100% control is empty: never completes
    state = parse_files({"r.yaml": {"flag": "f", "plan": never}}, {}, datetime.now(UTC))
    assert [p.split(":")[:2] for p in state.problems] == [["r.yaml", " cannot work"]]


def test_hidden_files_and_links_leading_out_are_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text(yaml.safe_dump({"name": "s", "rule": 'plan in ["x"]'}))
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "config.yaml").write_text("not: [an object")
    (repo / "linked.yaml").symlink_to(outside)
    (repo / "kept.yaml").write_text(yaml.safe_dump({"name": "k", "rule": 'plan in ["y"]'}))
    state = reading.read_directory(repo)
    assert (list(state.checked), state.problems) == (["kept.yaml"], [])


def _rollout(flag: str, *parents: str, environment: str | None = None) -> dict[str, Any]:
    needs = [{"flag": parent, "variants": ["treatment"]} for parent in parents]
    return {"flag": flag, "environment": environment, "plan": PLAN | {"requires": needs or None}}


def _served(flag: str, *parents: str) -> dict[str, Any]:
    """A rollout served by Unleash (feature ``f-<flag>``)."""
    made = _rollout(flag, *parents)
    return made | {"plan": made["plan"] | {"backend": {"unleash": {"feature": f"f-{flag}"}}}}


@pytest.mark.parametrize(
    ("rollouts", "problems"),
    [
        ([_rollout("a"), _rollout("b", "a"), _rollout("c", "b"), _rollout("d", "c")], []),
        ([_rollout("a", "b"), _rollout("b", "a")], ["prerequisites form a cycle: a → b → a"]),
        ([_rollout("a", "a")], ["a requires itself"]),
        ([_rollout("b", "ghost")], ["b requires ghost, an unknown flag (no rollout of it here)"]),
        # A parent in another environment is not this environment's.
        (
            [_rollout("a", environment="staging"), _rollout("b", "a")],
            ["b requires a, an unknown flag (no rollout of it here)"],
        ),
        # What Unleash's dependent features cannot express: a parent it does not serve.
        ([_served("a"), _served("b", "a")], []),
        (
            [_rollout("a"), _served("b", "a")],
            [
                "b is served by Unleash (feature f-b) and requires a, which Unleash does not"
                " serve: a dependency can only name an Unleash feature"
            ],
        ),
    ],
)
def test_prerequisites_are_checked_over_the_directory_per_environment(
    rollouts: list[dict[str, Any]], problems: list[str]
) -> None:
    documents: dict[str, object] = {f"r{i}.yaml": r for i, r in enumerate(rollouts)}
    state = parse_files(documents, {}, datetime.now(UTC))
    assert [p.split(": ", 1)[1] for p in state.problems] == problems
    sent = [o.body.model_dump(mode="json")["plan"].get("requires") for o in state.objects]
    assert len(sent) == len(rollouts)
    assert all(r is None or r[0]["variants"] == ["treatment"] for r in sent)


def _held_out(flag: str, percent: float | None, environment: str | None = None) -> dict[str, Any]:
    holdout = None if percent is None else {"name": "q3-2026", "percent": percent}
    return {"flag": flag, "environment": environment, "plan": PLAN | {"holdout": holdout}}


@pytest.mark.parametrize(
    ("rollouts", "problems"),
    [
        ([_held_out("a", 2), _held_out("b", 2), _held_out("c", None)], []),
        (
            [_held_out("a", 2), _held_out("b", 1), _held_out("c", 2)],
            [
                "holdouts in the default environment: holdout q3-2026 is given 1% (b) and 2% "
                "(a, c): every flag naming it must give it the same percent"
            ],
        ),
        # Each environment holds its own holdout of the name.
        ([_held_out("a", 2), _held_out("b", 1, environment="staging")], []),
    ],
)
def test_holdouts_are_checked_over_the_directory_per_environment(
    rollouts: list[dict[str, Any]], problems: list[str]
) -> None:
    documents: dict[str, object] = {f"r{i}.yaml": r for i, r in enumerate(rollouts)}
    state = parse_files(documents, {}, datetime.now(UTC))
    assert state.problems == problems
    assert len(state.objects) == len(rollouts)
