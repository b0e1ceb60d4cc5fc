"""Environments in flag keys: one store and one set of topics serve several environments.

A flag's rollout, flag state, decisions and aggregates in an environment
other than the default one are keyed by the flag and its environment,
``checkout@staging``; in the default environment the flag keeps its own key,
``checkout``. Everything stored and published before environments existed
therefore stays where it was, in the default environment, with no rewrite,
and two environments of one flag never share a key: not in Redis, and not on
the compacted flag-state topic, where they would otherwise compact into one
record. ``@`` is in no flag's own key (:data:`PLAIN_FLAG_KEY_PATTERN`), so
the split is unambiguous, and it is safe in URL paths (``/rollouts/checkout@staging``).
Pure.
"""

from __future__ import annotations

MARK = "@"


def scoped(flag: str, environment: str | None, default: str) -> str:
    """The key of ``flag`` in ``environment`` (none, or the default: the flag's own)."""
    if environment is None or environment == default:
        return flag
    return f"{flag}{MARK}{environment}"


def split(key: str) -> tuple[str, str | None]:
    """A flag key's flag and environment (None: the default one)."""
    flag, mark, environment = key.partition(MARK)
    return (flag, environment) if mark else (key, None)


def environment_of(key: str, default: str) -> str:
    """The environment a flag key belongs to."""
    return split(key)[1] or default
