"""The fields every wire message carries, and those every signed operator command carries.

A signed command is sent as :func:`sent_object` gives it, and signed as that object
without ``sig`` (:func:`controller.core.trust.signing.sign_command`): what is signed
and what is sent are the same object, and the controller verifies the signature over
the object it receives.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from controller.core.common import Actor, MessageId, Reason, SchemaVersion, Timestamp
from controller.core.wire.json import JsonObject


class MessageBase(BaseModel):
    """The common fields (``v``, ``id``, ``ts``), for every wire model."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    v: SchemaVersion = Field(description="Schema version of this message.")
    id: MessageId = Field(description="Unique id of this message, used for deduplication.")
    ts: Timestamp = Field(
        description="When it happened: epoch milliseconds, or RFC 3339 with an offset."
    )


SIGNED_FIELDS = ("actor", "reason", "key_id", "sig")
"""The fields every signed operator command carries, in :class:`SignedCommand`."""


class SignedCommand(MessageBase):
    """The fields of a command an operator signs: who, why, with which key, the signature.

    The signature covers the command as sent (:func:`sent_object`) without ``sig``.
    A published schema lists ``actor`` and ``reason`` after the field named by
    :attr:`actor_follows`, ``key_id`` and ``sig`` last, and ``type`` first where
    :attr:`type_leads`, where each message declared them before this base held them, so
    the schemas stay as they were.
    """

    actor: Actor = Field(description="Who issued the command.")
    reason: Reason = ""
    key_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="Which operator key signed it; unsigned commands are rejected."
    )
    sig: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Base64 Ed25519 signature over the canonical command without `sig`: "
        "its JSON with keys sorted and no whitespace.",
    )

    actor_follows: ClassVar[str] = ""
    """The field ``actor`` and ``reason`` follow in the published schema ("": first)."""
    type_leads: ClassVar[bool] = False
    """Whether the published schema lists ``type`` before ``v``, ``id`` and ``ts``."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(core_schema)
        target = handler.resolve_ref_schema(json_schema)
        order = published_order(list(cls.model_fields), cls.actor_follows, cls.type_leads)
        rank = {name: at for at, name in enumerate(order)}
        if "properties" in target:
            target["properties"] = dict(
                sorted(target["properties"].items(), key=lambda item: rank.get(item[0], 0))
            )
        if "required" in target:
            target["required"] = sorted(target["required"], key=lambda name: rank.get(name, 0))
        return json_schema


def published_order(fields: list[str], actor_follows: str, type_leads: bool = False) -> list[str]:
    """``fields`` (a signed command's, base fields first) in the order its schema lists them:
    ``type`` first where ``type_leads``, ``actor`` and ``reason`` after ``actor_follows``,
    ``key_id`` and ``sig`` last."""
    rest = [name for name in fields if name not in SIGNED_FIELDS]
    if type_leads and "type" in rest:
        rest = ["type", *(name for name in rest if name != "type")]
    at = rest.index(actor_follows) + 1 if actor_follows in rest else 0
    return [*rest[:at], "actor", "reason", *rest[at:], "key_id", "sig"]


def sent_object(command: SignedCommand) -> JsonObject:
    """The JSON object a command is sent as, and signed as without ``sig``: the fields it
    was given, less those that are None (a default left unset, such as ``to_end`` on
    anything but ``promote``, is not sent)."""
    sent: JsonObject = command.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    return sent
