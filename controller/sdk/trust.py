"""Verifying flag states: apps hold only states the controller signed.

Given the controller's public keys (key id -> base64 Ed25519 public key, as
the controller logs it at start as ``flag_states_signed``), a
:class:`~controller.sdk.flags.FlagBook` refuses every flag state without a
valid signature by one of them, counts it and logs it. Verifying needs the
``cryptography`` library, which the SDK installs only with its ``verify``
extra (``pip install 'rollout-controller-sdk[verify]'``): it is imported
here, and only when keys are given, so apps that do not verify never load it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from controller.core.wire import FlagState


class Verifier(Protocol):
    def problem(self, state: FlagState) -> str | None:
        """Why ``state`` is not signed by a trusted key (``unsigned``, ...), or None."""

    def signed_problem(self, key_id: str | None, sig: str | None, data: bytes) -> str | None:
        """Why ``sig`` is not a trusted key's signature of ``data``, or None."""


def verifier(keys: Mapping[str, str] | None) -> Verifier | None:
    """The verifier of ``keys``, or None when none are given (states are not verified).

    Raises ImportError naming the extra when ``cryptography`` is missing, and
    ValueError for a key that is not a base64 Ed25519 public key: an app
    asked to verify never silently serves unverified states.
    """
    if not keys:
        return None
    try:
        # Imported only here: cryptography comes with the SDK's `verify` extra.
        from controller.core.trust import StateVerifier  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(
            "verifying flag states needs the cryptography library: "
            "pip install 'rollout-controller-sdk[verify]'"
        ) from exc
    return StateVerifier(keys)
