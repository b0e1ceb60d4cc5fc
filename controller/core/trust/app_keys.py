"""App keys: the per-app API keys of evaluation and the event intake, and who may use them.

A key is made and revoked by a signed operator command on the commands topic,
:class:`AppKeyCommand` (``type: "app_key"``), verified like every command. The
secret is drawn by ``rolloutctl`` on the operator's machine and the command
carries only its SHA-256 (:func:`digest`): the secret never crosses the topic,
the decisions or Redis. A fast hash suffices because the secret is 32 random
bytes, which no attacker can guess whatever the hash; a slow password hash
would only make every request (and every bad key of a flood) cost CPU.

:func:`decide` turns a command into the new record of a key, or a refusal;
:func:`access` says whether an HTTP request may use a route (the key, its
scope, the browser origin); :func:`preflight` answers a CORS preflight. All
pure: the caller loads the book of keys, draws nothing, and does the I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from controller.core.common import (
    Actor,
    AppliedDigest,
    EnvironmentName,
    MessageId,
    Timestamp,
    as_datetime,
)
from controller.core.trust import signing
from controller.core.wire import AppKeyEvidence, JsonObject, SignedCommand

APP_KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
APP_KEY_ID_PATTERN = r"^[0-9a-f]{16}$"
SERVER_PREFIX = "rc_app_"
"""How a server key's secret begins, so secret scanners and people recognise it."""
CLIENT_PREFIX = "rc_client_"
"""How a client (browser) key's secret begins."""
MAX_SECRET_CHARS = 128
"""The longest credential hashed; a longer one is refused unread."""


class Scope(StrEnum):
    """What a key may do: evaluate flags (OFREP), send events (``POST /v1/events``), read
    rollouts' verdicts (``GET /rollouts/{flag}/verdict``, a deploy gate's key: it reads that
    and nothing else, so it may sit in a deploy tool's secrets)."""

    EVALUATE = "evaluate"
    EVENTS = "events"
    VERDICTS = "verdicts"


CLIENT_SCOPES = frozenset({Scope.EVALUATE, Scope.EVENTS})
"""A client key's scopes: evaluate and events, and nothing else."""

AppKeyName = Annotated[str, StringConstraints(pattern=APP_KEY_NAME_PATTERN)]
AppKeyId = Annotated[str, StringConstraints(pattern=APP_KEY_ID_PATTERN)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class AppKeyCommand(SignedCommand):
    """An operator command that makes or revokes an app key, signed like every command."""

    type: Literal["app_key"]
    id: MessageId = Field(description="Unique id of this command, used for deduplication.")
    ts: Timestamp = Field(description="When it was issued: epoch ms, or RFC 3339.")
    action: Literal["create", "revoke"]
    target: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="`create`: the new key's name; `revoke`: the key's id or name."
    )
    app_key: AppKeyId | None = Field(
        default=None, description="`create`: the new key's id (16 hex digits), public."
    )
    scopes: list[Scope] = Field(
        default_factory=list, max_length=len(Scope), description="`create`: what the key may do."
    )
    client: bool = Field(
        default=False,
        description="`create`: a client (browser) key: evaluate and events, and usable "
        "from the origins in `http.cors_origins`.",
    )
    environment: EnvironmentName | None = Field(
        default=None,
        description="`create`: the one environment the key serves (OFREP answers from it, "
        "events must be its flags'); none: every environment.",
    )
    secret_sha256: Sha256Hex | None = Field(
        default=None,
        description="`create`: SHA-256 of the secret, lower-case hex; the secret itself "
        "never travels.",
    )
    applied: AppliedDigest | None = Field(default=None, description="`rolloutctl apply`'s digest.")
    sig: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Base64 Ed25519 signature over the canonical command without `sig`.",
    )

    actor_follows: ClassVar[str] = "applied"
    type_leads: ClassVar[bool] = True


class AppKey(BaseModel):
    """A key as stored: never its secret, only the secret's SHA-256."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: AppKeyId
    name: AppKeyName
    scopes: frozenset[Scope]
    client: bool = False
    environment: EnvironmentName | None = None
    """The one environment the key serves; None: every one."""
    secret_sha256: Sha256Hex
    created_ms: int
    created_by: Actor
    revoked_ms: int | None = None
    revoked_by: Actor | None = None
    applied: AppliedDigest | None = None  # the desired key's digest; None: made by hand

    @property
    def live(self) -> bool:
        return self.revoked_ms is None

    def shown(self) -> dict[str, object]:
        """What a person may see of the key: all but its hash (apply's digest where it has one)."""
        hidden = {"secret_sha256"} | ({"applied"} if self.applied is None else set())
        return self.model_dump(mode="json", exclude=hidden) | {
            "scopes": sorted(s.value for s in self.scopes)
        }


def digest(secret: str) -> str:
    """The SHA-256 of a secret, lower-case hex: what is sent, stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def refusal(
    command: AppKeyCommand,
    raw: JsonObject,
    *,
    keys: Mapping[str, Ed25519PublicKey],
    now: datetime,
    max_age_seconds: float,
) -> str | None:
    """Why the command may not run (signature, operator key, freshness), or None: the
    checks of every operator command (:func:`controller.core.machine.commands.refusal`)."""
    if command.sig is None or command.key_id is None:
        return "unsigned command"
    key = keys.get(command.key_id)
    if key is None:
        return f"unknown key id {command.key_id!r}"
    if not signing.verify(raw, key):
        return "bad signature"
    age = abs((now - as_datetime(command.ts)).total_seconds())
    if age > max_age_seconds:
        return f"stale command: {age:.0f}s from now, limit {max_age_seconds:.0f}s"
    return None


def decide(book: Mapping[str, AppKey], command: AppKeyCommand, *, now_ms: int) -> AppKey | str:
    """The key ``command`` makes or revokes, as it must now be stored; or why it may not."""
    if command.action == "create":
        return _created(book, command, now_ms)
    found = _target(book, command.target)
    if found is None:
        return f"no app key named or numbered {command.target!r}"
    if not found.live:
        return f"app key {found.name} ({found.id}) is already revoked"
    return found.model_copy(update={"revoked_ms": now_ms, "revoked_by": command.actor})


def _created(book: Mapping[str, AppKey], command: AppKeyCommand, now_ms: int) -> AppKey | str:
    if command.app_key is None or command.secret_sha256 is None:
        return "create needs app_key and secret_sha256"
    scopes = CLIENT_SCOPES if command.client else frozenset(command.scopes)
    name, hashed = command.target, command.secret_sha256
    refusals = (
        (not scopes, "a key needs at least one scope: evaluate, events, verdicts"),
        (not _named(name), f"invalid key name {name!r}: letters, digits and . _ -, up to 64"),
        (command.app_key in book, f"an app key with id {command.app_key} exists"),
        (
            any(k.live and k.name == name for k in book.values()),
            f"a live app key is named {name!r}: revoke it or choose another name",
        ),
        (
            any(k.secret_sha256 == hashed for k in book.values()),
            "this secret was used before: draw a new one",
        ),
    )
    if refused := next((reason for wrong, reason in refusals if wrong), None):
        return refused
    return AppKey(
        id=command.app_key,
        name=name,
        scopes=scopes,
        client=command.client,
        environment=command.environment,
        secret_sha256=hashed,
        created_ms=now_ms,
        created_by=command.actor,
        applied=command.applied,
    )


def _named(name: str) -> bool:
    return re.fullmatch(APP_KEY_NAME_PATTERN, name) is not None


def _target(book: Mapping[str, AppKey], target: str) -> AppKey | None:
    if target in book:
        return book[target]
    named = [k for k in book.values() if k.name == target]
    live = [k for k in named if k.live]
    return next(iter(live or named), None)


# -- who may use a route --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """How the routes for apps are guarded: whether a key is required, which origins."""

    require_keys: bool
    origins: frozenset[str]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that may go on: its key (None where none was sent and none is required)."""

    key: AppKey | None


@dataclass(frozen=True, slots=True)
class Refused:
    """A request refused before its body is read: the status, a counted outcome, the reason."""

    status: int
    outcome: str
    reason: str


def bearer(header: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer`` header; None without one."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def access(
    *,
    credentials: str | None,
    scheme_given: bool,
    origin: str | None,
    scope: Scope,
    keys: Mapping[str, AppKey],
    policy: Policy,
) -> Admitted | Refused:
    """Whether a request with these ``credentials`` (a bearer token; ``scheme_given``: an
    ``Authorization`` header of another scheme was sent), from ``origin`` (its ``Origin``
    header), may use a route of ``scope``. ``keys``: the book, by the secret's SHA-256.
    """
    if origin is not None and origin not in policy.origins:
        return unlisted(origin)
    if credentials is None:
        if scheme_given:
            return Refused(401, "no_key", "send the app key as Authorization: Bearer <key>")
        if policy.require_keys:
            return Refused(401, "no_key", "an app key is required: Authorization: Bearer <key>")
        return Admitted(None)
    key = keys.get(digest(credentials)) if len(credentials) <= MAX_SECRET_CHARS else None
    if key is None:
        return Refused(401, "unknown_key", "unknown app key")
    refused = key_refusal(key, scope, browser=origin is not None)
    return Admitted(key) if refused is None else refused


def key_refusal(key: AppKey, scope: Scope, *, browser: bool) -> Refused | None:
    if not key.live:
        return Refused(401, "revoked_key", f"app key {key.name} ({key.id}) was revoked")
    if scope not in key.scopes:
        return Refused(403, "wrong_scope", f"app key {key.name} may not {_verb(scope)}")
    if browser and not key.client:
        reason = f"app key {key.name} is a server key: from a browser use a client key (--client)"
        return Refused(403, "server_key_in_browser", reason)
    return None


def unlisted(origin: str) -> Refused:
    reason = f"origin {origin[:200]!r} is not allowed: list it in http.cors_origins"
    return Refused(403, "origin", reason)


_VERBS = {
    Scope.EVALUATE: "evaluate flags",
    Scope.EVENTS: "send events",
    Scope.VERDICTS: "read rollouts' verdicts",
}


def _verb(scope: Scope) -> str:
    return _VERBS[scope]


def preflight(origin: str | None, policy: Policy) -> Refused | None:
    """A CORS preflight's refusal, or None when its origin is allowed."""
    if origin is None:
        return Refused(400, "not_preflight", "a preflight needs an Origin header")
    return None if origin in policy.origins else unlisted(origin)


def by_digest(keys: Collection[AppKey]) -> dict[str, AppKey]:
    """The book as requests look it up: by the secret's SHA-256."""
    return {key.secret_sha256: key for key in keys}


# -- the audit ------------------------------------------------------------------------

AUDIT_FLAG_PREFIX = "app-key:"
"""Decisions on app keys carry ``app-key:<name>`` where a flag's decision carries the flag."""


def audit(
    command: AppKeyCommand, result: AppKey | str, *, now_ms: int, refused: str | None = None
) -> JsonObject:
    """The decision that records ``command``'s outcome on the decisions topic (kind
    ``app_key``): applied with the key's record (never its hash), or rejected with the
    reason (``refused``, or ``result`` when :func:`decide` refused). Its id follows from
    the command's, so a decision published again is deduplicated by its consumers.
    """
    reason = refused if refused is not None else result if isinstance(result, str) else ""
    key = result if isinstance(result, AppKey) and refused is None else None
    name = key.name if key is not None else command.target
    flag = AUDIT_FLAG_PREFIX + (name if _named(name) else "invalid")
    evidence = AppKeyEvidence(actor=command.actor, reason=command.reason)
    if key is not None:
        evidence = evidence.merged(app_key=key.shown())
    return {
        "type": "decision",
        "v": 1,
        "id": hashlib.sha256(f"app-key-decision:{command.id}".encode()).hexdigest()[:32],
        "ts": now_ms,
        "flag": flag,
        "kind": "app_key",
        "action": f"app-key {command.action}",
        "outcome": "rejected" if key is None else "applied",
        "reason": reason[:500],
        "command_id": command.id,
        "evidence": evidence.wire(),
    }


def parsed(value: bytes) -> tuple[AppKeyCommand, JsonObject] | None:
    """The app-key command in a record of the commands topic, with its raw JSON (what its
    signature covers); None for a record of another type. Raises ``ValidationError``
    or ``orjson.JSONDecodeError`` for an app-key command that breaks the contract."""
    raw = orjson.loads(value)
    if not isinstance(raw, dict) or raw.get("type") != "app_key":
        return None
    return AppKeyCommand.model_validate(raw), raw


# -- where a key may act -------------------------------------------------------------------


def request_environment(key: AppKey | None, named: str | None) -> str | None:
    """The environment a request acts in: the one its path names, else its key's (a key
    bound to one environment serves it by default), else None (the controller's default)."""
    if named is not None:
        return named
    return None if key is None else key.environment


def bound_refusal(key: AppKey | None, environment: str) -> Refused | None:
    """Why ``key`` may not act in ``environment`` (it is bound to another one), or None."""
    if key is None or key.environment is None or key.environment == environment:
        return None
    reason = (
        f"app key {key.name} ({key.id}) serves the {key.environment} environment only,"
        f" not {environment}"
    )
    return Refused(403, "wrong_environment", reason)
