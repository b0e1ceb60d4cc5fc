"""An operator key's record with its roles, read from today's form or the one to come.

Today ``engine.operator_keys`` maps a key id to its base64 public key (a
string). With roles, a key's record also names the roles it holds::

    operator_keys:
      ops-1: "MCowBQYDK2VwAyEA..."            # today's form: holds "operator"
      dev-1: {public_key: "...", roles: [dev]}
      ana:   {public_key: "...", roles: [approver, on-call]}
      ana-laptop: {public_key: "...", roles: [approver], holder: ana}

A key's ``holder`` names the person it belongs to: approvals count per
person, so two keys of one holder count once at a gate needing several
people. A key naming no holder is its own holder (its id names the person).
A record in today's form, or one naming no roles, holds the built-in
``operator`` role (:data:`~controller.core.release.roles.OPERATOR`): every
action everywhere, so reading the registry this way changes nothing until
someone assigns roles. The record is part of the signed key registry and
reloads with it (SIGHUP). Pure: no key is loaded here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, ValidationError

from controller.core.common import ConfigError
from controller.core.release.environments import Environments, Frozen
from controller.core.release.roles import OPERATOR, KeyRoles, RoleBook, role_problems
from controller.core.rollouts import HolderName, RoleName

MAX_KEY_ROLES = 8


class KeyRecord(Frozen):
    """A key's public key, the roles it holds, and the person who holds it."""

    public_key: Annotated[str, Field(min_length=1, max_length=256)]
    roles: Annotated[tuple[RoleName, ...], Field(max_length=MAX_KEY_ROLES)] = (OPERATOR.name,)
    holder: HolderName | None = None
    """The person the key belongs to; None: the key is its own holder."""

    def holder_of(self, key_id: str) -> str:
        """Who an approval signed with this key counts for."""
        return self.holder or key_id

    def holding(self, key_id: str, book: RoleBook) -> KeyRoles:
        """The key's roles as the book defines them (none named: ``operator``)."""
        return book.key(key_id, self.roles or (OPERATOR.name,))


def read_key_record(key_id: str, value: str | Mapping[str, Any]) -> KeyRecord:
    """The record of ``key_id``: a public key alone (today's form) or a mapping;
    :class:`ConfigError` names the key and the field."""
    if isinstance(value, str):
        return KeyRecord(public_key=value)
    try:
        return KeyRecord.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid operator_keys.{key_id}: {problems}") from exc


def unknown_roles(records: Mapping[str, KeyRecord], book: RoleBook) -> list[str]:
    """Each role a key names that the book does not define, by its field."""
    return [
        f"operator_keys.{key_id}.roles.{i}: unknown role {name!r}"
        for key_id, record in sorted(records.items())
        for i, name in enumerate(record.roles)
        if book.role(name) is None
    ]


def records_of(keys: Mapping[str, str | KeyRecord]) -> dict[str, KeyRecord]:
    """Every key's record, today's form (a public key alone) read as one holding ``operator``."""
    return {k: KeyRecord(public_key=v) if isinstance(v, str) else v for k, v in keys.items()}


def registry_problems(
    keys: Mapping[str, str | KeyRecord], book: RoleBook, environments: Environments
) -> list[str]:
    """What makes the registry unusable, each by its field: a role a key names that the
    book does not define, a role's environment that the controller does not serve."""
    return [*unknown_roles(records_of(keys), book), *role_problems(book, environments)]
