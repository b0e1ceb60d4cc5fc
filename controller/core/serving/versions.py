"""Flag versions that only grow, even across a store that lost them.

Events are counted by flag, flag version and arm, with no rollout id: a version
names one split (a rollout, a stage, a percent, a salt), and a stage sums the
versions it published. A store that lost a flag's state lost its version
counter with it, and the events log still holds the events of the versions it
had numbered. So a rollout started on a flag the store does not know (a restore
after Redis was lost, a rebuild, a flag deleted and made again) numbers its
versions above every version the flag-state and decisions topics have seen for
that flag (its *floor*): its stages never count events another split was
served under.

:class:`VersionFloors` reads the floor off the records of those two topics: a
flag state's ``version``, and every ``flag_version``/``flag_versions`` a
decision's evidence names (a gate's versions, an opinion's, late evidence's).
Records it cannot read are skipped: a floor too low is what the rest of the
records, and the flag-state topic above all, guard against.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeGuard

import orjson

MAX_DEPTH = 6
"""How deep a decision's evidence is searched for versions (its parts nest three deep)."""
MAX_VERSION = 2**53
"""A version above this is not taken: no controller numbers that far (a wrong record)."""


def next_version(current: int, floor: int = 0) -> int:
    """The version after ``current`` (the stored state's, 0: none) that is above ``floor``."""
    return max(current, floor) + 1


def versions_in(evidence: object, depth: int = 0) -> Iterator[int]:
    """Every flag version ``evidence`` names (``flag_version``, ``flag_versions``)."""
    if depth > MAX_DEPTH:
        return
    if isinstance(evidence, Mapping):
        for key, value in evidence.items():
            if key == "flag_version" and _version(value):
                yield value
            elif key == "flag_versions" and isinstance(value, list):
                yield from (v for v in value if _version(v))
            else:
                yield from versions_in(value, depth + 1)
    elif isinstance(evidence, list):
        for item in evidence:
            yield from versions_in(item, depth + 1)


def _version(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_VERSION


@dataclass(slots=True)
class VersionFloors:
    """The highest version the flag-state and decisions topics have seen, per flag."""

    seen: dict[str, int] = field(default_factory=dict)

    def floor(self, flag: str) -> int:
        """The highest version seen for ``flag``; 0: none."""
        return self.seen.get(flag, 0)

    def saw(self, flag: str, version: int) -> None:
        """``flag`` was published (or decided on) at ``version``."""
        if version > self.seen.get(flag, 0):
            self.seen[flag] = version

    def take(self, value: bytes | None) -> None:
        """Keep the versions a flag-state or decision record names; skip anything else."""
        try:
            data = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return
        flag = data.get("flag") if isinstance(data, dict) else None
        if not isinstance(flag, str):
            return
        if data.get("type") == "flag_state" and _version(version := data.get("version")):
            self.saw(flag, version)
        elif data.get("type") == "decision":
            for each in versions_in(data.get("evidence")):
                self.saw(flag, each)
