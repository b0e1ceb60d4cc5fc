"""Prometheus metrics of the daemon, on a registry of its own (no global state)."""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controller.core.rollout import Action, RaiseAlert, RecordDecision, Rollout

log = structlog.get_logger("controller.daemon.engine")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Every metric the controller exports; one instance, injected where it is counted."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "rollout_ingest_events", "Events folded into aggregates (exactly once).", registry=r
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
        self.partitions = Gauge(
            "rollout_ingest_partitions", "Events partitions this instance owns.", registry=r
        )
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

        self.webhooks = Counter(
            "rollout_webhooks",
            "Monitor webhook deliveries, by source and outcome.",
            ["source", "outcome"],
            registry=r,
        )

    def count_actions(self, flag: str, rollout: Rollout | None, actions: list[Action]) -> None:
        """Log and count what the machine decided for ``flag``."""
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

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)
