"""What the published wire contracts say of themselves: titles, descriptions and the topics.

Each schema's title and description, the eight topics with the direction each
flows, its message and what its records are keyed by, and the reasons a
dead letter may carry. :mod:`controller.contracts` renders them with the
models into the JSON Schema files and the AsyncAPI document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DLQ_REASONS = (
    "empty",
    "oversize",
    "malformed_json",
    "not_an_object",
    "unknown_type",
    "unsupported_version",
    "schema_violation",
    "store_refused",
    "processing_error",
)
"""Values of the DLQ ``rc.reason`` header (``decoding.RejectReason``)."""

SCHEMA_TEXT: dict[str, tuple[str, str]] = {
    "event": (
        "Event",
        "An inbound event on the events topic: an exposure, a request outcome or a "
        "conversion, discriminated on `type`.",
    ),
    "command": ("Command", "A signed operator command on the commands topic."),
    "flag-state": (
        "Flag state",
        "The assignment config of one flag, on the compacted flag-state topic.",
    ),
    "decision": (
        "Decision",
        "A state change, gate result, command outcome or advisor opinion, with evidence.",
    ),
    "alert": ("Alert", "Something a person should know about a rollout."),
    "monitor": ("Monitor alert", "An uptime monitor changed state; `down` kills mapped flags."),
    "http-flags": (
        "GET /flags",
        "The current state of every flag with a rollout, by flag: what apps poll (with an "
        "ETag; 304 when unchanged). `key_id` and `sig` are absent when the controller has "
        "no signing key.",
    ),
    "http-rollouts": (
        "GET /rollouts",
        "Every rollout with a fresh, read-only gate view: what `rolloutctl status` prints.",
    ),
    "http-rollout": ("GET /rollouts/{flag}", "One rollout with a fresh, read-only gate view."),
    "http-rollout-history": (
        "GET /rollouts/{flag}/history",
        "The current rollout's recorded gate evaluations, stage by stage.",
    ),
    "http-rollout-verdict": (
        "GET /rollouts/{flag}/verdict",
        "A flag's verdict for deploy gates: `done` once its rollout has ended, `ok` when it "
        "ended by completing; held, paused, inconclusive or waiting is `done: false`.",
    ),
    "app-key-command": (
        "App-key command",
        "A signed operator command on the commands topic that makes or revokes an app's "
        "API key (`type: app_key`); it carries the secret's SHA-256, never the secret.",
    ),
    "ingest-command": (
        "Ingest command",
        "A signed operator command on the commands topic that chooses how held events "
        "partitions resume (`type: ingest`): `reread` from their earliest offset, or "
        "`accept_gap` from where their log ended (docs/architecture.md, 'A broker that lost "
        "its data').",
    ),
    "pipeline-command": (
        "Pipeline command",
        "A signed operator command on the commands topic that starts a flag's release "
        "pipeline (`type: pipeline`): environments in order, each with its plan and what "
        "gates the step to it (docs/rollouts.md, 'Release pipelines').",
    ),
    "audience": (
        "Audience rule",
        "Which units a rule selects: conditions on context attributes joined by "
        '`and`, `or` and `not` (the JSON form of the text `country == "TH" and ...`).',
    ),
}
"""The title and description of each published schema, by file stem; a topic's message
takes its schema's."""


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic as the AsyncAPI document describes it, from the controller's point of view."""

    key: str
    default: str
    action: Literal["receive", "send"]
    message: str
    message_key: str
    description: str


TOPICS: tuple[Topic, ...] = (
    Topic(
        "events",
        "rollout.events",
        "receive",
        "event",
        "The unit id (`unit`), so all events of one unit stay in order on one partition.",
        "Exposures, request outcomes and conversions published by apps.",
    ),
    Topic(
        "commands",
        "rollout.commands",
        "receive",
        "command",
        "The flag key.",
        "Signed operator commands (start, pause, resume, promote, rollback, abort, kill, approve).",
    ),
    Topic(
        "monitors",
        "rollout.monitors",
        "receive",
        "monitor",
        "The monitor name (`monitor`).",
        "Uptime monitor alerts; the same payload is accepted over HTTP webhooks.",
    ),
    Topic(
        "flag_state",
        "rollout.flag-state",
        "send",
        "flag-state",
        "The flag key; compaction keeps the latest state of each flag.",
        "Current assignment config of each flag, for apps. The topic is compacted "
        "(cleanup.policy=compact): read it from the beginning to get every flag's state.",
    ),
    Topic(
        "segments",
        "rollout.segments",
        "send",
        "segment",
        "The segment's name; `<name>#<index>` for a part of its id list (`segment-part`).",
        "Segments for apps, compacted: each one's record, and its id list's parts.",
    ),
    Topic(
        "decisions",
        "rollout.decisions",
        "send",
        "decision",
        "The flag key.",
        "Audit trail: every state change, gate result, command outcome and advisor opinion, "
        "with its evidence. Consumers deduplicate by `id`.",
    ),
    Topic(
        "alerts",
        "rollout.alerts",
        "send",
        "alert",
        "The flag key (absent when the alert concerns no single flag).",
        "Rollbacks, kills, sample ratio mismatches, stuck rollouts and advisor outages.",
    ),
    Topic(
        "dlq",
        "rollout.dlq",
        "send",
        "rejected",
        "The key of the rejected message, unchanged (absent if it had none).",
        "Rejected input: the original value bytes, unchanged, with the reason and source "
        "position in headers. The source offset still advances; nothing is dropped silently.",
    ),
)
TOPIC_KEYS = tuple(t.key for t in TOPICS)
"""The keys a topic is named by in the settings (``topics.<key>``)."""
DEFAULT_TOPICS: dict[str, str] = {t.key: t.default for t in TOPICS}
"""Each topic's name when the settings leave it alone."""
