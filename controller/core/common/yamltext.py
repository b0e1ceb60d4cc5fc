"""YAML from outside (plans, the config file), read with bounds and YAML 1.2 scalars.

``yaml.safe_load`` builds no objects, but it still follows aliases: a few
hundred bytes of nested anchors (a "billion laughs") expand into billions of
nodes as soon as anything walks the result, and deep nesting exhausts the
parser's recursion. Plans and settings never need aliases, so they are
refused, as is text over :data:`MAX_YAML_BYTES` or nested past the recursion
limit; every refusal is a :class:`ConfigError` naming the source.

PyYAML resolves plain scalars by YAML 1.1, where ``1e3`` is a string (a float
needs a dot there), ``NO``, ``on`` and ``y`` are booleans and ``1:30`` is
ninety. JSON, and the audience rules' JSON form written inside a plan, mean
otherwise, so a rule ``age == 1e3`` would compare against the string "1e3"
and ``country in [NO, SE]`` against ``false``. The scalars are therefore read
by the YAML 1.2 core schema (``docs/architecture.md``, "Plan files"): only
``true``/``false`` (as ``True``, ``TRUE``...) are booleans, only ``null``,
``~`` and nothing are null, integers are decimal, ``0o`` octal or ``0x`` hex,
floats may carry an exponent, and everything else is a string.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from controller.core.common.errors import ConfigError

MAX_YAML_BYTES = 1024 * 1024

_CORE_SCALARS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ("~", "n", "N", "")),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", tuple("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", tuple("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        tuple("-+.0123456789"),
    ),
)
"""The YAML 1.2 core schema: (tag, pattern, the characters a match may start with)."""


class _CoreNoAliases(yaml.SafeLoader):
    """The safe loader with YAML 1.2 core scalars, refusing aliases (``*name``)."""

    yaml_implicit_resolvers = {}  # noqa: RUF012 - PyYAML's registry, filled below

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed", mark)
        return super().compose_node(parent, index)

    def construct_core_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text, 10)  # "017" is seventeen in 1.2, not 1.1's octal fifteen

    def construct_core_bool(self, node: yaml.ScalarNode) -> bool:
        return str(self.construct_scalar(node)).lower() == "true"


for _tag, _pattern, _first in _CORE_SCALARS:
    _CoreNoAliases.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
_CoreNoAliases.add_constructor("tag:yaml.org,2002:int", _CoreNoAliases.construct_core_int)
_CoreNoAliases.add_constructor("tag:yaml.org,2002:bool", _CoreNoAliases.construct_core_bool)


class _QuotingDumper(yaml.SafeDumper):
    """The safe dumper, quoting a string that YAML 1.1 *or* 1.2 would read as anything else,
    so that what is written reads back the same here and in any other YAML reader."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's registry, extended below
        first: list(found) for first, found in yaml.SafeDumper.yaml_implicit_resolvers.items()
    }


for _tag, _pattern, _first in _CORE_SCALARS:
    _QuotingDumper.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def dump_yaml(data: Any, **options: Any) -> str:
    """``data`` as YAML that :func:`load_yaml` reads back unchanged; options as ``safe_dump``'s."""
    return str(yaml.dump(data, Dumper=_QuotingDumper, **options))


def _check_size(text: str, source: str) -> None:
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{source} is {size} bytes, over the {MAX_YAML_BYTES} limit")


def load_yaml(text: str, *, source: str) -> Any:
    """The data in ``text``; a :class:`ConfigError` for anything too large, deep or odd."""
    _check_size(text, source)
    try:
        return yaml.load(text, Loader=_CoreNoAliases)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{source} is nested too deeply") from exc


def load_json(text: str, *, source: str) -> Any:
    """The data in JSON ``text``, bounded as :func:`load_yaml` is; NaN and Infinity refused."""
    _check_size(text, source)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{source} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{source} is nested too deeply") from exc


def load_document(text: str, *, source: str, name: str) -> Any:
    """The data in a file called ``name``: JSON if it ends in ``.json``, YAML otherwise."""
    if name.lower().endswith(".json"):
        return load_json(text, source=source)
    return load_yaml(text, source=source)


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not a JSON number")
