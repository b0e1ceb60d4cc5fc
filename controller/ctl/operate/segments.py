"""``rolloutctl segment``: put, delete, list and show segments.

``put NAME --rule TEXT`` sends one signed command; ``put NAME --ids-file FILE``
reads unit ids (one per line; blank lines and surrounding spaces ignored),
packs them (:func:`controller.core.rules.segments.pack`: sorted, without
duplicates, in gzip parts of at most 128 KiB of text) and sends one signed
command per part, all sharing the upload's id, size and SHA-256, in order
under the key ``segment:<name>``; the controller decides once the last part
is in. Both then wait for that decision, as the action commands do.
``list`` and ``show`` read the controller's ``GET /v1/segments``.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from controller.core.rules import MAX_ID_CHARS, MAX_IDS, pack, parse, to_text
from controller.core.wire import (
    Decision,
    JsonObject,
    SegmentCommand,
    SegmentEvidence,
    SegmentRecord,
    decision_key,
)
from controller.ctl.exits import EXIT_FAILURE, EXIT_NO_DECISION, EXIT_REJECTED
from controller.ctl.looking import diagnosis, views
from controller.ctl.operate import steering
from controller.ctl.operate.commands import contract_model, encode_command, new_message
from controller.ctl.terminal import PROG, env_url, print_json, warn
from controller.ctl.usage import UsageError
from controller.settings import KafkaSettings, TopicSettings

MAX_IDS_FILE_BYTES = MAX_IDS * (MAX_ID_CHARS + 2)
"""The largest ids file read."""


def commands_for(
    name: str,
    *,
    action: str,
    actor: str,
    key_id: str,
    reason: str = "",
    rule: str | None = None,
    ids: list[str] | None = None,
    applied: str | None = None,
) -> list[SegmentCommand]:
    """The unsigned commands of one change, to sign with
    :func:`~controller.core.trust.signing.sign_command`: one, or one per part of an id list.

    ``applied``: the digest ``rolloutctl apply`` sends; ``UsageError`` for a rule or ids
    the contract refuses, with the rule's line and column or the id's number.
    """
    base: JsonObject = {"type": "segment_command", "action": action, "segment": name}
    base |= {"actor": actor, "reason": reason, "key_id": key_id}
    if applied is not None:
        base["applied"] = applied
    bodies: list[JsonObject] = [{}]
    if rule is not None:
        bodies = [{"rule": orjson_rule(rule)}]
    elif ids is not None:
        bodies = _id_parts(ids)
    return [
        contract_model(SegmentCommand, base | body | new_message(), what="segment command")
        for body in bodies
    ]


def _id_parts(ids: list[str]) -> list[JsonObject]:
    """One command body per part of the packed id list, all sharing a new upload id."""
    try:
        packed = pack(ids)
    except ValueError as exc:
        raise UsageError(f"the ids cannot make a segment: {exc}") from None
    if not packed.parts:  # no command to send, none to wait for
        raise UsageError("the ids file holds no ids; to empty a segment, delete it")
    upload = uuid.uuid4().hex
    return [
        {
            "ids": {
                "upload": upload,
                "part": i,
                "parts": len(packed.parts),
                "count": packed.count,
                "sha256": packed.sha256,
                "data": data,
            }
        }
        for i, data in enumerate(packed.parts)
    ]


def orjson_rule(text: str) -> Any:
    """A rule's JSON form from its text; ``UsageError`` with the line and column."""
    try:
        return orjson.loads(parse(text).to_json())
    except ValueError as exc:  # RuleSyntaxError is a ValueError
        raise UsageError(f"invalid rule: {exc}") from None


def read_ids(path: Path) -> list[str]:
    """The ids of an ids file: one per line, blank lines skipped, spaces around trimmed."""
    size = path.stat().st_size
    if size > MAX_IDS_FILE_BYTES:
        raise UsageError(f"{path}: {size} bytes, more than an ids file of {MAX_IDS} ids")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


async def send(
    commands: Sequence[SegmentCommand], *, kafka: KafkaSettings, topic: str, timeout_s: float
) -> tuple[int, int]:
    """Produce the signed commands in order under the segment's key, each as the object its
    signature covers; where the last one went."""
    from controller.adapters.kafka import send_many  # noqa: PLC0415 - keep `--help` fast

    records = [(decision_key(c.segment).encode(), encode_command(c)) for c in commands]
    return await send_many(kafka, topic=topic, records=records, client_id=PROG, timeout_s=timeout_s)


def change(
    args: argparse.Namespace,
    commands: Sequence[SegmentCommand],
    *,
    kafka: KafkaSettings,
    topics: TopicSettings,
) -> int:
    """Send a put or delete and wait for the decision on its last command."""

    async def sending() -> tuple[int, int]:
        return await send(commands, kafka=kafka, topic=topics.commands, timeout_s=args.timeout)

    if args.no_wait:
        asyncio.run(sending())
        print(f"sent: segment {args.verb} {args.name} ({len(commands)} command(s))")
        return 0
    last = commands[-1]
    answered = asyncio.run(
        steering.send_and_await(
            last.id,
            send=sending,
            kafka=kafka,
            decisions=topics.decisions,
            timeout_s=args.timeout,
        )
    )
    if answered is None:
        warn(f"sent segment {args.verb} {args.name}, but no decision came within {args.timeout:g}s")
        return EXIT_NO_DECISION
    if args.json:
        print_json(answered.published)
    else:
        print(outcome_line(args.verb, args.name, answered.decision))
    return EXIT_REJECTED if answered.decision.outcome == "rejected" else 0


def outcome_line(verb: str, name: str, decision: Decision) -> str:
    """What became of a segment command: its new version and size, or why not."""
    evidence = decision.evidence
    if not isinstance(evidence, SegmentEvidence):
        evidence = SegmentEvidence()
    if evidence.deleted:
        content = "deleted"
    elif evidence.rule is not None:
        content = "a rule"
    else:
        content = f"{evidence.count} ids"
    version = evidence.version
    return views.outcome_line(
        decision, what=f"segment {verb} {name}", result=f"version {version}, {content}"
    )


def listing(args: argparse.Namespace) -> int:
    body = _get(env_url(args.url), "/v1/segments")
    if body is None:
        return EXIT_FAILURE
    if args.json:
        print_json(body)
        return 0
    rows = body.get("segments", []) if isinstance(body, dict) else []
    print(f"{'SEGMENT':<40} {'VERSION':>7}  CONTENT")
    for row in rows:
        content = "rule" if row.get("kind") == "rule" else f"{row.get('count')} ids"
        print(f"{row.get('name', '?'):<40} {row.get('version', '?'):>7}  {content}")
    return 0


def show(args: argparse.Namespace) -> int:
    body = _get(env_url(args.url), f"/v1/segments/{args.name}")
    if not isinstance(body, dict):
        return EXIT_FAILURE
    parts = body.pop("part_data", [])
    if args.json:
        print_json(body)
        return 0
    record = SegmentRecord.model_validate(body)
    print(f"segment {record.name}, version {record.version}")
    if record.rule is not None:
        print(f"rule: {to_text(record.rule)}")
    else:
        print(f"{record.count} ids in {len(parts)} part(s), sha256 {record.sha256}")
    if record.key_id:
        print(f"signed by {record.key_id}")
    return 0


def _get(base: str, path: str) -> Any:
    body = diagnosis.get_json(base, path, timeout_s=30, missing_ok=True)
    if body is None:
        warn(f"{path}: no such segment")
    return body
