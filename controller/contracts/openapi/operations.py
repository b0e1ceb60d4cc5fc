"""Route by route, what the HTTP API takes and answers, as its handlers do.

Each :class:`Operation` names its answers by status with the model of their body (a
component of the document), the credentials it admits and its parameters. The statuses
are those the handlers in :mod:`controller.adapters` write: the reads' guards (401, 403),
their rate (429), the store or broker down (503, :class:`.answers.DependencyDown`, from the
server's middleware on every route of the API port), and each route's own.
"""

from __future__ import annotations

from dataclasses import dataclass

JSON = "application/json"
METRICS_TYPE = "text/plain"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    description: str
    body: str | tuple[str, ...] | None = None
    """The component schema of its body, or those it is one of (None: no body)."""
    headers: tuple[str, ...] = ()
    media: str = JSON


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    description: str
    answers: tuple[Answer, ...]
    security: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Each credential admitted, with its scopes; ("", ()) admits a request without any."""
    parameters: tuple[str, ...] = ()
    body: str | None = None


DOWN = Answer(503, "Redis or the broker did not answer; `reason` names which.", "DependencyDown")
ETAG = ("ETag",)
NOT_MODIFIED = Answer(304, "`If-None-Match` named the current ETag.", headers=ETAG)
OPERATOR = (("operatorToken", ()),)
OPERATOR_WANTED = Answer(
    401, "`http.webhook_token` is set and the request did not carry it.", "Refusal"
)
"""Where no webhook token is set, the operator's routes are open (``/app-keys``: on loopback
only); the document describes a daemon with one, as production runs."""
LIMITED = Answer(
    429, "Past this client's read rate (`http.reads_per_second`).", "Refusal", ("Retry-After",)
)
KEY_REFUSED = Answer(
    401, "No app key where one is required, or an unknown or revoked one.", "Refusal"
)
SCOPE_REFUSED = Answer(
    403,
    "The key lacks the scope, is a server key sent from a browser, or the origin is not in "
    "`http.cors_origins`.",
    "Refusal",
)
APP_READ = (("appKey", ("evaluate",)), ("operatorToken", ()), ("", ()))
FLAG = ("flag",)


def _read(status_body: str, what: str) -> Answer:
    return Answer(200, what, status_body, ETAG)


PROBES: tuple[Operation, ...] = (
    Operation(
        "get",
        "/healthz",
        "healthz",
        "probes",
        "Liveness",
        "Answers while the event loop runs. Served on the health port (`http.health_port`, "
        "8001) for the orchestrator, and on the API port too.",
        (Answer(200, "The process runs.", "Health"),),
    ),
    Operation(
        "get",
        "/readyz",
        "readyz",
        "probes",
        "Readiness",
        "Ready: Redis and the brokers answer, this instance owns events partitions and no "
        "loop is stalled. Served on the health port and on the API port.",
        (
            Answer(200, "Ready, with the partitions owned.", "Readiness"),
            Answer(503, "Not ready; `reason` says why.", "Readiness"),
        ),
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "probes",
        "Prometheus metrics",
        "The Prometheus text format, for the scraper. Served on the health port and on the "
        "API port.",
        (Answer(200, "Prometheus text format 0.0.4.", None, media=METRICS_TYPE),),
    ),
)

READS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/flags",
        "listFlags",
        "flags",
        "Every flag's state, as apps poll it",
        "Guarded like OFREP: an app key of scope `evaluate` (a key bound to one environment "
        "reads that environment's flags only) or the operator token; open where "
        "`http.public_flags` is on or `http.require_app_keys` is off.",
        (_read("FlagStates", "The flags."), NOT_MODIFIED, KEY_REFUSED, SCOPE_REFUSED, DOWN),
        APP_READ,
        ("If-None-Match",),
    ),
    Operation(
        "get",
        "/rollouts",
        "listRollouts",
        "rollouts",
        "Every rollout with a fresh gate view",
        "What `rolloutctl status` prints. At most `http.reads_max_age_seconds` old.",
        (_read("RolloutList", "The rollouts."), NOT_MODIFIED, OPERATOR_WANTED, LIMITED, DOWN),
        OPERATOR,
        ("If-None-Match",),
    ),
    Operation(
        "get",
        "/rollouts/{flag}",
        "getRollout",
        "rollouts",
        "One rollout",
        "The flag's rollout: phase, stage, time in stage and the gate's current evidence.",
        (
            Answer(200, "The rollout.", "RolloutStatus"),
            OPERATOR_WANTED,
            Answer(404, "No rollout for this flag.", "Refusal"),
            LIMITED,
            DOWN,
        ),
        OPERATOR,
        FLAG,
    ),
    Operation(
        "get",
        "/rollouts/{flag}/history",
        "getRolloutHistory",
        "rollouts",
        "A rollout's gate history",
        "Gate points, stage by stage.",
        (
            Answer(200, "The history.", "RolloutHistory"),
            OPERATOR_WANTED,
            Answer(404, "No rollout history for this flag.", "Refusal"),
            LIMITED,
            DOWN,
        ),
        OPERATOR,
        FLAG,
    ),
    Operation(
        "get",
        "/rollouts/{flag}/verdict",
        "getRolloutVerdict",
        "rollouts",
        "What a deploy gate waits on",
        "`done` and `ok`, the phase and the reason. Takes the operator token or an app key "
        "of scope `verdicts` (a read-only key a deploy tool may hold); with no webhook token "
        "set, a request without credentials is admitted too. A key bound to one environment "
        "reads that environment's verdict: the flag's name is its flag there, and a flag key "
        "naming another environment (`checkout@production`) is a 403.",
        (
            Answer(200, "The verdict.", "DeployVerdict"),
            KEY_REFUSED,
            SCOPE_REFUSED,
            Answer(
                404, "Nothing was ever started for this flag, or no such environment.", "Refusal"
            ),
            LIMITED,
            DOWN,
        ),
        (("appKey", ("verdicts",)), ("operatorToken", ()), ("", ())),
        FLAG,
    ),
    Operation(
        "get",
        "/pipelines/{flag}",
        "getPipelineRun",
        "pipelines",
        "A flag's newest release pipeline run",
        "As `rolloutctl pipeline status` shows it: each environment's state, what gates the "
        "next step, who still has to approve.",
        (
            Answer(200, "The run.", "PipelineRun"),
            Answer(400, "Not a flag's own key (no `@environment`).", "Refusal"),
            Answer(401, "The operator token is set and was not sent.", "Refusal"),
            Answer(404, "No pipeline run for this flag.", "Refusal"),
            DOWN,
        ),
        OPERATOR,
        ("plainFlag",),
    ),
    Operation(
        "get",
        "/holdouts/{name}",
        "getHoldoutReport",
        "rollouts",
        "A holdout against everyone else",
        "As `rolloutctl report --holdout` shows it: per flag naming the holdout in the "
        "environment, and over every flag together, everyone else against the held-out units "
        "on the flags' guardrails with the gate's tests (on units, always valid), and each "
        "flag's sample-ratio check.",
        (
            Answer(200, "The report.", "HoldoutReport"),
            Answer(
                400, "Not a holdout's name, an environment's, an alpha or an instant.", "Refusal"
            ),
            OPERATOR_WANTED,
            Answer(404, "No rollout of the environment names this holdout.", "Refusal"),
            DOWN,
        ),
        OPERATOR,
        ("holdoutName", "environment", "alpha", "since"),
    ),
)
