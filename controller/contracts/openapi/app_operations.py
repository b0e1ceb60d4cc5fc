"""The routes apps and monitors call: segments, the event intake, app keys, webhooks."""

from __future__ import annotations

from controller.contracts.openapi.operations import (
    APP_READ,
    DOWN,
    ETAG,
    KEY_REFUSED,
    NOT_MODIFIED,
    OPERATOR,
    OPERATOR_WANTED,
    SCOPE_REFUSED,
    Answer,
    Operation,
)

SEGMENTS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/v1/segments",
        "listSegments",
        "segments",
        "Every segment with its version",
        "Its size, or that it is a rule; poll it for a 304 and fetch a segment only when its "
        "version moved. Guarded as `/flags` is.",
        (
            Answer(200, "The segments.", "SegmentList", ETAG),
            NOT_MODIFIED,
            KEY_REFUSED,
            SCOPE_REFUSED,
            DOWN,
        ),
        APP_READ,
        ("If-None-Match",),
    ),
    Operation(
        "get",
        "/v1/segments/{name}",
        "getSegment",
        "segments",
        "One segment, with its id list",
        "Its record as the segments topic carries it (signed where the controller has a key) "
        "and its id list's parts under `part_data`; the ETag is its version.",
        (
            Answer(200, "The segment.", "SegmentAnswer", ETAG),
            NOT_MODIFIED,
            Answer(400, "Not a segment name.", "Refusal"),
            KEY_REFUSED,
            SCOPE_REFUSED,
            Answer(404, "No such segment, or it was deleted.", "Refusal"),
            DOWN,
        ),
        APP_READ,
        ("segmentName", "If-None-Match"),
    ),
)

EVENTS_KEY = (("appKey", ("events",)), ("", ()))
EVENTS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/v1/events",
        "sendEvents",
        "events",
        "Send a batch of events",
        "For apps that cannot speak Kafka: the events of the events topic "
        "(`event.schema.json`), validated as ingest validates them. All or nothing: one "
        "invalid event refuses the batch. A retried or re-batched event is counted once. "
        "Takes an app key of scope `events` where `http.require_app_keys` is on.",
        (
            Answer(202, "The broker acknowledged every event sent.", "IntakeAccepted"),
            Answer(
                400,
                "Not a batch (not JSON, too deep, no `events`, empty, an id repeated), or an "
                "invalid event (`errors`).",
                "IntakeRefusal",
            ),
            KEY_REFUSED,
            SCOPE_REFUSED,
            Answer(408, "The body was slower than `http.body_timeout_seconds`.", "IntakeRefusal"),
            Answer(
                409,
                "An id was accepted before with other content (`changed`); nothing was sent.",
                "IntakeRefusal",
            ),
            Answer(413, "The body or the batch is over its bound.", "IntakeRefusal"),
            Answer(
                415, "Not `application/json`, or sent with a `Content-Encoding`.", "IntakeRefusal"
            ),
            Answer(
                429,
                "Past the client's event rate (`http.intake_events_per_second`).",
                "IntakeRefusal",
                ("Retry-After",),
            ),
            Answer(500, "Something unforeseen; nothing was counted, retry later.", "IntakeRefusal"),
            Answer(
                503,
                "The broker (or Redis) did not acknowledge: nothing was counted, send it again. "
                "Where the app keys could not be read, the body is a `DependencyDown`.",
                ("IntakeRefusal", "DependencyDown"),
                ("Retry-After",),
            ),
        ),
        EVENTS_KEY,
        body="EventBatch",
    ),
    Operation(
        "options",
        "/v1/events",
        "preflightEvents",
        "events",
        "CORS preflight",
        "For browsers on an origin in `http.cors_origins`.",
        (
            Answer(204, "The methods and headers allowed for this origin."),
            Answer(400, "No `Origin` header: not a preflight.", "Refusal"),
            Answer(403, "The origin is not allowed.", "Refusal"),
        ),
        parameters=("Origin",),
    ),
)

APP_KEYS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/app-keys",
        "listAppKeys",
        "app keys",
        "Every app key (never a secret nor its hash)",
        "Keys are made and revoked by signed commands (`rolloutctl keys`). With "
        "`http.webhook_token` set this wants it; without one, it is served only on a "
        "loopback address. An app key is never accepted here.",
        (
            Answer(200, "The keys, oldest first.", "AppKeyList"),
            OPERATOR_WANTED,
            Answer(403, "No webhook token set and the server is not on loopback.", "Refusal"),
            DOWN,
        ),
        OPERATOR,
    ),
)
COMMANDS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/commands/check",
        "checkCommands",
        "commands",
        "Whether each signed command of a set would be admitted now",
        "The signed commands `rolloutctl apply` would send on the commands topic, each as "
        "its JSON object (at most 500, in 4 MiB). Each is checked as the command intake "
        "checks it on arrival (a known key, its signature, fresh, an environment served, the "
        "key's roles allow it there), then a rollout's or pipeline's command as it would be "
        "decided on the rollouts held (another flag's holdout percent, prerequisites, every "
        "plan working, the flag free), in order, each admitted one taken as applied for the "
        "next. None is decided or recorded, so sending it after is no replay. A command "
        "that breaks the contract is answered as refused with the reason. What a check "
        "cannot foresee is what the command meets when it is sent later.",
        (
            Answer(200, "One result per command, in order.", "CommandChecks"),
            Answer(400, 'Not `{"commands": [...]}` of 1 to 500 objects.', "Refusal"),
            OPERATOR_WANTED,
            Answer(408, "The body did not arrive within `http.body_timeout_seconds`.", "Refusal"),
            Answer(413, "The body is over 4 MiB.", "Refusal"),
            Answer(415, "The body is not `application/json`.", "Refusal"),
            DOWN,
        ),
        OPERATOR,
        body="CommandCheckRequest",
    ),
)


def _webhook(path: str, operation_id: str, summary: str, shape: str) -> Operation:
    return Operation(
        "post",
        path,
        operation_id,
        "webhooks",
        summary,
        f"{shape} A redelivery of an incident already accepted changes nothing.",
        (
            Answer(
                200,
                "Ignored (not started, reopened nor resolved), or a redelivery.",
                "WebhookAnswer",
            ),
            Answer(202, "Published to the monitors topic.", "WebhookAnswer"),
            Answer(401, "Missing or wrong webhook token.", "Refusal"),
            Answer(403, "Webhooks are disabled: `http.webhook_token` is not set.", "Refusal"),
            Answer(404, "No flag is mapped to this monitor (`engine.monitors`).", "Refusal"),
            Answer(408, "The body was slower than `http.body_timeout_seconds`.", "Refusal"),
            Answer(413, "The body is over 64 KiB.", "Refusal"),
            Answer(415, "Not `application/json`.", "Refusal"),
            Answer(422, "Not JSON, or a payload that cannot be read.", "Refusal"),
            Answer(500, "Something unforeseen; the sender retries.", "Refusal"),
            Answer(503, "Not published; the sender retries.", "Refusal"),
        ),
        (("operatorToken", ()), ("webhookTokenQuery", ())),
        ("X-Request-Id",),
        body="MonitorPayload",
    )


WEBHOOKS: tuple[Operation, ...] = (
    _webhook(
        "/webhooks/betteruptime",
        "betterUptimeWebhook",
        "A Better Uptime incident",
        "Better Uptime's incident webhook, as it sends it.",
    ),
    _webhook(
        "/webhooks/monitor",
        "monitorWebhook",
        "A monitor's alert",
        "A generic monitor alert: `monitor`, `status` (`down` or `up`) and an optional id.",
    ),
)
