"""YAML from outside (plans, the config file), read with bounds.

``yaml.safe_load`` builds no objects, but it still follows aliases: a few
hundred bytes of nested anchors (a "billion laughs") expand into billions of
nodes as soon as anything walks the result, and deep nesting exhausts the
parser's recursion. Plans and settings never need aliases, so they are
refused, as is text over :data:`MAX_YAML_BYTES` or nested past the recursion
limit; every refusal is a :class:`ConfigError` naming the source.
"""

from __future__ import annotations

from typing import Any

import yaml

from controller.core.errors import ConfigError

MAX_YAML_BYTES = 1024 * 1024


class _NoAliases(yaml.SafeLoader):
    """The safe loader, refusing aliases (``*name``) wherever they appear."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed", mark)
        return super().compose_node(parent, index)


def load_yaml(text: str, *, source: str) -> Any:
    """The data in ``text``; a :class:`ConfigError` for anything too large, deep or odd."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{source} is {size} bytes, over the {MAX_YAML_BYTES} limit")
    try:
        return yaml.load(text, Loader=_NoAliases)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{source} is nested too deeply") from exc
