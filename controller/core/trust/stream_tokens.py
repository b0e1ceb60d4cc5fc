"""Stream tokens: how a browser's ``EventSource`` is admitted to OFREP's event stream.

A browser's ``EventSource`` cannot send an ``Authorization`` header, so the
bulk evaluation that announces the stream puts a token in the stream's URL:
``<key id>.<mac>``, the MAC an HMAC-SHA256 keyed with the stored SHA-256 of
the app key's secret over the key's id and the environment. Any replica that
holds the book of keys can check it, nothing new is stored, a token names
one environment only, and revoking the key revokes its tokens. The secret
itself never appears in a URL, where proxies and browsers' histories could
log it. A token only opens the stream, which says no more than *something
changed* and an opaque tag; evaluations still want the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from controller.core.trust.app_keys import (
    Admitted,
    AppKey,
    Policy,
    Refused,
    Scope,
    key_refusal,
    unlisted,
)

MAC_CHARS = 32
"""Hex digits of the MAC kept in a token (128 bits)."""
TOKEN = re.compile(r"^([0-9a-f]{16})\.([0-9a-f]{32})$")


def stream_token(key: AppKey, environment: str) -> str:
    """The token that opens ``environment``'s event stream for ``key``."""
    return f"{key.id}.{_mac(key, environment)}"


def token_key(token: str, keys: Mapping[str, AppKey]) -> AppKey | None:
    """The key a well-formed token names (``keys`` by the secret's SHA-256), unchecked."""
    found = TOKEN.fullmatch(token[:64])
    if found is None:
        return None
    return next((key for key in keys.values() if key.id == found.group(1)), None)


def token_access(
    token: str,
    environment: str,
    key: AppKey | None,
    *,
    origin: str | None,
    policy: Policy,
) -> Admitted | Refused:
    """Whether ``token`` (naming ``key``, as :func:`token_key` found it) opens
    ``environment``'s event stream for a request from ``origin``."""
    if origin is not None and origin not in policy.origins:
        return unlisted(origin)
    found = TOKEN.fullmatch(token[:64])
    if key is None or found is None:
        return Refused(401, "unknown_key", "unknown stream token")
    if not hmac.compare_digest(found.group(2), _mac(key, environment)):
        return Refused(401, "unknown_key", f"the stream token is not {environment}'s")
    refused = key_refusal(key, Scope.EVALUATE, browser=origin is not None)
    return Admitted(key) if refused is None else refused


def _mac(key: AppKey, environment: str) -> str:
    message = f"ofrep-stream\x00{key.id}\x00{environment}".encode()
    mac = hmac.new(bytes.fromhex(key.secret_sha256), message, hashlib.sha256)
    return mac.hexdigest()[:MAC_CHARS]
