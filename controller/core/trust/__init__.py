"""What is signed and who may send: Ed25519 signatures on commands and flag states, and app keys.

And the audit export's chain and seal.
"""

from controller.core.trust import app_keys, audit_chain, audit_check, signing, stream_tokens
from controller.core.trust.app_keys import (
    CLIENT_PREFIX,
    SERVER_PREFIX,
    Admitted,
    AppKey,
    AppKeyCommand,
    AppKeyId,
    AppKeyName,
    Policy,
    Refused,
    Scope,
    access,
    bearer,
    bound_refusal,
    digest,
    preflight,
    request_environment,
)
from controller.core.trust.signing import StateSigner, StateVerifier
from controller.core.trust.stream_tokens import stream_token, token_access, token_key

__all__ = [
    "CLIENT_PREFIX",
    "SERVER_PREFIX",
    "Admitted",
    "AppKey",
    "AppKeyCommand",
    "AppKeyId",
    "AppKeyName",
    "Policy",
    "Refused",
    "Scope",
    "StateSigner",
    "StateVerifier",
    "access",
    "app_keys",
    "audit_chain",
    "audit_check",
    "bearer",
    "bound_refusal",
    "digest",
    "preflight",
    "request_environment",
    "signing",
    "stream_token",
    "stream_tokens",
    "token_access",
    "token_key",
]
