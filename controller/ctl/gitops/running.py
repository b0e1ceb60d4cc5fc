"""``rolloutctl validate|diff|apply -f DIR``: desired state in files, held by the controller.

``validate`` (and ``apply --dry-run``) read the directory only. ``diff`` reads
the live controller over HTTP and prints what ``apply`` would send, as the
canonical command JSON less what is drawn at send time; exit 0 when nothing
differs, 1 when something does, 5 when the controller could not be read, 78
for invalid files. ``apply`` signs each object's commands with the key given, asks
the controller whether it would admit every one and apply it on the state it holds, the
directory's objects before it taken as applied (``POST /commands/check``), and sends
none when it would refuse any, naming each object refused; else sends them, segments
and keys first, waits for each decision and reports it. When one is not applied after
all, the rest are not sent and what can be undone of those applied before it is undone
(:mod:`~controller.ctl.gitops.undoing`). Exit 0 when all applied and nothing is held, 1
when something was held or blocked, 3 when one was refused, 4 when a decision did not
come in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from controller.core.common import ConfigError, ControllerError
from controller.ctl.exits import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_NO_DECISION,
    EXIT_REJECTED,
    EXIT_UNSEEN,
)
from controller.ctl.gitops import checking, commanding, diffing, live, reading, undoing
from controller.ctl.gitops.commanding import Batch, Who
from controller.ctl.gitops.diffing import Change, Item
from controller.ctl.looking import views
from controller.ctl.operate import encode_command, handlers, read_private_key, steering
from controller.ctl.terminal import ENV_KEY_ID, PROG, env_url, print_json, warn
from controller.ctl.usage import UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MARKS = {
    Change.IN_SYNC: "=",
    Change.CREATE: "+",
    Change.UPDATE: "~",
    Change.HELD: "!",
    Change.BLOCKED: "!",
}


def validate(args: argparse.Namespace) -> int:
    """Check every file of the directory offline; exit 78 when any is wrong."""
    state = reading.read_directory(args.directory)
    for source, kind in sorted(state.checked.items()):
        if not any(p.startswith(f"{source}:") for p in state.problems):
            print(f"{source}: valid {kind.replace('_', ' ')}")
    for problem in state.problems:
        print(f"invalid: {problem}")
    if not state.checked and not state.problems:
        warn(f"{args.directory}: no .yaml, .yml or .json files")
    return EXIT_CONFIG if state.problems else 0


def diff(args: argparse.Namespace) -> int:
    """Print what apply would send and, where a key signs the commands as apply would, why
    the controller would refuse any of it (apply's own check, :mod:`.checking`)."""
    items = _items(args)
    if items is None:
        return EXIT_UNSEEN
    key_id = args.key_id or os.environ.get(ENV_KEY_ID) or "ci"
    key = _key_if_any(args.key, key_id)
    who = Who(actor=handlers.actor_of(args.actor), key_id=key_id)
    sending = diffing.in_sending_order([item for item in items if item.send])
    batches = {item.desired.label: commanding.commands_of(item, who, key) for item in sending}
    refused = _would_refuse(args, sending, batches, signed=key is not None)
    for item in items:
        if item.noted or args.verbose:
            label = item.desired.label
            _show(args, item, batches.get(label), refused=refused.get(label))
    return diffing.exit_code(items)


def _key_if_any(given: Path | None, key_id: str) -> Ed25519PrivateKey | None:
    """The key apply would sign with: ``--key``, else the one found where apply looks;
    None when none is there (diff then shows the commands unsigned)."""
    try:
        path = handlers.key_path_of(given, key_id)
    except UsageError:
        return None
    return read_private_key(path) if given is not None or path.exists() else None


def _would_refuse(
    args: argparse.Namespace, sending: list[Item], batches: dict[str, Batch], *, signed: bool
) -> dict[str, str]:
    """Why the controller would refuse each object apply sends, by label, asked as apply
    asks it; nothing when it cannot be asked (the check reads each command's signature)."""
    if not sending:
        return {}
    if not signed:
        warn("not asked whether the controller would admit these: no signing key (pass --key"
             " and --key-id, as apply does)")  # fmt: skip
        return {}
    try:
        found = checking.refusals(env_url(args.url), [batches[i.desired.label] for i in sending])
    except ControllerError as exc:
        warn(f"not asked whether the controller would admit these: {exc}")
        return {}
    return {i.desired.label: why for i, why in zip(sending, found, strict=True) if why is not None}


def apply(args: argparse.Namespace) -> int:
    if args.dry_run:
        return validate(args)
    items = _items(args)
    if items is None:
        return EXIT_FAILURE
    key_id = handlers.key_id_of(args.key_id)
    who = Who(actor=handlers.actor_of(args.actor), key_id=key_id, reason=args.reason)
    sending = diffing.in_sending_order([item for item in items if item.send])
    if any(item.desired.kind == "app_key" for item in sending) and args.secrets_dir is None:
        raise UsageError("apply makes app keys: pass --secrets-dir DIR for their secrets")
    key = read_private_key(handlers.key_path_of(args.key, key_id)) if sending else None
    # Every command is built (and checked against its contract) before the first is sent,
    # and the controller asked whether it would admit each: all are sent, or none.
    batches = [commanding.commands_of(item, who, key) for item in sending]
    if sending:
        try:
            refused = checking.refusals(env_url(args.url), batches)
        except ControllerError as exc:
            warn(f"nothing was sent: {exc}")
            return EXIT_FAILURE
        if any(why is not None for why in refused):
            return _refuse_all(args, sending, refused)
    codes = _send_in_order(args, sending, batches, Undo(who, key)) if key else []
    for item in items:
        if not item.send and (item.noted or args.verbose):
            _show(args, item, None)
    worst = max(codes, default=0)
    return worst or diffing.exit_code([i for i in items if not i.send])


def _refuse_all(args: argparse.Namespace, sending: list[Item], refused: list[str | None]) -> int:
    """Report each object the controller would refuse, and that nothing was sent."""
    for item, why in zip(sending, refused, strict=True):
        if why is not None:
            line = f"refused: {item.change.value} {item.desired.label}: {why}"
            _report(args, item, "refused", why, line=line)
        else:
            _report(args, item, "not sent", "")
    count = sum(why is not None for why in refused)
    warn(
        f"nothing was sent: the controller would refuse {count} of {len(sending)} objects; "
        "apply sends a directory whole or not at all"
    )
    return EXIT_REJECTED


@dataclass(frozen=True)
class Undo:
    """Who signs the commands undoing what was applied, and with which key."""

    who: Who
    key: Ed25519PrivateKey


def _send_in_order(
    args: argparse.Namespace, sending: list[Item], batches: list[Batch], undo: Undo
) -> list[int]:
    """Send each object and wait for its decision, segments first (a rollout's audience may
    name one); after one is not applied, the rest are not sent, and after one is rejected,
    what was applied before it is undone where it can be, newest first."""
    codes: list[int] = []
    for at, (item, batch) in enumerate(zip(sending, batches, strict=True)):
        codes.append(_apply_one(args, item, batch))
        if codes[-1]:
            left = sending[at + 1 :]
            for later in left:
                _report(args, later, "not sent", "", line=f"not sent: {later.desired.label}")
            if left:
                warn(
                    f"{len(left)} objects were not sent after {item.desired.label} was not applied"
                )
            if codes[-1] == EXIT_REJECTED:  # one still undecided may apply yet: undo nothing
                _undo_applied(args, sending[:at], undo)
            break
    return codes


def _undo_applied(args: argparse.Namespace, applied: list[Item], undo: Undo) -> None:
    """Undo each of ``applied`` that can be, newest first; say what stays applied, and why."""
    undone: list[str] = []
    for item in reversed(applied):
        label = f"{item.change.value} {item.desired.label}"
        batch = undoing.undo_of(item, undo.who, undo.key)
        if batch is None:
            why = undoing.kept(item)
            _report(args, item, "left applied", why, line=f"left applied: {label}: {why}")
            continue
        answered = _send(args, batch)
        if answered is not None and answered.decision.outcome == "applied":
            undone.append(item.desired.label)
            _report(args, item, "undone", "", line=f"undone: {label}")
            continue
        why = "no decision came" if answered is None else answered.decision.reason
        _report(args, item, "not undone", why, line=f"not undone: {label}: {why}")
    if applied:
        warn(
            f"undone {len(undone)} of the {len(applied)} objects applied before"
            + (f" ({', '.join(undone)})" if undone else "")
            + "; the rest stay applied"
        )


def _items(args: argparse.Namespace) -> list[Item] | None:
    state = reading.read_directory(args.directory)
    if state.problems:
        raise ConfigError(f"{args.directory}: " + "; ".join(state.problems))
    base = env_url(args.url)
    try:
        found = live.read_live(base, state.objects)
    except (ConfigError, UsageError):
        raise
    except ControllerError as exc:
        warn(f"cannot compare with the controller: {exc}")
        return None
    return diffing.plan(state.objects, found, force=args.force)


def _show(
    args: argparse.Namespace, item: Item, batch: Batch | None, *, refused: str | None = None
) -> None:
    """One object's line and its commands; ``refused``: why apply would be refused it."""
    commands = [commanding.shown(c) for c in batch.commands] if batch else []
    if args.json:
        print_json(
            {
                "kind": item.desired.kind,
                "name": item.desired.name,
                "file": item.desired.source,
                "change": item.change.value,
                "why": item.why,
                "digest": item.desired.digest,
                "changed_by_hand": item.live.steered if item.live is not None else None,
                "refused": refused,
                "commands": commands,
            }
        )
        return
    why = item.why + (f"; apply will be refused: {refused}" if refused else "")
    print(f"{MARKS[item.change]} {item.desired.label}: {item.change.value}: {why}")
    for command in commands:
        print("  " + encode_command(command).decode())


def _apply_one(args: argparse.Namespace, item: Item, batch: Batch) -> int:
    answered = _send(args, batch)
    label = item.desired.label
    if answered is None:
        warn(f"sent {label}, but no decision came within {args.timeout:g}s")
        _report(args, item, "no decision", "")
        return EXIT_NO_DECISION
    decision = answered.decision
    applied = decision.outcome == "applied"
    if applied and batch.secret is not None:
        _write_secret(args.secrets_dir, item.desired.name, batch.secret)
    line = views.outcome_line(decision, what=f"{item.change.value} {label}", result="")
    _report(args, item, decision.outcome, decision.reason, line=line)
    return 0 if applied else EXIT_REJECTED


def _report(
    args: argparse.Namespace, item: Item, outcome: str, reason: str, line: str = ""
) -> None:
    if args.json:
        print_json(
            {"kind": item.desired.kind, "name": item.desired.name, "change": item.change.value}
            | {"outcome": outcome, "reason": reason, "digest": item.desired.digest}
        )
    elif line:
        print(line)


def _send(args: argparse.Namespace, batch: Batch) -> steering.Answered | None:
    from controller.adapters.kafka import send_many  # noqa: PLC0415 - keep `--help` fast

    settings, kafka = handlers.broker_of(args)
    records = [(key, encode_command(c)) for key, c in zip(batch.keys, batch.commands, strict=True)]

    async def send() -> tuple[int, int]:
        return await send_many(
            kafka,
            topic=settings.topics.commands,
            records=records,
            client_id=PROG,
            timeout_s=args.timeout,
        )

    return asyncio.run(
        steering.send_and_await(
            batch.commands[-1].id,
            send=send,
            kafka=kafka,
            decisions=settings.topics.decisions,
            timeout_s=args.timeout,
        )
    )


def _write_secret(directory: Path, name: str, secret: str) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{name}.secret"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secret + "\n")
    warn(f"app key {name}: its secret is in {path} (shown nowhere else)")
