"""The keyring: a reload swaps every key and role or none, and says which ids changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from controller.adapters.memory import MemoryOutputs
from controller.core.common import ConfigError
from controller.core.release import (
    Environments,
    KeyRecord,
    Permission,
    Role,
    RoleBook,
    read_key_record,
)
from controller.core.trust import signing
from controller.daemon.registries.keyring import (
    KeyChange,
    KeyReloader,
    Keyring,
    Registry,
    registry_of,
    shared_refusal,
)
from controller.settings import TopicSettings, load_settings

A, B, C = (signing.generate_key()[1] for _ in range(3))


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        ({"a": A}, {"a": A}, KeyChange()),
        ({"a": A}, {"a": A, "b": B}, KeyChange(added=("b",))),
        ({"a": A, "b": B}, {"b": B}, KeyChange(removed=("a",))),
        ({"a": A}, {"a": C}, KeyChange(replaced=("a",))),
        ({"a": A, "b": B}, {"c": C, "b": A}, KeyChange(("c",), ("a",), ("b",))),
    ],
)
def test_a_reload_names_what_changed(
    before: dict[str, str], after: dict[str, str], change: KeyChange
) -> None:
    keyring = Keyring(before)
    assert keyring.reload(after) == change
    assert sorted(keyring) == sorted(after)
    assert bool(change) is (before != after)


def test_a_key_that_does_not_load_keeps_every_old_key() -> None:
    keyring = Keyring({"a": A})
    with pytest.raises(ValueError, match="operator key 'eve'"):
        keyring.reload({"a": A, "b": B, "eve": "not-a-key"})
    assert list(keyring) == ["a"]
    assert KeyChange(added=("b",), removed=("a",)).summary() == "added b; removed a"


# -- roles per key -------------------------------------------------------------------------

ENVIRONMENTS = Environments(names=("dev", "staging", "production"), default="production")
BOOK = RoleBook(
    roles=(
        Role(name="dev", actions=tuple(Permission), environments=("dev",)),
        Role(name="approver", actions=(Permission.APPROVE,), environments=("*",)),
    )
)


def registry(keys: dict[str, str | KeyRecord], book: RoleBook = BOOK) -> Registry:
    return Registry(keys, book, ENVIRONMENTS)


@pytest.mark.parametrize(
    ("record", "roles"),
    [
        (A, ("operator",)),  # today's form: every action everywhere
        (KeyRecord(public_key=A), ("operator",)),
        (KeyRecord(public_key=A, roles=()), ("operator",)),
        (KeyRecord(public_key=A, roles=("dev",)), ("dev",)),
        (KeyRecord(public_key=A, roles=("dev", "approver")), ("dev", "approver")),
    ],
    # The key is made anew in each process: ids that name it would differ between workers.
    ids=["text", "record", "no-roles", "dev", "dev-approver"],
)
def test_a_key_holds_the_roles_its_record_names(
    record: str | KeyRecord, roles: tuple[str, ...]
) -> None:
    keyring = Keyring(registry({"a": record}))
    assert keyring.roles_of("a").names == roles
    assert keyring.roles_of("nobody").names == ()


def test_new_roles_for_a_kept_key_are_named_in_the_change() -> None:
    keyring = Keyring(registry({"a": KeyRecord(public_key=A, roles=("dev",)), "b": B}))
    keys: dict[str, str | KeyRecord] = {"a": KeyRecord(public_key=A, roles=("approver",)), "b": B}
    change = keyring.reload(registry(keys))
    assert change == KeyChange(regranted=("a",))
    assert "gave other roles to a" in change.summary()
    assert keyring.granted() == {"a": ["approver"], "b": ["operator"]}
    # A role redefined changes what its holders may do: they are named too
    wider = RoleBook(
        roles=(
            Role(name="dev", actions=tuple(Permission), environments=("dev",)),
            Role(name="approver", actions=(Permission.APPROVE,), environments=("production",)),
        )
    )
    assert keyring.reload(registry(keys, wider)).regranted == ("a",)


def test_a_key_names_its_holder_or_is_its_own() -> None:
    keys: dict[str, str | KeyRecord] = {
        "ana-1": KeyRecord(public_key=A, roles=("approver",), holder="ana"),
        "ana-2": KeyRecord(public_key=B, roles=("approver",), holder="ana"),
        "bo": C,
    }
    keyring = Keyring(registry(keys))
    assert [keyring.holder_of(k) for k in ("ana-1", "ana-2", "bo", "nobody")] == [
        "ana",
        "ana",
        None,
        None,
    ]
    assert keyring.holders() == {"ana-1": "ana", "ana-2": "ana", "bo": "bo"}
    # Giving a kept key to another person is named in the change
    moved = {**keys, "ana-2": KeyRecord(public_key=B, roles=("approver",), holder="cy")}
    change = keyring.reload(registry(moved))
    assert change == KeyChange(reassigned=("ana-2",))
    assert change.summary() == "gave another holder to ana-2"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"public_key": "x", "holder": ""}, "holder"),
        ({"public_key": "x", "holder": "a" * 65}, "holder"),
        ({"public_key": "x", "holder": "ana smith"}, "holder"),
    ],
    ids=["empty", "too-long", "a-space"],
)
def test_a_bad_holder_is_refused_by_its_field(value: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=f"operator_keys.k: {field}: "):
        read_key_record("k", value)


@pytest.mark.parametrize(
    ("keys", "book", "needle"),
    [
        ({"a": KeyRecord(public_key=A, roles=("admin",))}, BOOK, "operator_keys.a.roles.0"),
        (
            {"a": A},
            RoleBook(roles=(Role(name="eu", actions=(Permission.KILL,), environments=("eu",)),)),
            "roles.0.environments.0: unknown environment 'eu'",
        ),
        ({"a": KeyRecord(public_key="not-a-key", roles=("dev",))}, BOOK, "operator key 'a'"),
    ],
)
def test_a_registry_that_does_not_hold_keeps_every_old_key_and_role(
    keys: dict[str, str | KeyRecord], book: RoleBook, needle: str
) -> None:
    keyring = Keyring(registry({"a": KeyRecord(public_key=A, roles=("dev",))}))
    with pytest.raises(ValueError, match=re.escape(needle)):
        keyring.reload(registry(keys, book))
    assert keyring.roles_of("a").names == ("dev",)


def test_key_texts_alone_keep_the_roles_and_environments() -> None:
    keyring = Keyring(registry({"a": KeyRecord(public_key=A, roles=("dev",))}))
    keyring.reload({"a": KeyRecord(public_key=A, roles=("approver",)), "b": B})
    assert keyring.environments == ENVIRONMENTS
    assert keyring.granted() == {"a": ["approver"], "b": ["operator"]}


def test_the_settings_read_key_records_roles_and_environments(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "engine": {
                    "environments": {"names": ["dev", "production"], "default": "production"},
                    "roles": {
                        "roles": [{"name": "dev", "actions": ["promote"], "environments": ["dev"]}]
                    },
                    "operator_keys": {"ops": A, "dev-1": {"public_key": B, "roles": ["dev"]}},
                }
            }
        )
    )
    keyring = Keyring(registry_of(load_settings(config).engine))
    assert keyring.granted() == {"dev-1": ["dev"], "ops": ["operator"]}
    assert keyring.environments.default == "production"


@pytest.mark.parametrize(
    ("engine", "needle"),
    [
        (
            {"operator_keys": {"dev-1": {"public_key": A, "roles": ["dev"]}}},
            "operator_keys.dev-1.roles.0: unknown role 'dev'",
        ),
        ({"operator_keys": {"dev-1": {"key": A}}}, "operator_keys.dev-1: public_key"),
        (
            {"roles": {"roles": [{"name": "r", "actions": ["kill"], "environments": ["dev"]}]}},
            "roles.0.environments.0: unknown environment 'dev'",
        ),
        ({"roles": {"roles": [{"name": "r", "actions": ["fly"]}]}}, "engine.roles: roles.0"),
        (
            {"environments": {"names": ["dev"]}},
            "engine.environments: default: 'default' is not one of names",
        ),
    ],
)
def test_a_registry_that_does_not_hold_is_refused_naming_the_field(
    tmp_path: Path, engine: dict[str, object], needle: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"engine": engine}))
    with pytest.raises(ConfigError, match=re.escape(needle)):
        registry_of(load_settings(config).engine)


@pytest.mark.parametrize(
    ("roles", "refused"),
    [
        (("operator",), None),
        (("approver",), None),  # a role in every environment ("*")
        (
            ("dev",),
            "key k (roles: dev) may not manage_segments in every environment: it may only in dev",
        ),
    ],
)
def test_what_every_environment_shares_needs_a_role_granted_everywhere(
    roles: tuple[str, ...], refused: str | None
) -> None:
    book = RoleBook(
        roles=(
            Role(name="dev", actions=tuple(Permission), environments=("dev",)),
            Role(name="approver", actions=tuple(Permission), environments=("*",)),
        )
    )
    keyring = Keyring(registry({"k": KeyRecord(public_key=A, roles=roles)}, book))
    assert shared_refusal(keyring, "k", Permission.MANAGE_SEGMENTS) == refused
    assert shared_refusal({"k": signing.load_public_key(A)}, "k", Permission.MANAGE_KEYS) is None


async def test_a_reload_that_removes_keys_tells_who_keeps_their_approvals() -> None:
    told: list[tuple[str, ...]] = []

    async def revoked(key_ids: tuple[str, ...]) -> None:
        told.append(key_ids)

    keyring = Keyring({"a": A, "b": B, "c": C})
    keyring.revoked = revoked
    texts: dict[str, str] = {"a": A}
    reloader = KeyReloader(keyring, lambda: texts, MemoryOutputs(), TopicSettings())
    assert await reloader.reload() == KeyChange(removed=("b", "c"))
    texts["d"] = B
    await reloader.reload()  # a key added, none removed: nothing to revoke
    assert told == [("b", "c")]
