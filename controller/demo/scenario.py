"""What the demo runs: its flags, their plan, the simulated fault and the controller's config.

Pure: no I/O. Every choice that makes the demo finish within seconds and end
the same way every time lives here, with the reason next to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from controller.core.messages import Arm
from controller.core.plan import Guardrail, Plan, Stage

KEY_ID = "demo-operator"
FLAG_STATE_KEY_ID = "demo-controller"
"""The key the demo's controller signs flag states with, as its apps know it."""
ACTOR = "demo"
PERCENTS = (1.0, 5.0, 25.0, 50.0, 100.0)
STAGE_SECONDS = 5
"""Minimum time per stage. At the request rate below, a tripled error rate in
a 25% treatment arm crosses the sequential bound (at ALPHA split over the 4
compared stages) after about 3.0 s (p50) and 5.3 s (p95), so a faulty flag
is caught before it leaves the 50% stage."""
MIN_UNITS_PER_ARM = 20
ALPHA = 0.01
"""The false-rollback rate of a healthy flag over the whole ladder (each stage is
peeked at continuously; the plan splits it over its stages)."""
BASE_ERROR_RATE = 0.02
FAULT_FACTOR = 3.0
CONVERSION_RATE = 0.03
REQUESTS_PER_SECOND = 800
"""Per flag; each request is an exposure and a request event (~1,600 events/s)."""
MAX_TOTAL_REQUESTS_PER_SECOND = 3200
UNITS = 20_000
"""Distinct units per flag: enough that 1% of them fill the first stage's arm."""

_FAULTY = "checkout.payment-provider-v2"
_HEALTHY = (
    "search.ranking-model-v7",
    "profile.avatar-upload-resumable",
    "cart.recommendations-carousel",
    "onboarding.progressive-signup-form",
)
_RUN_ID = re.compile(r"^[a-z0-9]{4,16}$")


@dataclass(frozen=True, slots=True)
class DemoFlag:
    """A flag the demo rolls out, and whether its treatment turns faulty."""

    name: str
    faulty: bool


def demo_flags(count: int) -> tuple[DemoFlag, ...]:
    """``count`` flags: the first one is faulty, the others are healthy."""
    if not 1 <= count <= 1 + len(_HEALTHY):
        raise ValueError(f"the demo runs 1 to {1 + len(_HEALTHY)} flags, not {count}")
    healthy = (DemoFlag(name, faulty=False) for name in _HEALTHY[: count - 1])
    return (DemoFlag(_FAULTY, faulty=True), *healthy)


def requests_per_second(flag_count: int) -> int:
    """Requests per second per flag: the same for few flags, capped in total for many."""
    return min(REQUESTS_PER_SECOND, MAX_TOTAL_REQUESTS_PER_SECOND // max(1, flag_count))


def demo_plan() -> Plan:
    """The default ladder (1% → 5% → 25% → 50% → 100%) in seconds instead of hours."""
    last = len(PERCENTS) - 1
    return Plan(
        name="demo",
        stages=[
            Stage(
                percent=percent,
                min_duration=timedelta(seconds=0 if i == last else STAGE_SECONDS),
                min_units_per_arm=0 if i == last else MIN_UNITS_PER_ARM,
            )
            for i, percent in enumerate(PERCENTS)
        ],
        guardrails=[Guardrail(metric="error_rate")],
        alpha=ALPHA,
        no_traffic_grace=timedelta(seconds=60),
    )


def error_rate(*, faulty: bool, arm: Arm, percent: float, fault_at: float) -> float:
    """How often a request fails: treatment of the faulty flag fails 3x once at ``fault_at``%."""
    if faulty and arm is Arm.TREATMENT and percent >= fault_at:
        return BASE_ERROR_RATE * FAULT_FACTOR
    return BASE_ERROR_RATE


def topic_names(run_id: str) -> dict[str, str]:
    """The run's own topics, so that a shared broker keeps runs apart."""
    _check_run_id(run_id)
    names = ("events", "commands", "monitors", "flag_state", "decisions", "alerts", "dlq")
    return {name: f"rollout-demo.{run_id}.{name.replace('_', '-')}" for name in names}


def key_prefix(run_id: str) -> str:
    """The run's own Redis key prefix."""
    _check_run_id(run_id)
    return f"rcdemo:{run_id}"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the controller finds its services, and its own HTTP port."""

    kafka: str
    redis: str
    llm: str | None
    http_port: int


def controller_config(
    run_id: str, endpoints: Endpoints, *, public_key: str, advisor_mode: str, model: str
) -> dict[str, Any]:
    """The YAML settings of the demo's controller (``rollout-controller run --config``)."""
    llm: dict[str, Any] = {"mode": "off"}
    if endpoints.llm is not None and advisor_mode != "off":
        llm = {
            "mode": advisor_mode,
            "base_url": endpoints.llm,
            "model": model,
            # llama-cpp-python constrains replies with a schema under json_object.
            "response_format": "json_object",
            # A 135M model on a busy laptop: slow, but the gates must not give up on it.
            "timeout_seconds": 30.0,
            "hold_seconds": 2.0,
        }
    return {
        "kafka": {
            "bootstrap_servers": endpoints.kafka,
            "client_id": "rollout-demo-controller",
            "group_id": f"rollout-demo-{run_id}",
            "events_partitions": 4,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 500,
        },
        "topics": topic_names(run_id),
        "redis": {
            "url": endpoints.redis,
            "key_prefix": key_prefix(run_id),
            "aggregate_ttl_seconds": 3600,
        },
        "ingest": {"fetch_timeout_ms": 100, "max_batch_records": 2000},
        "engine": {
            "gate_interval_seconds": 0.2,
            "sweep_interval_seconds": 1.0,
            "operator_keys": {KEY_ID: public_key},
        },
        "llm": llm,
        "http": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": endpoints.http_port,
            "health_port": 0,  # any free port: the demo asks the main one
        },
        # Stages of seconds: a history point every half second draws them.
        "history": {"min_interval_seconds": 0.5},
        "log": {"level": "info", "format": "json"},
        "shutdown_grace_seconds": 10.0,
    }


def _check_run_id(run_id: str) -> None:
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id must be 4-16 lowercase letters or digits, not {run_id!r}")
