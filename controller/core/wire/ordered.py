"""A closed part of a decision's evidence that writes its keys in the order it was given.

Decisions were published, since version 1, as open objects built by spreading
one producer's keys into another's (``{**gate, "at_stage": …, "actor": …}``):
the key order on the wire is the order each producer wrote. An
:class:`Ordered` part keeps that: it remembers the order of the keys it was
built or read from, writes only those (a part not given is not written,
an explicit ``null`` is), and :meth:`Ordered.merged` adds keys as a spread
does (a key already there keeps its place). A consumer that compares bytes
sees no change; the JSON Schema is the model's, closed.

:class:`Part` is the base of the gate's evidence parts: frozen and closed.

:func:`tolerant` is the one reader of evidence read back from a topic, a
store or the network: each part is read on its own, what does not fit its
type is left out, never raised.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from functools import cache
from itertools import islice
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    GetJsonSchemaHandler,
    PrivateAttr,
    SerializationInfo,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from controller.core.wire.json import JsonObject

MAX_ENTRIES = 50
"""The most entries read from one keyed part (arms, guardrails, approvals): a plan has a few."""


class Ordered(BaseModel):
    """A frozen, closed part of an evidence, written in the order its keys were given."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    _order: tuple[str, ...] = PrivateAttr(default=())

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> object:
            # A part read back with a field damaged or missing (an older writer's) was
            # built without it: the field reads as not given, a blank to its reader.
            if name in type(self).model_fields:
                return None
            return super().__getattr__(name)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, data: object, handler: ValidatorFunctionWrapHandler) -> Self:
        made: Self = handler(data)
        if isinstance(data, Mapping):
            names = _names(cls)
            made._order = tuple(names[k] for k in data if k in names)
        return made

    @model_serializer(mode="plain")
    def _written(self, info: SerializationInfo) -> JsonObject:
        """The keys given, in their order, each value as JSON."""
        written: JsonObject = {}
        fields = type(self).model_fields
        for name in self._given():
            value = getattr(self, name)
            if value is None and info.exclude_none:
                continue
            key = fields[name].alias or name
            written[key] = _adapter(_hashable(fields[name].annotation)).dump_python(
                value,
                mode="json",
                exclude_unset=True,
                exclude_none=info.exclude_none,
                warnings=False,
            )
        return written

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The part's fields as its schema in both modes: what it writes is what it reads
        (the serializer only keeps the order)."""
        if handler.mode == "serialization":
            core_schema = _unserialized(core_schema)
        return handler(core_schema)

    def _given(self) -> tuple[str, ...]:
        order = self._order or tuple(
            n for n in type(self).model_fields if n in self.model_fields_set
        )
        return tuple(n for n in order if n in self.model_fields_set)

    def wire(self) -> JsonObject:
        """The part as published: its keys in their order, infinities as strings."""
        written: JsonObject = self.model_dump(mode="json")
        return written

    def merged(self, **parts: object) -> Self:
        """This part with ``parts`` added as a dict spread adds them: a key already
        given keeps its place and takes the new value, a new key goes last."""
        values = {name: getattr(self, name) for name in self._given()}
        return type(self).model_validate({**values, **parts})

    def given(self, name: str) -> bool:
        """Whether the part was given ``name`` (even as ``null``)."""
        return name in self.model_fields_set


def _unserialized(schema: CoreSchema) -> CoreSchema:
    """``schema`` without its serializer, down through its validators to the model."""
    plain: dict[str, Any] = {k: v for k, v in schema.items() if k != "serialization"}
    inner = plain.get("schema")
    if plain.get("type") != "model" and isinstance(inner, dict):
        plain["schema"] = _unserialized(cast("CoreSchema", inner))
    return cast("CoreSchema", plain)


P = TypeVar("P", bound=BaseModel)


def tolerant(cls: type[P], raw: object, *, partial: bool = False) -> P:
    """``cls`` read from ``raw`` part by part: what does not fit its type is left out.

    A decision published by an older or newer controller, or damaged, may
    miss parts, add keys or hold a part of the wrong shape; a keyed part
    (per arm, per guardrail, per role) is read entry by entry. One odd part
    costs that part, not the evidence. With ``partial``, for a reader that shows
    each field (a report, a console), a part is read field by field too: a
    damaged or missing field is left out and reads as None, the others kept;
    without, a part is whole or left out, for a reader that computes with it.
    """
    if isinstance(raw, BaseModel):  # read already: its parts as given
        raw = {name: getattr(raw, name) for name in raw.model_fields_set}
    if not isinstance(raw, Mapping):
        return cls.model_validate({})
    parts: dict[str, object] = {}
    names = _names(cls)
    for key, value in islice(raw.items(), MAX_ENTRIES * 2):
        name = names.get(key) if isinstance(key, str) else None
        if name is None:
            continue
        part = _part(cls.model_fields[name].annotation, value, 0 if partial else -1)
        if part is not _LEFT_OUT:
            parts[key] = part
    try:
        return cls.model_validate(parts)
    except ValidationError:  # a required part missing: nothing of it can be trusted
        return cls.model_construct()


_LEFT_OUT = object()
"""A part that did not fit its type."""


def _part(annotation: object, value: object, depth: int) -> object:
    """``value`` as ``annotation`` reads it; else a mapping's entries each on their own,
    and (reading partly: ``depth`` from 0, -1 for whole parts) a part's fields."""
    try:  # strictly: a count is no boolean, a name no number
        return _adapter(_hashable(annotation)).validate_python(value, strict=True)
    except ValidationError:
        pass
    partial = depth >= 0
    model = _model(annotation) if partial else None
    if model is not None and depth <= MAX_DEPTH and depth > 0 and not isinstance(value, Mapping):
        return _fields(model, {}, depth)  # an entry by name that is no part: shown blank
    if not isinstance(value, Mapping) or depth > MAX_DEPTH:
        return _LEFT_OUT
    if model is not None:
        return _fields(model, value, depth + 1)
    entry = _entry(_hashable(annotation))
    if entry is None:
        return _LEFT_OUT
    kept = {}
    for key, item in islice(value.items(), MAX_ENTRIES):
        read = _part(entry, item, depth + 1 if partial else -1)
        if read is not _LEFT_OUT:
            kept[str(key)] = read
    return kept


MAX_DEPTH = 4
"""The deepest a part is read field by field: evidence nests three levels at most."""


def _fields(model: type[BaseModel], value: Mapping[object, object], depth: int) -> object:
    """A part of which only some fields fit: those fields, the others not given.

    A reader sees the part as its writer gave it, less what was damaged; a field
    the part requires but was not given reads as not given (an older writer's
    part, say), which the views show as a blank.
    """
    names = _names(model)
    kept: dict[str, object] = {}
    for key, item in islice(value.items(), MAX_ENTRIES):
        name = names.get(key) if isinstance(key, str) else None
        if name is None:
            continue
        read = _part(model.model_fields[name].annotation, item, depth)
        if read is not _LEFT_OUT:
            kept[name] = read
    try:
        return model.model_validate(kept)
    except ValidationError:
        made = model.model_construct(_fields_set=set(kept), **kept)
        if isinstance(made, Ordered):
            made._order = tuple(kept)
        return made


def _hashable(annotation: object) -> Hashable:
    assert isinstance(annotation, Hashable)  # a field's type: a class, a union, an alias
    return annotation


@cache
def _entry(annotation: Any) -> object | None:
    """For a part that is a mapping by name (or none), the type of one entry."""
    for option in (annotation, *get_args(annotation)):
        if get_origin(option) is dict:
            entry: object = get_args(option)[1]
            return entry
    return None


def _model(annotation: object) -> type[BaseModel] | None:
    """The model a part is (or one of its options is), if any."""
    for option in (annotation, *get_args(annotation)):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


@cache
def _adapter(annotation: Any) -> TypeAdapter[object]:
    adapter: TypeAdapter[object] = TypeAdapter(annotation)
    return adapter


@cache
def _names(cls: type[BaseModel]) -> dict[str, str]:
    """Each key a part may be given (a field's name or its alias) and its field's name."""
    names = {name: name for name in cls.model_fields}
    names |= {f.alias: name for name, f in cls.model_fields.items() if f.alias}
    return names


class Part(BaseModel):
    """A part of the evidence: frozen, and closed (a key it does not name is refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> object:
            # A part read back with a field damaged or missing (an older writer's) was
            # built without it: the field reads as not given, a blank to its reader.
            if name in type(self).model_fields:
                return None
            return super().__getattr__(name)
