"""An OTLP/protobuf export cut into its resources and items, each left as its bytes.

protobuf's parser refuses a whole export for one string that is not UTF-8 or
one value nested past its recursion limit (100 messages), and an OTLP
exporter does not send a refused export again: one bad span would lose all
its siblings. So an export that does not parse is read again through a
projection of its envelope (OTLP's own field numbers, which a trace export
and a logs export share) in which each resource and each span or log record
is left as bytes. The envelope holds no text and nests three levels, so it
parses whenever the body is protobuf at all; :mod:`.proto` then parses each
resource and item on its own and refuses, at its index, only one that does
not parse.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

Group = tuple[bytes, list[bytes]]
"""A resource's bytes, and the bytes of each of its items (spans or log records)."""


def _classes() -> dict[str, Any]:
    """``Export{groups=1: Group}``, ``Group{resource=1: bytes, scopes=2: Scope}``,
    ``Scope{items=2: bytes}``: ``resource_spans``/``resource_logs``, ``scope_spans``/
    ``scope_logs`` and ``spans``/``log_records`` by their numbers; the rest is unknown
    to it, so kept unparsed."""
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="controller_otlp_envelope.proto", package="controller_otlp_envelope", syntax="proto3"
    )
    shapes: dict[str, list[tuple[str, int, int, str]]] = {
        "Scope": [("items", 2, f.TYPE_BYTES, "")],
        "Group": [("resource", 1, f.TYPE_BYTES, ""), ("scopes", 2, f.TYPE_MESSAGE, "Scope")],
        "Export": [("groups", 1, f.TYPE_MESSAGE, "Group")],
    }
    for name, fields in shapes.items():
        message = file.message_type.add(name=name)
        for field, number, kind, of in fields:
            label = f.LABEL_OPTIONAL if field == "resource" else f.LABEL_REPEATED
            added = message.field.add(name=field, number=number, type=kind, label=label)
            if of:
                added.type_name = f".{file.package}.{of}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{name}"))
        for name in shapes
    }


_EXPORT: Final = _classes()["Export"]


def groups_of(raw: bytes) -> list[Group] | None:
    """Each resource of an export, with its items, all as bytes; None if it is no protobuf
    of an export's shape."""
    try:
        export = _EXPORT.FromString(raw)
    except (DecodeError, ValueError, RuntimeError):
        return None
    return [
        (group.resource, [item for scope in group.scopes for item in scope.items])
        for group in export.groups
    ]
