"""The check of a set of signed commands: each answered as the command intake would decide it,
by the key's roles, its signature and freshness, none decided. The commands are made by
``rolloutctl apply``'s own code, so the two are held together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from controller.core.release import Environments, KeyRecord, Permission, Role, RoleBook
from controller.core.trust import signing
from controller.core.wire import SignedCommand, sent_object
from controller.ctl.gitops import commanding, diffing
from controller.ctl.gitops.desired import parse_files
from controller.daemon.registries import check_commands
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
