"""Flag states apps can trust: what the controller signs, and which state an app holds.

The controller signs each flag state with Ed25519 (:mod:`signing`); apps
configured with its public keys verify it before they serve it. What is
signed is not the message as sent but :func:`signed_bytes`: a compact JSON
array of exactly the fields that decide an arm, in a fixed order, with the
percent as its integer bucket threshold (:func:`bucketing.threshold`), so
clients in any language rebuild the same bytes without canonicalising
objects or floats::

    ["rollout-controller/flag-state/1", key_id, flag, version, status,
     threshold, salt, rollout_id, stage]

A targeted rollout's state (one with ``rings``) is signed in the second form,
which appends the rollout's audience and its rings, rules in their JSON form
with object keys sorted (``docs/clients.md``, "Rings")::

    ["rollout-controller/flag-state/2", key_id, flag, version, status,
     threshold, salt, rollout_id, stage, audience, [[audience, threshold], ...]]

A verifier that knows only the first form rebuilds other bytes and refuses
the state, so no client serves rings it cannot read.

A state with typed arm values (``values``, :mod:`controller.core.wire.arm_values`)
is signed in the third form: the second form's fields, ``audience`` and
``rings`` null when untargeted, then the values as ``[type, control,
treatment]``, objects with keys sorted and whole numbers written as integers
(``1.0`` as ``1``, as JavaScript writes it)::

    ["rollout-controller/flag-state/3", key_id, flag, version, status,
     threshold, salt, rollout_id, stage, audience, rings, [type, control, treatment]]

A verifier that knows only the first two forms refuses it, so no verifying
client serves a boolean where the plan declared other values.

A state with prerequisites (``requires``, :mod:`controller.core.wire.prerequisites`)
is signed in the fourth form: the third form's fields (``values`` null when
undeclared), then each prerequisite as ``[flag, [variant, ...]]`` in the
order listed::

    ["rollout-controller/flag-state/4", key_id, flag, version, status,
     threshold, salt, rollout_id, stage, audience, rings, values, [[flag, [variant]], ...]]

So a prerequisite can be neither stripped nor added by anyone without the key.

A state naming a holdout (``holdout``, :mod:`controller.core.wire.holdouts`)
is signed in the fifth form: the fourth form's fields (``requires`` null when
there are none), then the holdout as ``[name, threshold]``, its percent as
its integer bucket threshold as the flag's own::

    ["rollout-controller/flag-state/5", key_id, flag, version, status,
     threshold, salt, rollout_id, stage, audience, rings, values, requires,
     [name, threshold]]

So a holdout can be neither stripped, added, renamed nor resized by anyone
without the key, and no client that knows only the first four forms serves
treatment to a held-out unit of a verified state.

Because the version is signed together with the rollout, status, percent and
salt it belongs to, a signed version can be neither raised nor moved to
another rollout or flag.

:func:`supersedes` is the rule by which an app replaces the state it holds
(``docs/architecture.md``, "Security"): a newer version wins; and an app that
does not verify also takes any state that serves control over one that
serves treatment, whatever their versions, so that one unsigned message with
a huge version cannot hold back the controller's kill or rollback.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel

from controller.core.wire.arm_values import canonical
from controller.core.wire.bucketing import threshold
from controller.core.wire.messages import FlagState, FlagStatus

SIGNED_FORM = "rollout-controller/flag-state/1"
"""The first element of the signed array: names what is signed, and its version."""
SIGNED_FORM_RINGS = "rollout-controller/flag-state/2"
"""The first element of a targeted state's signed array, which goes on with its rings."""
SIGNED_FORM_VALUES = "rollout-controller/flag-state/3"
"""The first element of the signed array of a state with typed values, which ends with them."""
SIGNED_FORM_REQUIRES = "rollout-controller/flag-state/4"
"""The first element of the signed array of a state with prerequisites, which ends with them."""
SIGNED_FORM_HOLDOUT = "rollout-controller/flag-state/5"
"""The first element of the signed array of a state naming a holdout, which ends with it."""
SERVES_CONTROL = frozenset({FlagStatus.INACTIVE, FlagStatus.ROLLED_BACK, FlagStatus.KILLED})
"""Statuses under which every unit is served control, reported as flag version 0."""


def signed_bytes(state: Mapping[str, Any], key_id: str) -> bytes:
    """The bytes the controller signs for ``state`` (a flag state's fields) with ``key_id``.

    ``state`` needs ``flag``, ``version``, ``status`` and ``percent`` and
    ``salt``; ``rollout_id`` and ``stage`` are null when absent, and so are
    ``audience`` and ``rings`` (then the first form is signed),
    ``values`` (then the first or second form is signed), ``requires``
    (then not the fourth) and ``holdout`` (then not the fifth). Raises
    ValueError for a percent outside 0..100 and orjson's error for a string
    that is not valid Unicode.
    """
    status = state["status"]
    rings, values, requires = state.get("rings"), _json(state.get("values")), state.get("requires")
    holdout = _json(state.get("holdout"))
    form = SIGNED_FORM if rings is None else SIGNED_FORM_RINGS
    form = form if values is None else SIGNED_FORM_VALUES
    form = form if requires is None else SIGNED_FORM_REQUIRES
    fields = [
        form if holdout is None else SIGNED_FORM_HOLDOUT,
        key_id,
        state["flag"],
        state["version"],
        status.value if isinstance(status, FlagStatus) else status,
        threshold(state["percent"]),
        state["salt"],
        state.get("rollout_id"),
        state.get("stage"),
    ]
    if rings is not None or values is not None or requires is not None or holdout is not None:
        fields += [
            _json(state.get("audience")),
            None
            if rings is None
            else [[_json(r.get("audience")), r["threshold"]] for r in map(_json, rings)],
        ]
    if values is not None:
        arms = (canonical(values[arm]) for arm in ("control", "treatment"))
        fields.append([values["type"], *arms])
    if requires is not None or holdout is not None:
        fields += [None] if values is None else []
    if requires is not None:
        fields.append([[r["flag"], list(r["variants"])] for r in map(_json, requires)])
    if holdout is not None:
        fields += [None] if requires is None else []
        fields.append([holdout["name"], threshold(holdout["percent"])])
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def _json(value: Any) -> Any:
    """A rule (or ring) as JSON data, with the wire's keys (``and``, ``or``, ``not``)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return value


def state_bytes(state: FlagState) -> bytes | None:
    """What ``state``'s signature must cover, or None when it names no key."""
    if state.key_id is None:
        return None
    return signed_bytes(state.model_dump(by_alias=True), state.key_id)


class Verdict(StrEnum):
    """Why an app takes a flag state, or why not."""

    FIRST = "first"
    """No state of the flag was held."""
    NEWER = "newer"
    """Its version is above the held state's."""
    SAFETY = "safety"
    """It serves control where the held one serves treatment (apps that do not verify)."""
    STALE = "stale"
    """Neither: the held state stays."""


def supersedes(held: FlagState | None, incoming: FlagState, *, verified: bool) -> Verdict:
    """Whether an app holding ``held`` takes ``incoming`` instead, and why.

    ``verified`` says every state the app takes carries a valid signature of
    the controller's: then versions are the controller's own and order
    states alone. An app that does not verify cannot tell a forged version
    from a real one, so a state that serves control also replaces one that
    serves treatment at any version: a forgery can then hold a percent until
    the next kill or rollback, never past it.
    """
    if held is None:
        return Verdict.FIRST
    if incoming.version > held.version:
        return Verdict.NEWER
    if not verified and incoming.status in SERVES_CONTROL and held.status not in SERVES_CONTROL:
        return Verdict.SAFETY
    return Verdict.STALE
