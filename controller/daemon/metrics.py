"""Prometheus metrics of the daemon, on a registry of its own (no global state).

The per-flag guardrail gauges, with their bounded labels, are in
:mod:`controller.daemon.guardrail_gauges`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controller.core.rollouts import Action, RaiseAlert, RecordDecision, Rollout
from controller.daemon.guardrail_gauges import GuardrailGauges

log = structlog.get_logger("controller.daemon.rollouts.engine")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Every metric the controller exports; one instance, injected where it is counted."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._owned: dict[str, set[int]] = {}
        self._add_ingest(self.registry)
        self._add_rollouts(self.registry)
        self._add_http(self.registry)
        self.guardrails = GuardrailGauges(self.registry)
        self.backend = BackendMetrics(self.registry)
        self.otlp = OtlpHttpMetrics(self.registry)

    def _add_ingest(self, r: CollectorRegistry) -> None:
        """Ingest's: events folded, copies and rejects, flushes, lag, partitions owned."""
        self.events = Counter(
            "rollout_ingest_events", "Events folded into aggregates (exactly once).", registry=r
        )
        self.duplicates = Counter(
            "rollout_ingest_duplicates",
            "Copies of events already counted (an id counted within ingest.dedupe_seconds), "
            "not counted again.",
            registry=r,
        )
        self.rejects = Counter(
            "rollout_ingest_rejects",
            "Inbound messages sent to the DLQ, by reason.",
            ["reason"],
            registry=r,
        )
        self.flush_seconds = Histogram(
            "rollout_ingest_flush_seconds",
            "Time to flush one batch to Redis.",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.lag = Gauge(
            "rollout_ingest_consumer_lag",
            "Records behind the end of each events partition.",
            ["partition"],
            registry=r,
        )
        self.lost_writes = Counter(
            "rollout_store_lost_writes",
            "Flushes that found Redis had lost writes it acknowledged (a failover to a "
            "replica without them), by events partition; each is replayed exactly.",
            ["partition"],
            registry=r,
        )
        self.partitions = Gauge(
            "rollout_ingest_partitions", "Events partitions this instance owns.", registry=r
        )
        self.owned_partitions = Gauge(
            "rollout_partition_owned",
            "1 for each partition this instance owns, by role: events (aggregates it "
            "writes) and commands (flags whose rollouts it runs).",
            ["role", "partition"],
            registry=r,
        )

    def _add_rollouts(self, r: CollectorRegistry) -> None:
        """The engine's: percents served, decisions, the advisor, failures set aside."""
        self.percent = Gauge(
            "rollout_flag_percent",
            "Share of units served treatment, by flag.",
            ["flag"],
            registry=r,
        )
        self.decisions = Counter(
            "rollout_decisions",
            "Decisions published, by action and outcome.",
            ["action", "outcome"],
            registry=r,
        )
        self.advisor_seconds = Histogram(
            "rollout_advisor_latency_seconds",
            "Time the advisor took to answer.",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.advisor_failures = Counter(
            "rollout_advisor_failures", "Advisor calls that gave no valid advice.", registry=r
        )
        self.quarantined = Counter(
            "rollout_outputs_quarantined",
            "Outbox messages set aside because they can never be published, by topic.",
            ["topic"],
            registry=r,
        )
        self.contained = Counter(
            "rollout_contained_failures",
            "Failures confined to one input or one flag instead of stopping the daemon, by where.",
            ["where"],
            registry=r,
        )

    def _add_http(self, r: CollectorRegistry) -> None:
        """The HTTP API's: webhooks, the event intake, refused keys and rates."""
        self.webhooks = Counter(
            "rollout_webhooks",
            "Monitor webhook deliveries, by source and outcome.",
            ["source", "outcome"],
            registry=r,
        )
        self.intake_batches = Counter(
            "rollout_intake_batches",
            "Batches of events sent over HTTP, by outcome (accepted, duplicate, invalid, "
            "too_large, rate_limited, unavailable...).",
            ["outcome"],
            registry=r,
        )
        self.intake_events = Counter(
            "rollout_intake_events",
            "Events sent over HTTP that the broker acknowledged (duplicates not counted).",
            registry=r,
        )
        self.app_refusals = Counter(
            "rollout_app_access_refused",
            "Requests to OFREP and the event intake refused for their app key or origin, "
            "by scope and outcome (no_key, unknown_key, revoked_key, wrong_scope, origin...).",
            ["scope", "outcome"],
            registry=r,
        )
        self.ofrep_rate_limited = Counter(
            "rollout_ofrep_rate_limited",
            "OFREP evaluation requests refused (429) past their client's rate, by route "
            "(one, bulk).",
            ["route"],
            registry=r,
        )
        self.reads_rate_limited = Counter(
            "rollout_http_reads_rate_limited",
            "Requests to /rollouts, /rollouts/{flag} and its history refused (429) past their "
            "client's rate (http.reads_per_second).",
            registry=r,
        )

    def count_app_refusal(self, scope: str, outcome: str) -> None:
        """Count a request refused for its app key or browser origin."""
        self.app_refusals.labels(scope, outcome).inc()

    def count_actions(self, flag: str, rollout: Rollout | None, actions: list[Action]) -> None:
        """Log and count what the machine decided for ``flag``."""
        if rollout is not None and not rollout.phase.active:
            self.guardrails.forget(flag)
        for action in actions:
            if isinstance(action, RecordDecision):
                self.decisions.labels(action.action, action.outcome).inc()
                log.info(
                    "decision",
                    flag=flag,
                    action=action.action,
                    outcome=action.outcome,
                    reason=action.reason,
                    phase=action.phase_after,
                    stage=action.stage,
                )
            elif isinstance(action, RaiseAlert):
                log.warning("alert", flag=flag, kind=action.kind, summary=action.summary)
            elif rollout is not None:
                self.percent.labels(flag).set(rollout.percent)

    def owned(self, role: str, partitions: Iterable[int]) -> None:
        """Show exactly ``partitions`` as owned in ``role``; drop the series of the others."""
        now, before = set(partitions), self._owned.get(role, set())
        if role == "events":
            self.partitions.set(len(now))
        for p in before - now:
            with contextlib.suppress(KeyError):
                self.owned_partitions.remove(role, str(p))
        for p in now:
            self.owned_partitions.labels(role, str(p)).set(1)
        self._owned[role] = now

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


WRITE_OUTCOMES = ("applied", "in_place", "held", "failed")
"""The only ``outcome`` label values of ``rollout_backend_writes`` (see :class:`BackendMetrics`)."""
UNANSWERED_CAUSES = ("deadline", "unreadable", "connection", "refused")
"""The only ``cause`` label values of ``rollout_backend_unanswered`` (:class:`BackendMetrics`)."""


class BackendMetrics:
    """The flag-backend sync: writes, drifts, reachability, decision-to-served latency.

    No ``flag`` label: the sync handles every flag an instance owns, so the
    series would grow with the flags; per-flag detail is in the log and in
    the ``backend_*`` alerts. Outcomes of a pass over a flag that had something
    to do: ``applied`` (written, Unleash confirmed), ``in_place`` (Unleash
    already served it; only recorded), ``held`` (not written: a person's change
    holds the flag until the rollout moves on), ``failed`` (the pass stopped
    before Unleash was known to serve the decision; it is retried).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.writes = Counter(
            "rollout_backend_writes",
            "Flag-backend sync passes that had something to do, by outcome.",
            ["outcome"],
            registry=r,
        )
        for outcome in WRITE_OUTCOMES:  # every outcome exported from the start, at 0
            self.writes.labels(outcome)
        self.drifts = Counter(
            "rollout_backend_drifts",
            "Changes made by hand in the flag backend, found and left in place.",
            registry=r,
        )
        self.unanswered = Counter(
            "rollout_backend_unanswered",
            "Flag-backend calls that got no usable answer, by cause: no whole answer within"
            " the deadline, an answer that is not the backend's (a login page), no connection,"
            " or a status saying it cannot serve now (5xx, 429, a refused token).",
            ["cause"],
            registry=r,
        )
        for cause in UNANSWERED_CAUSES:
            self.unanswered.labels(cause)
        self.unreachable = Gauge(
            "rollout_backend_unreachable",
            "1 while the flag backend cannot be reached (its flags keep their last state).",
            registry=r,
        )
        self.apply_seconds = Histogram(
            "rollout_backend_apply_latency_seconds",
            "Time from a rollout's decision to the flag backend serving it.",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
        )

    def wrote(self, outcome: str) -> None:
        """Count one pass of ``outcome`` (one of :data:`WRITE_OUTCOMES`)."""
        self.writes.labels(outcome).inc()

    def applied(self, seconds: float) -> None:
        """A write landed ``seconds`` after its decision (clocks of two hosts: clamped at 0)."""
        self.writes.labels("applied").inc()
        self.apply_seconds.observe(max(0.0, seconds))


class OtlpHttpMetrics:
    """OTLP/HTTP's (``POST /v1/traces``, ``POST /v1/logs``): exports, items, refusals, events;
    and the evaluations either OTLP path ignored."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.exports = Counter(
            "rollout_otlp_http_exports",
            "OTLP exports sent over HTTP, by signal (traces, logs) and outcome (accepted, "
            "partial, not_an_export, too_large, rate_limited, unavailable, busy...).",
            ["signal", "outcome"],
            registry=r,
        )
        self.items = Counter(
            "rollout_otlp_http_items",
            "Spans and log records in the OTLP exports taken, by signal.",
            ["signal"],
            registry=r,
        )
        self.refused = Counter(
            "rollout_otlp_http_refused",
            "Spans, log records and evaluations of OTLP exports not counted, by signal and "
            "reason (unknown_variant, evaluation_error, hostile_attribute, malformed, "
            "bad_time...).",
            ["signal", "reason"],
            registry=r,
        )
        self.events = Counter(
            "rollout_otlp_http_events",
            "Events OTLP exports made, acknowledged on the events topic, by type.",
            ["type"],
            registry=r,
        )
        self.evaluations = Counter(
            "rollout_otlp_http_evaluations",
            "Flag evaluations read from OTLP counted with a caveat, by kind: request_level "
            "(no unit: the trace is the unit), guarded (too near a version change: not "
            "counted), unmatched (no span of their request joined: no outcome), changed "
            "(sent before with other content: the first copy kept).",
            ["kind"],
            registry=r,
        )
        self.ignored = Counter(
            "rollout_otlp_ignored_evaluations",
            "Flag evaluations read from OTLP (path: http, kafka; signal: traces, logs) of flags "
            "no rollout published, an app's ordinary flags: nothing to count them for, no "
            "error, not dead-lettered.",
            ["path", "signal"],
            registry=r,
        )
