"""Roles per operator key: who may start, promote, approve, pause, kill, or manage what, where.

A :class:`Role` grants actions in environments (names, or ``*`` for all). A
key holds roles by name; the :class:`RoleBook` (the configured roles) turns
those names into a :class:`KeyRoles`, and :func:`may` says whether the key
may take an action in an environment: :class:`Allowed` with the role that
allowed it, or :class:`Refused` with the reason (a rejected decision, as a
refused command is today).

Two rules keep today's behaviour and the on-call promise:

* The built-in role :data:`OPERATOR` grants every action everywhere, and a
  key whose record names no roles holds it (:mod:`.key_records`): until
  roles are assigned, any key may do anything, as now.
* A key holding a role marked ``on_call`` may kill in every environment,
  whatever the role's environments, while the book's
  ``on_call_kills_anywhere`` is on (the default).

Pure; the book is checked against the environments by :func:`role_problems`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from controller.core.release.environments import EnvironmentName, Environments, Frozen
from controller.core.release.verdicts import Allowed, Refused, Verdict
from controller.core.rollouts import RoleName
from controller.core.wire import CommandAction

MAX_ROLES = 32
EVERYWHERE = "*"


class Permission(StrEnum):
    """What a role may allow. Each operator command maps to one (:func:`action_of`)."""

    START = "start"
    PROMOTE = "promote"
    APPROVE = "approve"
    PAUSE = "pause"
    KILL = "kill"
    MANAGE_SEGMENTS = "manage_segments"
    MANAGE_KEYS = "manage_keys"
    MANAGE_INGEST = "manage_ingest"
    """Choose how held events partitions resume (``ingest`` commands)."""


_OF_COMMAND = {
    CommandAction.START: Permission.START,
    CommandAction.PROMOTE: Permission.PROMOTE,
    CommandAction.APPROVE: Permission.APPROVE,
    CommandAction.PAUSE: Permission.PAUSE,
    CommandAction.RESUME: Permission.PAUSE,
    CommandAction.ROLLBACK: Permission.KILL,
    CommandAction.ABORT: Permission.KILL,
    CommandAction.KILL: Permission.KILL,
}


def action_of(command: CommandAction) -> Permission:
    """The action a rollout command needs: resume goes with pause; rollback, abort and
    kill (every way of stopping a rollout) with kill."""
    return _OF_COMMAND[command]


class Role(Frozen):
    """Actions granted in environments (``*``: all of them, those added later too)."""

    name: RoleName
    actions: Annotated[tuple[Permission, ...], Field(min_length=1, max_length=len(Permission))]
    environments: Annotated[
        tuple[EnvironmentName | Literal["*"], ...], Field(min_length=1, max_length=16)
    ]
    on_call: bool = Field(
        default=False, description="Its keys may kill anywhere (see on_call_kills_anywhere)."
    )

    def grants(self, action: Permission, environment: str) -> bool:
        where = EVERYWHERE in self.environments or environment in self.environments
        return where and action in self.actions


OPERATOR = Role(name="operator", actions=tuple(Permission), environments=(EVERYWHERE,))
"""Built in: every action everywhere, as any operator key may today."""


@dataclass(frozen=True, slots=True)
class KeyRoles:
    """One key's roles, resolved by the book, and whether it may kill anywhere."""

    key_id: str
    roles: tuple[Role, ...]
    kills_anywhere: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles)


class RoleBook(Frozen):
    """The configured roles, and the on-call rule."""

    roles: Annotated[tuple[Role, ...], Field(max_length=MAX_ROLES)] = ()
    on_call_kills_anywhere: bool = Field(
        default=True, description="A key holding an on-call role may kill in every environment."
    )

    @model_validator(mode="after")
    def _names_once(self) -> Self:
        seen = {OPERATOR.name}
        for i, role in enumerate(self.roles):
            if role.name in seen:
                taken = "is built in" if role.name == OPERATOR.name else "is named twice"
                raise ValueError(f"roles.{i}.name: {role.name!r} {taken}")
            seen.add(role.name)
        return self

    def role(self, name: str) -> Role | None:
        if name == OPERATOR.name:
            return OPERATOR
        return next((role for role in self.roles if role.name == name), None)

    def key(self, key_id: str, names: Iterable[str]) -> KeyRoles:
        """The key's roles by name; a name the book does not have grants nothing."""
        found = tuple(role for name in names if (role := self.role(name)) is not None)
        anywhere = self.on_call_kills_anywhere and any(role.on_call for role in found)
        return KeyRoles(key_id, found, kills_anywhere=anywhere)


def may(key_roles: KeyRoles, action: Permission, environment: str) -> Verdict:
    """Whether the key may take ``action`` in ``environment``, and which role says so."""
    for role in key_roles.roles:
        if role.grants(action, environment):
            return Allowed(f"role {role.name} allows {action.value} in {environment}")
    if action is Permission.KILL and key_roles.kills_anywhere:
        return Allowed("an on-call key may kill in every environment")
    return Refused(_refusal(key_roles, action, environment))


def _refusal(key_roles: KeyRoles, action: Permission, environment: str) -> str:
    who = f"key {key_roles.key_id}"
    if not key_roles.roles:
        return f"{who} holds no role, so it may not {action.value} in {environment}"
    where = sorted({e for r in key_roles.roles if action in r.actions for e in r.environments})
    scope = f"only in {', '.join(where)}" if where else "nowhere"
    roles = ", ".join(key_roles.names)
    return f"{who} (roles: {roles}) may not {action.value} in {environment}: it may {scope}"


def holds(key_roles: KeyRoles, role: str, environment: str) -> Verdict:
    """Whether the key holds ``role`` and that role allows approving in ``environment``
    (an approval counts for the role it was given under: :mod:`.approvals`)."""
    held = next((r for r in key_roles.roles if r.name == role), None)
    if held is None:
        roles = ", ".join(key_roles.names) or "none"
        return Refused(f"key {key_roles.key_id} does not hold role {role} (it holds {roles})")
    if not held.grants(Permission.APPROVE, environment):
        return Refused(f"role {role} of key {key_roles.key_id} may not approve in {environment}")
    return Allowed(f"key {key_roles.key_id} holds role {role}, which approves in {environment}")


def role_problems(book: RoleBook, environments: Environments) -> list[str]:
    """Each role's environment that the controller does not serve, named by its field."""
    problems = []
    for i, role in enumerate(book.roles):
        for j, name in enumerate(role.environments):
            why = None if name == EVERYWHERE else environments.unknown(name)
            if why is not None:
                problems.append(f"roles.{i}.environments.{j}: {why}")
    return problems
