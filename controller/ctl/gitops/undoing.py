"""What ``apply`` undoes of a directory when a later object is not applied after all.

The check before sending (``POST /commands/check``) refuses what the controller would
refuse on the state it holds, so this is left for what it cannot foresee (a start by hand
on the same flag in between, keys reloaded). Only what an undo puts back exactly is
undone, newest first: a segment apply created is deleted, so the controller holds no
segment of that name, as before, and the next diff shows it to create again. The rest
stays applied, and apply says so with :func:`kept`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.core.trust import signing
from controller.core.wire import decision_key
from controller.ctl.gitops.commanding import Batch, Who
from controller.ctl.gitops.diffing import Change, Item
from controller.ctl.operate import segments

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def undo_of(item: Item, who: Who, private_key: Ed25519PrivateKey) -> Batch | None:
    """The signed commands that undo ``item`` once applied, or None: it cannot be undone."""
    if item.desired.kind != "segment" or item.change is not Change.CREATE:
        return None
    name = item.desired.name
    reason = f"rolloutctl apply undoes {item.desired.source}: a later object was not applied"
    batch = Batch()
    for command in segments.commands_for(
        name, action="delete", actor=who.actor, key_id=who.key_id, reason=reason
    ):
        batch.add(signing.sign_command(command, private_key), decision_key(name).encode())
    return batch


def kept(item: Item) -> str:
    """Why ``item``, applied, is not undone."""
    kind = item.desired.kind
    if kind in ("rollout", "pipeline"):
        return (
            "a start served the flag: an abort would not unserve it, and the next apply "
            "would take the aborted rollout as in sync"
        )
    if kind == "app_key":
        return "its secret was written and a key revoked stays revoked"
    return "apply does not know the segment's former rule or ids to put back"
