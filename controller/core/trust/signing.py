"""Signed operator commands: Ed25519 over a canonical form of the command.

The canonical form is the command's JSON object without ``sig``, keys sorted,
no whitespace, UTF-8 (RFC 8785 for the subset the contract allows: strings,
integers, booleans, null, and the plan's numbers). Operators hold private
keys; the controller holds only public keys, by key id. Verification is pure
computation: no clock, no store; freshness and replay are checked by the
engine.

Flag states are signed too, by the controller's own key, so that apps can
refuse states nobody but the controller could have published
(:class:`StateSigner`, :class:`StateVerifier`); and so are its decisions
(:func:`decision_bytes`), so that an audit trail shows each one as the controller
wrote it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import TypeVar

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from controller.core.wire import FlagState, JsonObject, SignedCommand, flagstates, sent_object

S = TypeVar("S", bound=SignedCommand)
"""A signed command's model: :class:`~controller.core.wire.Command` or another."""


def canonical_bytes(command: Mapping[str, object]) -> bytes:
    """The bytes that are signed: the command without ``sig``, keys sorted, compact."""
    body = {k: v for k, v in command.items() if k != "sig"}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sign(command: Mapping[str, object], private_key: Ed25519PrivateKey) -> str:
    """The base64 signature to put in the command's ``sig`` field."""
    return base64.b64encode(private_key.sign(canonical_bytes(command))).decode()


def sign_command(command: S, private_key: Ed25519PrivateKey) -> S:
    """``command`` with ``sig`` set: the signature of the object it is sent as
    (:func:`~controller.core.wire.sent_object`) without ``sig``, the object the
    controller verifies it over."""
    body = sent_object(command)
    body.pop("sig", None)
    return command.model_copy(update={"sig": sign(body, private_key)})


def verify(command: Mapping[str, object], public_key: Ed25519PublicKey) -> bool:
    """Whether ``command["sig"]`` is a valid signature of the rest of the command."""
    try:
        signature = base64.b64decode(str(command.get("sig", "")), validate=True)
        public_key.verify(signature, canonical_bytes(command))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def generate_key() -> tuple[Ed25519PrivateKey, str]:
    """A new private key and its public key as base64 (32 raw bytes)."""
    key = Ed25519PrivateKey.generate()
    return key, public_key_text(key.public_key())


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes_raw()).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key from base64 of its 32 raw bytes; ValueError if it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as exc:
        raise ValueError("public key is not base64") from exc
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, this has {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_text(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.private_bytes_raw()).decode()


def load_private_key(text: str) -> Ed25519PrivateKey:
    """A private key from base64 of its 32 raw bytes."""
    raw = base64.b64decode(text.strip(), validate=True)
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 private key has 32 bytes, this has {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


# -- flag states ------------------------------------------------------------------------


class StateSigner:
    """Signs flag states with the controller's key (:mod:`flagstates` says what is signed).

    Ed25519 signatures are deterministic, so the last signatures are kept by
    the bytes they cover: ``/flags`` answers every poll without signing
    unchanged states again.
    """

    CACHED = 4096

    def __init__(self, key: Ed25519PrivateKey, key_id: str) -> None:
        self.key_id = key_id
        self.public_key = public_key_text(key.public_key())
        self._key = key
        self._cache: dict[bytes, str] = {}

    def sign(self, state: JsonObject) -> JsonObject:
        """``state`` (a flag state's fields) with ``key_id`` and ``sig`` set."""
        data = flagstates.signed_bytes(state, self.key_id)
        sig = self._cache.get(data)
        if sig is None:
            if len(self._cache) >= self.CACHED:
                self._cache.clear()
            sig = base64.b64encode(self._key.sign(data)).decode()
            self._cache[data] = sig
        return {**state, "key_id": self.key_id, "sig": sig}

    def sign_bytes(self, data: bytes) -> str:
        """The base64 signature of ``data`` (a segment record's signed form)."""
        return base64.b64encode(self._key.sign(data)).decode()

    def sign_decision(self, decision: JsonObject) -> JsonObject:
        """``decision`` (a decision's fields) with ``key_id`` and ``sig`` set."""
        sig = self.sign_bytes(decision_bytes(decision, self.key_id))
        return {**decision, "key_id": self.key_id, "sig": sig}


DECISION_FORM = "rollout-controller/decision/v1"
"""The first element of a decision's signed form: a later form is told from this one."""


def decision_bytes(decision: Mapping[str, object], key_id: str) -> bytes:
    """The bytes the controller signs for a decision with ``key_id``: ``[DECISION_FORM,
    key_id, the decision without key_id and sig]``, keys sorted, compact (orjson writes
    each number as the shortest text that reads back the same, so a reader that parses
    the published JSON and writes it again gets these bytes)."""
    body = {k: v for k, v in decision.items() if k not in ("key_id", "sig")}
    return orjson.dumps([DECISION_FORM, key_id, body], option=orjson.OPT_SORT_KEYS)


class StateVerifier:
    """Checks flag states' signatures against the controller's public keys, by key id."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        if not keys:
            raise ValueError("verifying flag states needs at least one public key")
        self._keys = {key_id: load_public_key(text) for key_id, text in keys.items()}

    def problem(self, state: FlagState) -> str | None:
        """Why ``state`` is not signed by one of the keys, or None when it is."""
        try:
            data = flagstates.state_bytes(state)
        except (ValueError, orjson.JSONEncodeError):
            return "bad_signature"
        return self.signed_problem(state.key_id, state.sig, data or b"")

    def signed_problem(self, key_id: str | None, sig: str | None, data: bytes) -> str | None:
        """Why ``sig`` is not a signature of ``data`` by key ``key_id``, or None when it is."""
        if key_id is None or sig is None:
            return "unsigned"
        key = self._keys.get(key_id)
        if key is None:
            return "unknown_key"
        try:
            key.verify(base64.b64decode(sig, validate=True), data)
        except (InvalidSignature, binascii.Error, ValueError):
            return "bad_signature"
        return None

    def decision_problem(self, decision: Mapping[str, object]) -> str | None:
        """Why ``decision`` (as published) is not signed by one of the keys, or None."""
        key_id, sig = decision.get("key_id"), decision.get("sig")
        if not isinstance(key_id, str) or not isinstance(sig, str):
            return "unsigned"
        try:
            data = decision_bytes(decision, key_id)
        except (TypeError, orjson.JSONEncodeError):
            return "bad_signature"
        return self.signed_problem(key_id, sig, data)
