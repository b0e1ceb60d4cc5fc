"""The arguments of ``rolloutctl audit export`` and ``rolloutctl audit check``."""

from __future__ import annotations

import argparse
from pathlib import Path

Subparsers = argparse._SubParsersAction

AUDIT_TYPES = ("decision", "command", "alert", "monitor", "segment")
"""What an export may hold (``--types``): the core's audit types, in their order (a test
keeps the two in step)."""
DEFAULT_MAX_RECORDS = 500_000
MAX_LINE_BYTES = 4 * 1024 * 1024
"""The longest line ``audit check`` reads by default: a record of the controller's
(``kafka.max_message_bytes``, 1 MiB by default) and its event's attributes, several times over."""


def add_audit(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """``rolloutctl audit export`` and ``rolloutctl audit check``."""
    audit = commands.add_parser("audit", help="export what the controller published; check it")
    verbs = audit.add_subparsers(dest="audit_command", metavar="VERB", required=True)
    sub = verbs.add_parser(
        "export",
        help="write decisions, commands, alerts and segments as CloudEvents JSON Lines",
        description="Read what the controller published between --since and --until (by "
        "each record's Kafka timestamp, since <= t < until) and write it as CloudEvents 1.0 "
        "JSON Lines, one event per record, in time order (ties by topic, partition, "
        "offset). Each event's data is the record as published: a decision with its "
        "evidence (approvals, segment and key changes are decisions too), a signed "
        "command with its actor and key id, an alert. A record the controller published "
        "again after a restart is written once (same id, same content); event ids are "
        "stable, so exports of overlapping spans deduplicate on (source, id). Lines "
        "validate against schemas/audit-event.schema.json. Written to stdout, a file "
        "(--out) or a Kafka topic (--to-topic). Each event names the digest of the line "
        "before it (prevdigest); a last line, the seal, counts them, names the offsets "
        "each partition was read over and is signed with --key-id/--key: `rolloutctl "
        "audit check` checks the file end to end. A span some of whose records a log may "
        "no longer hold (deleted, or past retention) is not exported.",
        epilog="Times: RFC 3339 with an offset (2026-11-01T09:00:00Z), a date (midnight "
        "UTC) or 'now'. Exit codes: 0 exported, 1 broker or file failure (or a span the "
        "log no longer holds), 2 usage, 78 bad configuration.",
    )
    _add_export_arguments(sub)
    _add_check(verbs)


def _add_export_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--since", required=True, metavar="TIME", help="first instant, included")
    sub.add_argument("--until", required=True, metavar="TIME", help="last instant, excluded")
    where = sub.add_mutually_exclusive_group()
    where.add_argument(
        "--out", type=Path, metavar="FILE", help="write here (whole or not at all); default stdout"
    )
    where.add_argument(
        "--to-topic",
        metavar="NAME",
        help="produce each event to this Kafka topic instead (structured mode, keyed by "
        "subject, acks=all)",
    )
    sub.add_argument(
        "--types",
        metavar="LIST",
        help=f"comma-separated, of {','.join(AUDIT_TYPES)} (default: all)",
    )
    sub.add_argument(
        "--config", type=Path, metavar="FILE", help="controller settings YAML (Kafka, topics)"
    )
    sub.add_argument("--bootstrap", metavar="HOST:PORT", help="broker list, overrides --config")
    sub.add_argument(
        "--max-records",
        type=int,
        default=DEFAULT_MAX_RECORDS,
        metavar="N",
        help="refuse a span holding more records than this; they are sorted in memory "
        f"(default: {DEFAULT_MAX_RECORDS:,})",
    )
    sub.add_argument("--quiet", action="store_true", help="no progress, no summary")
    sub.add_argument("--key-id", metavar="ID", help="the operator key that signs the seal")
    sub.add_argument("--key", type=Path, metavar="FILE", help="its private key file")


def _add_check(verbs: Subparsers[argparse.ArgumentParser]) -> None:
    """``rolloutctl audit check``."""
    sub = verbs.add_parser(
        "check",
        help="check an export end to end: chain, count, seal and its signature",
        description="Read an export written by `rolloutctl audit export`, a line at a time, "
        "and check that it is whole and as written: each event names the digest of the line "
        "before it (the first, the export's start) and was read where the seal says, the last "
        "line is the seal that counts the events and names the last one's digest, and the "
        "seal is signed by a known operator key (given any, an unsigned seal fails). Given "
        "the controller's keys, each decision must be as the controller signed it. The first "
        "line that fails any of it is named: edited, dropped, moved, added, unsigned, a bad "
        "signature.",
        epilog="Exit codes: 0 the export holds, 1 a line fails, 2 usage, 78 bad configuration.",
    )
    sub.add_argument("file", type=Path, metavar="FILE", help="the export (JSON Lines)")
    sub.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="controller settings: its operator keys, and its signing key (the controller's)",
    )
    sub.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="ID=BASE64",
        help="an operator public key by its id (repeatable), besides --config's",
    )
    sub.add_argument(
        "--require-signature",
        action="store_true",
        help="fail on an unsigned seal even where no operator key is given (given one, "
        "an unsigned seal always fails)",
    )
    sub.add_argument(
        "--controller-key",
        action="append",
        default=[],
        metavar="ID=BASE64",
        help="a controller public key by its id (repeatable), besides the one --config's "
        "signing key gives: every decision must be signed by one (as the controller wrote it)",
    )
    sub.add_argument(
        "--max-line-bytes",
        type=int,
        default=MAX_LINE_BYTES,
        metavar="N",
        help="the longest line read; a longer one fails unread, so memory stays bounded "
        f"(default: {MAX_LINE_BYTES:,})",
    )
