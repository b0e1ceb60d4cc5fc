"""The check of a set of signed commands: each answered as the command intake would decide it,
by the key's roles, its signature and freshness, and, given the rollouts held, as the
rollouts service would decide it on them, none decided. The commands are made by
``rolloutctl apply``'s own code, so the two are held together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from controller.core.machine import Trial, step
from controller.core.release import Environments, KeyRecord, Permission, Role, RoleBook
from controller.core.rollouts import CommandInput, Plan, Rollout
from controller.core.trust import signing
from controller.core.wire import CommandAction, SignedCommand, sent_object
from controller.ctl.gitops import commanding, diffing
from controller.ctl.gitops.desired import parse_files
from controller.daemon.registries import Held, check_commands
from controller.daemon.registries.keyring import Keyring, Registry

CI, CI_PUBLIC = signing.generate_key()
OPS, OPS_PUBLIC = signing.generate_key()
OTHER, _ = signing.generate_key()
PLAN = {"name": "std", "stages": [{"percent": 5}, {"percent": 100, "min_units_per_arm": 0}]}
PIPELINE = {
    "name": "rel",
    "plans": {"std": PLAN},
    "plan": "std",
    "steps": [{"environment": "dev"}, {"environment": "production"}],
}
FILES: dict[str, object] = {
    "segment.yaml": {"name": "pros", "rule": 'plan in ["pro"]'},
    "dev.yaml": {"flag": "checkout", "environment": "dev", "plan": PLAN},
    "production.yaml": {"flag": "checkout", "environment": "production", "plan": PLAN},
    "key.yaml": {"name": "web", "client": True},
    "pipeline.yaml": {"flag": "search", "pipeline": PIPELINE},
}
ROLE_REFUSED = "key ci (roles: ci-dev, segments) may not"


def keyring() -> Keyring:
    book = RoleBook(
        roles=(
            Role(name="ci-dev", actions=(Permission.START,), environments=("dev",)),
            Role(name="segments", actions=(Permission.MANAGE_SEGMENTS,), environments=("*",)),
        )
    )
    keys: dict[str, str | KeyRecord] = {
        "ci": KeyRecord(public_key=CI_PUBLIC, roles=("ci-dev", "segments")),
        "ops": OPS_PUBLIC,
    }
    environments = Environments(names=("dev", "production"), default="production")
    return Keyring(Registry(keys, book, environments))


def signed(key_id: str, key: Any = None) -> dict[str, SignedCommand]:
    """Each file's first command, as apply signs it with ``key`` as ``key_id``."""
    state = parse_files(dict(FILES), {})
    assert state.problems == []
    who = commanding.Who("bot", key_id)
    return {
        d.source: commanding.commands_of(diffing.compare(d, None), who, key or CI).commands[0]
        for d in state.objects
    }


def checked(values: list[bytes], *, at: datetime | None = None) -> list[tuple[bool, str]]:
    now = at or datetime.now(UTC)
    found = check_commands(values, keys=keyring(), now=now, max_age_seconds=300)
    assert [c.index for c in found] == list(range(len(values)))
    return [(c.allowed, c.reason) for c in found]


def encoded(command: SignedCommand) -> bytes:
    return orjson.dumps(sent_object(command))


@pytest.mark.parametrize(
    ("source", "allowed", "said"),
    [
        ("segment.yaml", True, ""),
        ("dev.yaml", True, ""),
        ("production.yaml", False, f"{ROLE_REFUSED} start in production: it may only in dev"),
        ("key.yaml", False, f"{ROLE_REFUSED} manage_keys in every environment: it may nowhere"),
        ("pipeline.yaml", False, "a pipeline starts rollouts in production: " + ROLE_REFUSED),
    ],
)
def test_each_command_is_answered_by_the_keys_roles(source: str, allowed: bool, said: str) -> None:
    command = signed("ci")[source]
    [(ok, reason)] = checked([encoded(command)])
    assert ok is allowed
    assert reason.startswith(said)
    assert bool(reason) is not allowed


def test_a_key_holding_every_role_is_allowed_every_command() -> None:
    commands = signed("ops", OPS)
    assert checked([encoded(c) for c in commands.values()]) == [(True, "")] * len(commands)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda raw: raw | {"key_id": "nobody"}, "unknown key id 'nobody'"),
        (lambda raw: raw | {"reason": "changed after signing"}, "bad signature"),
        (lambda raw: {k: v for k, v in raw.items() if k != "sig"}, "unsigned command"),
    ],
)
def test_a_command_not_signed_by_a_known_key_is_refused(change: Any, said: str) -> None:
    raw = sent_object(signed("ops", OPS)["dev.yaml"])
    [(ok, reason)] = checked([orjson.dumps(change(raw))])
    assert (ok, reason) == (False, said)


def test_a_stale_command_is_refused() -> None:
    command = signed("ops", OPS)["segment.yaml"]
    [(ok, reason)] = checked([encoded(command)], at=datetime.now(UTC) + timedelta(hours=1))
    assert not ok
    assert reason.startswith("stale command")


def test_a_command_breaking_the_contract_is_refused_alone() -> None:
    good = encoded(signed("ops", OPS)["segment.yaml"])
    answers = checked([b'{"type": "app_key", "id": "x1"}', b"[]", good, b'{"type": "monitor"}'])
    assert [ok for ok, _ in answers] == [False, False, True, False]
    assert answers[0][1].startswith("schema: ")


def test_a_command_over_the_intakes_bound_is_refused_unread() -> None:
    [(ok, reason)] = checked([b'{"id": "' + b"x" * 300_000 + b'"}'])
    assert (ok, reason) == (False, "oversize: 300010 bytes > 262144")


def test_nothing_is_recorded_so_the_same_command_checks_the_same_again() -> None:
    values = [encoded(c) for c in signed("ci").values()]
    assert checked(values) == checked(values)


# -- on the rollouts held: the start checks and the state machine, each admitted command
# taken as applied for the next ---------------------------------------------------------

LIVE_PLAN = {**PLAN, "holdout": {"name": "hx7", "percent": 2}}
ONE_PERCENT = {**PLAN, "holdout": {"name": "hx7", "percent": 1}}


def live(flag: str, plan: dict[str, Any]) -> Rollout:
    """A rollout running on ``flag`` (its key) by ``plan``."""
    start = CommandInput(
        action=CommandAction.START,
        flag=flag,
        command_id=f"by-hand-{flag}",
        actor="bo",
        now=datetime.now(UTC),
        plan=Plan.model_validate(plan),
        new_rollout_id=f"r-{flag}",
        new_salt="0" * 16,
    )
    made, _ = step(None, start)
    assert made is not None
    return made


def on_state(files: dict[str, object], held: dict[str, Rollout]) -> list[tuple[str, str]]:
    """Each object's command of ``files`` (in their order), as apply signs it with a key
    holding every role, answered on the rollouts ``held``: (file, why refused or "")."""
    state = parse_files(files, {})  # a conflict among the files' own validate says too
    assert len(state.objects) == len(files), state.problems
    who = commanding.Who("bot", "ops")
    made = [
        (d.source, commanding.commands_of(diffing.compare(d, None), who, OPS).commands[0])
        for d in sorted(state.objects, key=lambda d: list(files).index(d.source))
    ]
    found = check_commands(
        [encoded(c) for _, c in made],
        keys=keyring(),
        now=datetime.now(UTC),
        max_age_seconds=300,
        held=Held(Trial(dict(held))),
    )
    assert all(c.allowed is (c.reason == "") for c in found)
    return [(source, c.reason) for (source, _), c in zip(made, found, strict=True)]


HOLDOUT_REFUSED = (
    "invalid plan: holdout: holdout hx7 is 2% on g7-live, not 1%: every flag naming it must "
    "give it the same percent"
)
SEGMENT: dict[str, object] = {"segment.yaml": {"name": "pros", "rule": 'plan in ["pro"]'}}
NEW: dict[str, object] = {"new.yaml": {"flag": "g7-new", "plan": ONE_PERCENT}}


@pytest.mark.parametrize(
    ("files", "held", "answers"),
    [
        # A holdout another flag gives another percent: the rollout is refused, by name.
        (
            SEGMENT | NEW,
            {"g7-live": live("g7-live", LIVE_PLAN)},
            [("segment.yaml", ""), ("new.yaml", HOLDOUT_REFUSED)],
        ),
        (
            NEW | SEGMENT,
            {"g7-live": live("g7-live", LIVE_PLAN)},
            [("new.yaml", HOLDOUT_REFUSED), ("segment.yaml", "")],
        ),
        # A start the state machine refuses (the flag runs) is not taken as applied.
        (
            {"live.yaml": {"flag": "g7-live", "plan": ONE_PERCENT}} | NEW,
            {"g7-live": live("g7-live", {**LIVE_PLAN, "stages": [{"percent": 100}]})},
            [("live.yaml", "a rollout is already running"), ("new.yaml", HOLDOUT_REFUSED)],
        ),
        # The set's own start counts for the next.
        (
            {
                "a.yaml": {"flag": "g7-a", "plan": LIVE_PLAN},
                "b.yaml": {"flag": "g7-b", "plan": ONE_PERCENT},
            },
            {},
            [
                ("a.yaml", ""),
                ("b.yaml", HOLDOUT_REFUSED.replace("g7-live", "g7-a")),
            ],
        ),
        # Nothing held: every start is admitted.
        (SEGMENT | NEW, {}, [("segment.yaml", ""), ("new.yaml", "")]),
        # A pipeline starts its own rollouts: a flag running in one of its environments
        # refuses it, a flag free everywhere does not.
        (
            {"pipeline.yaml": {"flag": "search", "pipeline": PIPELINE}},
            {"search@dev": live("search@dev", PLAN)},
            [("pipeline.yaml", "search@dev has a rollout running: a pipeline starts its own")],
        ),
        (
            {"pipeline.yaml": {"flag": "search", "pipeline": PIPELINE}},
            {"other@dev": live("other@dev", PLAN)},
            [("pipeline.yaml", "")],
        ),
    ],
)
def test_each_start_is_decided_on_the_rollouts_held_and_the_sets_own(
    files: dict[str, object], held: dict[str, Rollout], answers: list[tuple[str, str]]
) -> None:
    assert on_state(files, held) == answers


def test_a_pipelines_steps_count_for_the_starts_after_it() -> None:
    held_out = {**PIPELINE, "plans": {"std": LIVE_PLAN}}
    files: dict[str, object] = {
        "pipeline.yaml": {"flag": "g7-live", "pipeline": held_out},
        "new.yaml": {"flag": "g7-new", "plan": ONE_PERCENT},
    }
    assert on_state(files, {}) == [("pipeline.yaml", ""), ("new.yaml", HOLDOUT_REFUSED)]
