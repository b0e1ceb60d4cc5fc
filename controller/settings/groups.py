"""The settings groups of Kafka, topics, Redis, ingest, the engine and logs, one frozen model each.

Every field is documented. The HTTP server's group is in :mod:`controller.settings.http`
and the advisor's in :mod:`controller.settings.llm`; the other groups with a module of
their own sit beside them.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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
    unanswered_after_seconds: float = Field(
        default=30.0,
        ge=1.0,
        description="/readyz answers 503 once the brokers have answered no metadata request "
        "for this long; the daemon asks every third of it, each request bounded by the same.",
    )
    replication_factor: int = Field(
        default=1, ge=1, description="Replication of the topics the controller creates."
    )
    create_topics: bool = Field(
        default=True,
        description="Create missing topics at start, and again whenever the broker no "
        "longer has them (turn off where ACLs forbid it).",
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


MAX_UNITS_PER_CELL = 200_000
"""Units whose own counts a cell keeps by default (docs/architecture.md, "Each unit counted")."""
FEWEST_UNITS_PER_CELL = 16
"""The fewest units a cell may be set to keep (a cell's list of heaviest units holds up to
``HEAVIEST_KEPT``, 64: a bound below it lists every unit kept)."""


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
    max_units_per_cell: int = Field(
        default=MAX_UNITS_PER_CELL,
        ge=FEWEST_UNITS_PER_CELL,
        description="The most units whose own requests and failures are kept per flag "
        "version, arm and events partition (a cell; about 17 bytes a unit, 3.5 MB at the "
        "default). A unit first seen past them is not kept: its requests are counted in the "
        "cell's `over`, which caps read as what one unit left out may have sent.",
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


DEDUPE_SECONDS = 3600
DEDUPE_MAX_IDS = 200_000


class IngestSettings(_Group):
    """The event consumer."""

    max_batch_records: int = Field(default=5000, ge=1, description="Records per fold+flush.")
    fetch_timeout_ms: int = Field(default=500, ge=1, description="Longest wait for a batch.")
    flush_interval_ms: int = Field(
        default=250,
        ge=0,
        le=10_000,
        description="A flush starts at least this long after the one before, the records "
        "fetched meanwhile folded into it (up to four batches of max_batch_records): "
        "events that trickle in reach Redis in fewer, larger flushes, whose work per cell "
        "is shared by more events. 0 flushes as soon as the one before has ended.",
    )
    fetch_min_bytes: int = Field(
        default=64 * 1024,
        ge=1,
        le=16 * 2**20,
        description="The broker holds a fetch of the events until this many bytes have come "
        "or fetch_max_wait_ms has passed: while events trickle in, fewer and larger batches, "
        "each flush's work per cell shared by more events.",
    )
    fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="The longest the broker holds a fetch for fetch_min_bytes: the most it "
        "delays an event on its way to Redis. An idle consumer sends one fetch this often "
        "to each broker it reads from (Kafka's own default, 500 ms).",
    )
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
    held_alert_repeat_seconds: float = Field(
        default=900.0,
        ge=1,
        le=7 * 24 * 3600,
        description="While an events partition is held (its log lost what was counted), its "
        "critical events_log_gap alert is raised again this often.",
    )
    dedupe_seconds: int = Field(
        default=DEDUPE_SECONDS,
        ge=1,
        le=7 * 24 * 3600,
        description="An event whose id was counted this recently on its partition is not "
        "counted again (a retried or re-batched copy).",
    )
    dedupe_max_ids: int = Field(
        default=DEDUPE_MAX_IDS,
        ge=1,
        le=10_000_000,
        description="The most event ids a partition remembers for dedupe_seconds; past it the "
        "oldest are forgotten first (about 100 bytes of Redis memory each).",
    )
    cell_copy_mb: int = Field(
        default=64,
        ge=0,
        le=65_536,
        description="Memory for the copies of the cells this instance flushes (each cell's "
        "unit bucket lanes and counts, a few KB to some 15 KB): a flush writes a copied "
        "cell's new values where Redis would add to each; cells past it are added to by "
        "Redis as before. 0 keeps none.",
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
    evidence_max_lag_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="The stage's horizon: an advance or a completion waits while a partition "
        "its events can be on was last counted through longer ago than this (its ingest is "
        "behind, stopped or changing owner); 0: only held partitions are waited for. An "
        "early sign only: a stage about to move always waits until every partition is "
        "counted up to the log end the broker reported then, however short the lag.",
    )
    evidence_catch_up_alert_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="A stage about to move, or past its planned end, that waits this long "
        "for its evidence (partitions behind the broker's log end, lagging or held, or the "
        "broker to say where it is) raises one `evidence_behind` alert naming the topic, the "
        "partitions, their records behind and the instance that ingests them, whatever the "
        "plan's max_duration; 0: never.",
    )
    stale_after_days: float = Field(
        default=14.0,
        gt=0,
        le=3650,
        description="A flag completed this long ago raises one `stale_flag` reminder.",
    )
    operator_keys: dict[str, str | dict[str, Any]] = Field(
        default_factory=dict,
        description="Operator key id -> base64 Ed25519 public key (`rolloutctl keygen`), or "
        "`{public_key, roles}`: the roles it holds (`engine.roles`). A key naming no roles "
        "holds `operator`, every action everywhere.",
    )
    roles: dict[str, Any] = Field(
        default_factory=dict,
        description="The roles keys may hold: `{roles: [{name, actions, environments, "
        "on_call}], on_call_kills_anywhere}` (docs/rollouts.md, Roles per key and "
        "environments). Reloaded with the keys on SIGHUP.",
    )
    environments: dict[str, Any] = Field(
        default_factory=dict,
        description="The environments served: `{names: [...], default: NAME}`; everything "
        "without an environment (every rollout stored before) belongs to the default. "
        "Left empty: one environment, `default`.",
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


class LogSettings(_Group):
    level: Literal["debug", "info", "warning", "error"] = Field(default="info")
    format: Literal["json", "console"] = Field(default="json")
    repeat_interval_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="A library's warning or error that repeats (the Kafka client's refused "
        "connection while a broker is away) is logged once per this many seconds per cause, "
        "the next line saying how many were held back; 0 logs every one.",
    )
