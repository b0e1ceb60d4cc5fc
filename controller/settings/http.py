"""The HTTP server's settings: its ports, timeouts and limits, and who may call it."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator


def _lower(value: object) -> object:
    """Browsers send an origin's scheme and host in lower case: a listed one is read so."""
    return value.lower() if isinstance(value, str) else value


Origin = Annotated[
    str, BeforeValidator(_lower), Field(pattern=r"^https?://[^\s/]+$", max_length=253)
]


class HttpSettings(BaseModel):
    """The daemon's HTTP server: /healthz, /readyz, /metrics, /flags, /webhooks/*."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="Serve HTTP at all.")
    host: str = Field(default="0.0.0.0", description="Address to bind.")  # noqa: S104 - a server
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind.")
    health_port: int = Field(
        default=8001,
        ge=0,
        le=65535,
        description="Port of the health listener: /healthz, /readyz and /metrics only, with "
        "connections of its own, so probes are answered however busy the main port is. "
        "For the orchestrator and the scraper; do not publish it.",
    )
    webhook_token: SecretStr | None = Field(
        default=None,
        description="Token the monitor webhooks require (`Authorization: Bearer <token>` "
        "or `?token=`); unset, the webhooks answer 403.",
    )
    webhook_dedupe_seconds: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long a webhook incident is remembered, so a redelivery changes nothing.",
    )
    intake_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest body `POST /v1/events` reads; a larger one is answered 413.",
    )
    intake_max_events: int = Field(
        default=500, ge=1, le=10_000, description="Most events in one `POST /v1/events` batch."
    )
    intake_events_per_second: float = Field(
        default=10_000,
        gt=0,
        description="Events a second one client may send over HTTP (bursts up to this or one "
        "full batch); past it 429 with Retry-After.",
    )
    ofrep_requests_per_second: float = Field(
        default=2_000,
        gt=0,
        description="OFREP evaluation requests a second one client (app key, else address) may "
        "make, bulk counting as one (bursts up to a second's worth); past it 429 with Retry-After.",
    )
    ofrep_max_streams: int = Field(
        default=128,
        ge=0,
        le=100_000,
        description="OFREP event streams (`GET /ofrep/v1/events`) open at once; each holds one of "
        "`max_connections`, so raise both together. Past it a new stream is answered 429 and "
        "the client polls. 0: bulk answers announce no streams.",
    )
    ofrep_streams_per_key: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="OFREP event streams one client (app key, else address) may hold open; a "
        "browser app's client key holds one per open page. Past it 429.",
    )
    ofrep_stream_max_seconds: float = Field(
        default=60.0,
        ge=1,
        le=86_400,
        description="The longest an OFREP event stream lasts (each a random 75 to 100 % of it): "
        "then the server ends it, the client comes back 0.1 s later and resumes from the last "
        "event it read, missing nothing. A client that never reads holds its stream no longer.",
    )
    reads_max_age_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How old the answers of `GET /flags` and `GET /rollouts` may be: each is "
        "built at most once in this time, however many clients read it, and served with an "
        "ETag (304 when unchanged). 0 builds one for every request that finds no build under way.",
    )
    reads_per_second: float = Field(
        default=5,
        gt=0,
        description="Requests a second one client (remote address) may make to `GET /rollouts`, "
        "`/rollouts/{flag}` and `/rollouts/{flag}/history` (bursts up to a second's worth); "
        "past it 429 with Retry-After.",
    )
    intake_ack_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="How long the HTTP intake's producer waits for the broker; then 503.",
    )
    intake_process: bool = Field(
        default=False,
        description="Send the intakes' batches (POST /v1/events, OTLP over HTTP) from a "
        "process of the daemon's own, off its interpreter: under a flood the daemon's "
        "requests, ingest and gates keep their interpreter, and a second core works (the "
        "process's modules alone hold some 100 MB). false sends from a thread of the "
        "daemon's process.",
    )
    intake_dedupe_seconds: int = Field(
        default=3600,
        gt=0,
        description="How long the HTTP intake remembers an event it sent (id and content), "
        "to name it a duplicate, or refuse it changed (409), when it is sent again. Redis "
        "holds one key, some 200 bytes, per event sent for this long.",
    )
    header_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="Time a client has for a request line and headers, counted from connecting "
        "or from the previous response; a slower or idle connection is closed. Longer than "
        "common clients keep an idle connection (httpx and Node 4 to 5 s), so none sends a request "
        "on a connection the server is closing.",
    )
    body_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Time a client has for a request body once its headers are in; slower "
        "gets 408. Also how long an unread body is drained before the connection closes.",
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        le=10000,
        description="Connections served at once; past it a new one is answered 503 and closed.",
    )
    console_hosts: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list,
        max_length=32,
        description="Host names the console answers to when it runs without a token (bound to "
        "loopback), beside localhost, 127.0.0.1 and [::1]; any other `Host` gets 421, so a web "
        "page cannot reach the console under a name of its own (DNS rebinding).",
    )
    console_url: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^https?://[^\s|<>]+$",
        description="The console's public base URL, as people reach it (e.g. "
        "`https://rollouts.example.com`): Slack alerts link to the flag's page under it. "
        "Unset, alerts carry no link.",
    )
    require_app_keys: bool | None = Field(
        default=None,
        description="Whether OFREP, `POST /v1/events`, `GET /flags` and `GET /v1/segments*` "
        "require an app key "
        "(`Authorization: Bearer <key>`, made by `rolloutctl app-key create`). Unset: "
        "required unless `host` is a loopback address, as the console's token is. A key that "
        "is sent is always checked.",
    )
    public_flags: bool = Field(
        default=False,
        description="Serve `GET /flags` and `GET /v1/segments*` (salts, rings, values, id "
        "lists: enough to evaluate any unit offline) without an app key even where keys are "
        "required. Off, they want a key of scope `evaluate` (or the webhook token) as OFREP does.",
    )
    cors_origins: list[Origin] = Field(
        default_factory=list,
        max_length=64,
        description="Browser origins (`https://shop.example.com`, in lower case as browsers "
        "send them) that may call OFREP and `POST /v1/events` with a client key; others get 403.",
    )
    max_header_bytes: int = Field(
        default=8190,
        ge=1024,
        le=65536,
        description="Longest request line or header field; a longer one is answered 400.",
    )
    otlp_enabled: bool = Field(
        default=True,
        description="Serve OTLP/HTTP (`POST /v1/traces`, `POST /v1/logs`, protobuf or JSON) "
        "beside `POST /v1/events`, with its app keys (scope `events`), body bound "
        "(`intake_max_body_bytes`, as sent) and body time-out: apps' OpenTelemetry flag "
        "evaluations and server spans become exposures and request outcomes (docs/otel.md).",
    )
    otlp_max_decoded_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="Largest OTLP body once its `Content-Encoding: gzip` is undone; past it "
        "(a gzip bomb) the export is answered 413 before more is inflated.",
    )
    otlp_max_items: int = Field(
        default=10_000,
        ge=1,
        le=100_000,
        description="Most spans or log records one OTLP export may hold; an export with more "
        "is answered 413 (send smaller batches: an exporter's or Collector's batch size).",
    )
    otlp_max_attributes: int = Field(
        default=128,
        ge=8,
        le=4096,
        description="Most attributes (and most span events) one span, event or log record "
        "may carry; one with more is refused (`oversize`), its siblings counted. A longer "
        "string is cut to 4,096 characters and an array, list or bytes value dropped unread, "
        "as the OpenTelemetry SDK's limits do: they refuse nothing.",
    )
    otlp_items_per_second: float = Field(
        default=10_000,
        gt=0,
        description="Spans and log records a second one client (app key, else address) may "
        "send over OTLP/HTTP, valid or not (bursts up to this or one full export); past it "
        "429 with Retry-After.",
    )
    otlp_max_in_flight: int = Field(
        default=2,
        ge=1,
        le=64,
        description="OTLP exports decoded, translated and sent at once; more wait their turn "
        "(`otlp_max_waiting`). An export of 10,000 spans is about a second of one core: more "
        "at once only share the CPU and all take longer.",
    )
    otlp_max_waiting: int = Field(
        default=8,
        ge=0,
        le=1024,
        description="OTLP exports that may wait for a turn; past it an export is answered 503 "
        "with Retry-After at once, its body unread.",
    )
    otlp_answer_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long after its headers an OTLP export is answered at the latest: "
        "one that got no turn within half of it, or whose work (decoding, translating, the "
        "broker's acknowledgement) is not done by the whole of it, is answered 503 with "
        "Retry-After; that work goes on, and the copy sent again counts once. "
        "Keep it below the exporters' time-out (10 s by default in the OpenTelemetry SDKs "
        "and the Collector), or they give up, send again and the load grows.",
    )
    otlp_guard_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="An evaluation that carries no `feature_flag.version` counts for the flag "
        "version in force at its time; one this close to a change of version counts for "
        "neither (apps switch versions over this interval; in practice only the time after a "
        "change matters, docs/otel.md). Also read by the Collector's "
        "Kafka topics (otlp.enabled), as are the join window, the pending bound and the "
        "flags' age below.",
    )
    otlp_join_window_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How long an evaluation waits for the server span of its request (or a "
        "span for its evaluations, a conversion for its trace) when they arrive in different "
        "exports; then the evaluation keeps its exposure and counts no outcome.",
    )
    otlp_max_pending: int = Field(
        default=100_000,
        ge=1000,
        le=10_000_000,
        description="Most evaluations and spans held waiting to be joined; past it the oldest "
        "are dropped (counted as unmatched).",
    )
    otlp_flags_max_age_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How old the flags OTLP translates against (each rollout's plan, flag "
        "version and versions' start times) may be before an export has them read again.",
    )

    @model_validator(mode="after")
    def _ports_differ(self) -> HttpSettings:
        if self.health_port == self.port != 0:
            raise ValueError("health_port must differ from port: the probes need their own")
        return self
