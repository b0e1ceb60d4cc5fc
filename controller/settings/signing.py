"""The controller's flag-state signing key.

With a key, every flag state the controller publishes, on the flag-state
topic and in ``/flags``, carries ``key_id`` and an Ed25519 ``sig``, and apps
configured with the public key hold no state without a valid one
(``docs/clients.md``, "Verifying flag states"). Without one the controller
publishes unsigned states, as it always did, and warns at start.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from controller.core.common import KEY_ID_PATTERN, ConfigError


class SigningSettings(BaseModel):
    """The private key flag states are signed with: inline (a secret) or from a file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: SecretStr | None = Field(
        default=None,
        description="Base64 of the 32-byte Ed25519 private key (`rollout-controller "
        "signing-key`); a secret: set RC_SIGNING__KEY, or use key_file.",
    )
    key_file: Path | None = Field(
        default=None, description="A file holding the key as `key` would (e.g. a mounted secret)."
    )
    key_id: str = Field(
        default="controller",
        pattern=KEY_ID_PATTERN,
        description="The id apps know the key by: states carry it, and apps map it to the "
        "public key.",
    )

    @property
    def enabled(self) -> bool:
        return self.key is not None or self.key_file is not None

    def key_text(self) -> str | None:
        """The configured private key as base64, or None; ConfigError if the file is unreadable."""
        if self.key is not None:
            return self.key.get_secret_value()
        if self.key_file is None:
            return None
        try:
            return self.key_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the signing key file {self.key_file}: {exc}") from exc
