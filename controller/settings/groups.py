"""The settings groups: one frozen model per part of the controller, every field documented."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Group):
    """How to reach the Kafka-protocol broker."""

    bootstrap_servers: str = Field(
        default="localhost:9092", description="Comma-separated host:port list of brokers."
    )
    client_id: str = Field(default="rollout-controller", description="Client id sent to brokers.")
    group_id: str = Field(
        default="rollout-controller",
        description="Consumer group; instances sharing it split the event partitions.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Transport security towards the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism, with a SASL_* protocol."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle to verify brokers.")
    session_timeout_ms: int = Field(
        default=6000,
        ge=1000,
        description="A member silent this long leaves the group; a crashed instance's "
        "partitions move to the others after it (takeover takes about this plus "
        "heartbeat_interval_ms plus 1-2 s). Kafka brokers refuse less than their "
        "group.min.session.timeout.ms (6000 by default).",
    )
    heartbeat_interval_ms: int = Field(
        default=1000,
        ge=100,
        description="Heartbeats to the group coordinator; the survivors of a crash learn "
        "of the rebalance at their next heartbeat. Keep it under a third of the session.",
    )
    replication_factor: int = Field(
        default=1, ge=1, description="Replication of the topics the controller creates."
    )
    create_topics: bool = Field(
        default=True,
        description="Create missing topics at start (turn off where ACLs forbid it).",
    )
    events_partitions: int = Field(
        default=12, ge=1, description="Partitions of the events topic when it is created."
    )
    max_message_bytes: int = Field(
        default=1_048_576,
        ge=16 * 1024,
        le=100 * 1024 * 1024,
        description="Largest message the controller produces (keep it at or below the "
        "broker's message.max.bytes); a dead letter over it is truncated to fit, and an "
        "output over it is quarantined.",
    )

    def client_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments for the connection and security settings."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = ssl.create_default_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None
            )
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return options


class TopicSettings(_Group):
    """Topic names (see docs/architecture.md, *Topics and wire contracts*)."""

    events: str = Field(default="rollout.events", description="Inbound app events.")
    commands: str = Field(default="rollout.commands", description="Inbound operator commands.")
    monitors: str = Field(default="rollout.monitors", description="Inbound monitor alerts.")
    flag_state: str = Field(default="rollout.flag-state", description="Outbound, compacted.")
    segments: str = Field(
        default="rollout.segments",
        description="Outbound, compacted: each segment under its name, its id list's parts "
        "under `<name>#<index>`.",
    )
    decisions: str = Field(default="rollout.decisions", description="Outbound decisions.")
    alerts: str = Field(default="rollout.alerts", description="Outbound alerts.")
    dlq: str = Field(default="rollout.dlq", description="Rejected input with the reason.")


class RedisSettings(_Group):
    """Where aggregates, offsets and rollout state live."""

    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis URL; use rediss:// for TLS, redis+cluster://host:port[,host:port] "
        "for a Redis Cluster, redis+sentinel://host:port[,host:port]/<service> for a master "
        "behind Redis Sentinel. Put the password in `password`.",
    )
    cluster: bool = Field(
        default=False,
        description="The URL names a node of a Redis Cluster (the same as redis+cluster://).",
    )
    password: SecretStr | None = Field(default=None, description="Redis password.")
    key_prefix: str = Field(
        default="rc", pattern=r"^[A-Za-z0-9:_.-]{1,64}$", description="Prefix of every key."
    )
    aggregate_ttl_seconds: int = Field(
        default=30 * 24 * 3600,
        ge=60,
        description="Aggregates expire this long after their last write.",
    )
    wait_replicas: int | None = Field(
        default=None,
        ge=0,
        le=16,
        description="Replicas that must have a rollout state before its messages are "
        "published (Redis WAIT), so a failover never undoes a published decision. "
        "Unset: 1 when the master has a replica in sync (see `wait_replica_max_lag_seconds`), "
        "else 0; 0 turns the wait off.",
    )
    wait_timeout_ms: int = Field(
        default=1000,
        ge=1,
        le=60_000,
        description="How long one WAIT for replicas may block; past it the publish is retried.",
    )
    wait_replica_max_lag_seconds: int = Field(
        default=5,
        ge=1,
        le=3600,
        description="With `wait_replicas` unset, a replica that has not acknowledged for "
        "longer than this is not waited for (the master reports the lag).",
    )


class IngestSettings(_Group):
    """The event consumer."""

    max_batch_records: int = Field(default=5000, ge=1, description="Records per fold+flush.")
    fetch_timeout_ms: int = Field(default=500, ge=1, description="Longest wait for a batch.")
    max_event_bytes: int = Field(
        default=64 * 1024, ge=256, description="Larger messages go to the DLQ as oversize."
    )
    commit_interval_seconds: float = Field(
        default=1.0, ge=0, description="How often offsets are committed to Kafka (lag only)."
    )
    stall_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description="/readyz reports ingest stalled when no batch was flushed this long "
        "while an owned partition has records left to read.",
    )
    start_from: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a partition with no stored offset starts."
    )


class EngineSettings(_Group):
    """The rollout engine: gates, commands, monitors."""

    gate_interval_seconds: float = Field(
        default=0.25, gt=0, description="How often flags that received events are gated."
    )
    sweep_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often every active rollout is gated (timers)."
    )
    stall_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description="/readyz reports the gate or command loop stalled when it has not "
        "completed a pass this long (e.g. Redis refusing the rollout states).",
    )
    command_max_age_seconds: float = Field(
        default=300.0, gt=0, description="Commands older (or further ahead) than this are stale."
    )
    stale_after_days: float = Field(
        default=14.0,
        gt=0,
        le=3650,
        description="A flag completed this long ago raises one `stale_flag` reminder.",
    )
    operator_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Operator key id -> base64 Ed25519 public key (`rolloutctl keygen`).",
    )
    monitors: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Monitor name -> flags to kill when it reports `down`.",
    )
    max_flag_series: int = Field(
        default=200,
        ge=0,
        le=10_000,
        description="At most this many flags get per-guardrail gauges on /metrics.",
    )
    windows_file: Path | None = Field(
        default=None,
        description="YAML file of the team's release windows (`windows:` and a list, as in a "
        "plan): every plan that names no windows takes them. Read at start.",
    )


class LlmSettings(_Group):
    """The advisor: an OpenAI-compatible server (LocalAI, Ollama, llama.cpp) asked at gates."""

    mode: Literal["off", "advisory", "gating"] = Field(
        default="off",
        description="off; advisory (advice recorded only); gating (advice may hold a stage "
        "or turn an advance into a pause awaiting approval, never anything bolder).",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8080/v1", description="Base URL up to /v1 (LLM_BASE_URL)."
    )
    model: str = Field(default="smollm2-135m-instruct", description="Model name to ask for.")
    api_key: SecretStr | None = Field(default=None, description="Bearer token, if required.")
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Per attempt: connect, request and every byte of the reply. The bundled "
        "SmolLM2-135M on llama-cpp-python takes 7-15 s for one advice on 2 busy CPU cores, so "
        "the default leaves twice the slowest seen; consultations run in the background, so "
        "a slow model delays no gate.",
    )
    retries: int = Field(default=1, ge=0, le=3, description="Retries after a failed attempt.")
    budget_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Deadline of one consultation, retries included; past it the advisor "
        "counts as unavailable. Unset: timeout_seconds * (retries + 1).",
    )
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=200, ge=16, le=2000)
    response_format: Literal["auto", "json_schema", "json_object", "grammar"] = Field(
        default="auto",
        description="How the reply is constrained: auto (OpenAI json_schema, and where the "
        "server refuses it naming the format, llama-cpp-python's json_object with a schema; "
        "what worked is remembered per server), or one of json_schema, json_object and "
        "LocalAI's grammar.",
    )
    breaker_failures: int = Field(default=3, ge=1, description="Failures that open the circuit.")
    breaker_cooldown_seconds: float = Field(
        default=30.0, gt=0, description="How long an open circuit fails fast."
    )
    hold_seconds: float = Field(
        default=60.0, gt=0, description="After a hold, how long before the advisor is asked again."
    )

    def budget(self) -> float:
        """Seconds one consultation may take in all: ``budget_seconds`` or every attempt's."""
        if self.budget_seconds is not None:
            return self.budget_seconds
        return self.timeout_seconds * (self.retries + 1)


def _lower(value: object) -> object:
    """Browsers send an origin's scheme and host in lower case: a listed one is read so."""
    return value.lower() if isinstance(value, str) else value


Origin = Annotated[
    str, BeforeValidator(_lower), Field(pattern=r"^https?://[^\s/]+$", max_length=253)
]


class HttpSettings(_Group):
    """The daemon's HTTP server: /healthz, /readyz, /metrics, /flags, /webhooks/*."""

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
    intake_ack_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="How long the HTTP intake's producer waits for the broker; then 503.",
    )
    intake_dedupe_seconds: int = Field(
        default=24 * 3600,
        gt=0,
        description="How long a batch sent over HTTP is remembered, so its retry is not counted.",
    )
    header_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Time a client has for a request line and headers, counted from connecting "
        "or from the previous response; a slower or idle connection is closed.",
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
        description="Whether OFREP and `POST /v1/events` require an app key "
        "(`Authorization: Bearer <key>`, made by `rolloutctl app-key create`). Unset: "
        "required unless `host` is a loopback address, as the console's token is. A key that "
        "is sent is always checked.",
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

    @model_validator(mode="after")
    def _ports_differ(self) -> HttpSettings:
        if self.health_port == self.port != 0:
            raise ValueError("health_port must differ from port: the probes need their own")
        return self


class LogSettings(_Group):
    level: Literal["debug", "info", "warning", "error"] = Field(default="info")
    format: Literal["json", "console"] = Field(default="json")
