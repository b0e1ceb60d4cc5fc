"""Environments: the names a controller serves (``dev``, ``staging``, ``production``).

A name is short, lower case, and never ``*`` (the wildcard of a role's
environments, :mod:`controller.core.release.roles`). :class:`Environments`
is the configured list and its default: the environment of everything stored
before environments existed. Upgrading from a single environment therefore
needs no rewrite: a stored rollout, decision or flag state without an
environment belongs to the default (:meth:`Environments.of`). Pure.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.core.common import ENVIRONMENT_PATTERN

MAX_ENVIRONMENTS = 16
"""A controller serving more environments than this is several controllers."""
DEFAULT_ENVIRONMENT = "default"
"""The environment of every rollout stored before environments existed."""

EnvironmentName = Annotated[str, Field(min_length=1, max_length=32, pattern=ENVIRONMENT_PATTERN)]
"""A lower-case name of up to 32 letters, digits, ``-`` and ``_``, beginning with a letter."""


class Frozen(BaseModel):
    """A part of the release model: immutable, and no field it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Environments(Frozen):
    """The environments a controller serves, in no particular order, and the default."""

    names: Annotated[
        tuple[EnvironmentName, ...], Field(min_length=1, max_length=MAX_ENVIRONMENTS)
    ] = (DEFAULT_ENVIRONMENT,)
    default: EnvironmentName = Field(
        default=DEFAULT_ENVIRONMENT,
        description="Where everything stored without an environment belongs (an upgrade).",
    )

    @model_validator(mode="after")
    def _default_is_served(self) -> Self:
        seen: set[str] = set()
        for i, name in enumerate(self.names):
            if name in seen:
                raise ValueError(f"names.{i}: {name!r} is named twice")
            seen.add(name)
        if self.default not in seen:
            raise ValueError(f"default: {self.default!r} is not one of names")
        return self

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def of(self, stored: str | None) -> str:
        """The environment of a stored record: its own, or the default when it has none."""
        return self.default if stored is None or stored == "" else stored

    def unknown(self, name: str) -> str | None:
        """Why ``name`` is no environment here (the ones there are), or None."""
        if name in self.names:
            return None
        return f"unknown environment {name!r} (this controller serves {', '.join(self.names)})"


SINGLE = Environments()
"""Today's controller: one environment, the default."""
