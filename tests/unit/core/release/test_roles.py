"""Roles per key: who may do what where; on-call kills anywhere; today's keys keep every right."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.core.common.errors import ConfigError
from controller.core.release.environments import Environments
from controller.core.release.key_records import KeyRecord, read_key_record, unknown_roles
from controller.core.release.roles import (
    OPERATOR,
    Permission,
    Role,
    RoleBook,
    action_of,
    holds,
    may,
    role_problems,
)
from controller.core.release.verdicts import Allowed, Refused
from controller.core.wire.messages import CommandAction

BOOK = RoleBook(
    roles=(
        Role(name="dev", actions=tuple(Permission), environments=("dev",)),
        Role(
            name="releaser",
            actions=(Permission.START, Permission.PROMOTE, Permission.PAUSE),
            environments=("dev", "staging"),
        ),
        Role(
            name="approver", actions=(Permission.APPROVE,), environments=("staging", "production")
        ),
        Role(name="on-call", actions=(Permission.PAUSE,), environments=("dev",), on_call=True),
        Role(name="observer", actions=(Permission.PAUSE,), environments=("*",)),
    )
)
NO_ON_CALL_RULE = BOOK.model_copy(update={"on_call_kills_anywhere": False})

PERMISSIONS: dict[str, tuple[RoleBook, tuple[str, ...], Permission, str, bool]] = {
    # case: (book, the key's roles, action, environment, allowed)
    "a dev key promotes in dev": (BOOK, ("dev",), Permission.PROMOTE, "dev", True),
    "a dev key cannot promote production": (
        BOOK, ("dev",), Permission.PROMOTE, "production", False,
    ),
    "a dev key cannot kill production": (BOOK, ("dev",), Permission.KILL, "production", False),
    "a releaser starts staging": (BOOK, ("releaser",), Permission.START, "staging", True),
    "a releaser cannot start production": (
        BOOK, ("releaser",), Permission.START, "production", False,
    ),
    "a releaser cannot approve": (BOOK, ("releaser",), Permission.APPROVE, "staging", False),
    "two roles: the second allows": (
        BOOK, ("releaser", "approver"), Permission.APPROVE, "production", True,
    ),
    "on-call kills production": (BOOK, ("on-call",), Permission.KILL, "production", True),
    "on-call kills an environment added later": (BOOK, ("on-call",), Permission.KILL, "eu", True),
    "on-call may not promote production": (
        BOOK, ("on-call",), Permission.PROMOTE, "production", False,
    ),
    "on-call may not kill with the rule off": (
        NO_ON_CALL_RULE, ("on-call",), Permission.KILL, "production", False,
    ),
    "on-call kills where its role allows, rule off or not": (
        NO_ON_CALL_RULE, ("dev", "on-call"), Permission.KILL, "dev", True,
    ),
    "a wildcard role pauses anywhere": (BOOK, ("observer",), Permission.PAUSE, "production", True),
    "a wildcard role grants only its actions": (
        BOOK, ("observer",), Permission.KILL, "production", False,
    ),
    "operator (today's keys) promotes production": (
        BOOK, ("operator",), Permission.PROMOTE, "production", True,
    ),
    "operator manages keys": (BOOK, ("operator",), Permission.MANAGE_KEYS, "production", True),
    "no roles, no rights": (BOOK, (), Permission.PAUSE, "dev", False),
    "a role the book lacks grants nothing": (BOOK, ("admin",), Permission.PAUSE, "dev", False),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(PERMISSIONS))
def test_may(case: str) -> None:
    book, roles, action, environment, allowed = PERMISSIONS[case]
    verdict = may(book.key("k1", roles), action, environment)
    assert isinstance(verdict, Allowed if allowed else Refused)
    assert bool(verdict) is allowed


def test_a_refusal_says_which_key_may_not_do_what_where_and_where_it_may() -> None:
    verdict = may(BOOK.key("dev-1", ("dev",)), Permission.PROMOTE, "production")
    assert verdict == Refused(
        "key dev-1 (roles: dev) may not promote in production: it may only in dev"
    )
    nothing = may(BOOK.key("k2", ()), Permission.KILL, "dev")
    assert nothing == Refused("key k2 holds no role, so it may not kill in dev")


def test_an_allowance_names_the_role_or_the_on_call_rule() -> None:
    assert may(BOOK.key("k", ("dev",)), Permission.KILL, "dev") == Allowed(
        "role dev allows kill in dev"
    )
    assert may(BOOK.key("k", ("on-call",)), Permission.KILL, "production") == Allowed(
        "an on-call key may kill in every environment"
    )


HOLDS: dict[str, tuple[tuple[str, ...], str, str, str | None]] = {
    # case: (the key's roles, the role approved under, environment, the refusal or None)
    "an approver approves production": (("approver",), "approver", "production", None),
    "an approver's role is not for dev": (
        ("approver",), "approver", "dev", "role approver of key k1 may not approve in dev",
    ),
    "a dev key does not hold approver": (
        ("dev",), "approver", "production", "key k1 does not hold role approver (it holds dev)",
    ),
    "operator holds only operator": (
        ("operator",), "approver", "production",
        "key k1 does not hold role approver (it holds operator)",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOLDS))
def test_holds(case: str) -> None:
    roles, role, environment, refusal = HOLDS[case]
    verdict = holds(BOOK.key("k1", roles), role, environment)
    assert verdict == Refused(refusal) if refusal is not None else isinstance(verdict, Allowed)


COMMANDS = {
    CommandAction.START: Permission.START,
    CommandAction.PROMOTE: Permission.PROMOTE,
    CommandAction.APPROVE: Permission.APPROVE,
    CommandAction.PAUSE: Permission.PAUSE,
    CommandAction.RESUME: Permission.PAUSE,
    CommandAction.ROLLBACK: Permission.KILL,
    CommandAction.ABORT: Permission.KILL,
    CommandAction.KILL: Permission.KILL,
}


def test_every_command_maps_to_a_permission() -> None:
    assert set(COMMANDS) == set(CommandAction)
    assert {command: action_of(command) for command in CommandAction} == COMMANDS


BAD_BOOKS: dict[str, tuple[dict[str, Any], str]] = {
    # case: (book, the field the refusal names)
    "operator is built in": (
        {"roles": [{"name": "operator", "actions": ["kill"], "environments": ["*"]}]},
        "roles.0.name",
    ),
    "a role twice": (
        {
            "roles": [
                {"name": "dev", "actions": ["kill"], "environments": ["dev"]},
                {"name": "dev", "actions": ["pause"], "environments": ["dev"]},
            ]
        },
        "roles.1.name",
    ),
    "an unknown action": (
        {"roles": [{"name": "dev", "actions": ["deploy"], "environments": ["dev"]}]},
        "roles.0.actions.0",
    ),
    "no actions": (
        {"roles": [{"name": "dev", "actions": [], "environments": ["dev"]}]},
        "roles.0.actions",
    ),
    "no environments": (
        {"roles": [{"name": "dev", "actions": ["kill"], "environments": []}]},
        "roles.0.environments",
    ),
    "a bad role name": (
        {"roles": [{"name": "Dev Team", "actions": ["kill"], "environments": ["dev"]}]},
        "roles.0.name",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BOOKS))
def test_refused_role_books(case: str) -> None:
    data, field = BAD_BOOKS[case]
    with pytest.raises(ValidationError) as caught:
        RoleBook.model_validate(data)
    assert field in str(caught.value)


def test_a_role_in_an_environment_not_served_is_named() -> None:
    environments = Environments(names=("dev", "production"), default="production")
    assert role_problems(BOOK, environments) == [
        "roles.1.environments.1: unknown environment 'staging'"
        " (this controller serves dev, production)",
        "roles.2.environments.0: unknown environment 'staging'"
        " (this controller serves dev, production)",
    ]


RECORDS: dict[str, tuple[str | dict[str, Any], tuple[str, ...]]] = {
    # case: (the registry's value for a key, the roles it holds)
    "today's form: a public key": ("MCowBQYDK2VwAyEA", ("operator",)),
    "a record without roles": ({"public_key": "MCow"}, ("operator",)),
    "a record with roles": (
        {"public_key": "MCow", "roles": ["dev", "on-call"]},
        ("dev", "on-call"),
    ),
}


@pytest.mark.parametrize("case", sorted(RECORDS))
def test_key_records(case: str) -> None:
    value, roles = RECORDS[case]
    assert read_key_record("k1", value).roles == roles


def test_a_key_of_today_may_still_do_anything_anywhere() -> None:
    key = read_key_record("ops-1", "MCowBQYDK2VwAyEA").holding("ops-1", BOOK)
    assert key.roles == (OPERATOR,)
    for action in Permission:
        assert may(key, action, "production")


def test_a_record_that_names_no_roles_holds_operator() -> None:
    key = KeyRecord(public_key="MCow", roles=()).holding("k", BOOK)
    assert key.names == ("operator",)


def test_a_bad_record_names_the_key_and_the_field() -> None:
    with pytest.raises(ConfigError, match=r"operator_keys\.ana: roles\.0: String should match"):
        read_key_record("ana", {"public_key": "MCow", "roles": ["Admins!"]})
    with pytest.raises(ConfigError, match=r"operator_keys\.ana: public_key: Field required"):
        read_key_record("ana", {"roles": ["dev"]})


def test_a_role_no_book_defines_is_named() -> None:
    records = {
        "b": KeyRecord(public_key="x", roles=("dev", "admin")),
        "a": KeyRecord(public_key="x"),
    }
    assert unknown_roles(records, BOOK) == ["operator_keys.b.roles.1: unknown role 'admin'"]
