"""Signed operator commands: Ed25519 over a canonical form of the command.

The canonical form is the command's JSON object without ``sig``, keys sorted,
no whitespace, UTF-8 (RFC 8785 for the subset the contract allows: strings,
integers, booleans, null, and the plan's numbers). Operators hold private
keys; the controller holds only public keys, by key id. Verification is pure
computation: no clock, no store; freshness and replay are checked by the
engine.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def canonical_bytes(command: dict[str, Any]) -> bytes:
    """The bytes that are signed: the command without ``sig``, keys sorted, compact."""
    body = {k: v for k, v in command.items() if k != "sig"}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sign(command: dict[str, Any], private_key: Ed25519PrivateKey) -> str:
    """The base64 signature to put in the command's ``sig`` field."""
    return base64.b64encode(private_key.sign(canonical_bytes(command))).decode()


def verify(command: dict[str, Any], public_key: Ed25519PublicKey) -> bool:
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
