"""What the demo runs: its flags, their rings, the simulated users and fault, the config.

Pure: no I/O. Every choice that makes the demo finish within seconds and end
the same way every time lives here, with the reason next to it.

Every flag is released in rings: the ``staff`` segment (an id list), the
``beta`` segment (a rule), Thailand at 25%, then everyone at 50% and 100%
(see docs/architecture.md, *Rings*). The first flag's treatment fails four
times as often as its control from the start, so its first ring catches it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from controller.core.rollouts import Guardrail, Limits, Plan, Stage
from controller.core.wire import Arm

KEY_ID = "demo-operator"
FLAG_STATE_KEY_ID = "demo-controller"
"""The key the demo's controller signs flag states with, as its apps know it."""
ACTOR = "demo"
UNITS = 20_000
"""Distinct users per flag."""
STAFF = tuple(f"user-{i}" for i in range(0, UNITS, 100))
"""The ``staff`` segment: an id list of 200 users, put as ``rolloutctl segment put --ids-file``."""
BETA_RULE = "beta == true"
"""The ``beta`` segment: a rule over the context, put as ``rolloutctl segment put --rule``."""
SEGMENTS: dict[str, str | tuple[str, ...]] = {"staff": STAFF, "beta": BETA_RULE}
RINGS: tuple[tuple[str | None, float], ...] = (
    ('user_id in segment("staff")', 100.0),
    ('user_id in segment("beta")', 100.0),
    ('country == "TH"', 25.0),
    (None, 50.0),
    (None, 100.0),
)
"""Each stage's audience (None: everyone) and the percent of it served treatment."""
PERCENTS = tuple(percent for _audience, percent in RINGS)
FIRST_RING_SECONDS = 6
"""Minimum time in the staff ring: long enough to catch the faulty flag there."""
STAGE_SECONDS = 4
"""Minimum time in each later stage but the last."""
MIN_UNITS_PER_ARM = 20
ALPHA = 0.01
"""The false-rollback rate of a healthy flag over the whole ladder (each stage is
peeked at continuously; the plan splits it over its tests and stages)."""
BASE_ERROR_RATE = 0.02
FAULT_FACTOR = 4.0
ERROR_RATE_LIMIT = 0.03
"""The staff and beta rings serve all of their audience, so no control is left to
compare with: their gates test the treated users' error rate against this limit.
Staff send STAFF_SHARE of the requests (240/s per flag with two flags); a faulty
treatment's 8% then crosses the sequential bound over 3% (at ALPHA split over 2
tests and 5 stages) after about 2.6 s (p50), 3.8 s (p95) and 4.6 s (p99) of
requests (3.2, 4.8 and 5.6 s with five flags): inside the first ring."""
CONVERSION_RATE = 0.03
REQUESTS_PER_SECOND = 800
"""Per flag; each request is an exposure and a request event (~1,600 events/s)."""
MAX_TOTAL_REQUESTS_PER_SECOND = 3200
STAFF_SHARE = 0.30
"""Staff use the app all day: their 200 accounts send this share of the requests."""
BETA_SHARE = 0.20
"""Beta testers (5% of users) send this share; the rest come from every user alike."""
BETA_USERS = 0.05
COUNTRIES = ("TH", "TH", "TH", "US", "US", "DE", "JP", "BR", "IN", "GB")
PLANS = ("free", "free", "free", "pro", "pro", "enterprise")

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
    """The rings (staff → beta → Thailand 25% → everyone 50% → 100%) in seconds, not days."""
    last = len(RINGS) - 1
    return Plan(
        name="demo-rings",
        stages=[
            Stage.model_validate(
                {
                    "percent": percent,
                    "min_duration": timedelta(seconds=_seconds(i, last)),
                    "min_units_per_arm": 0 if i == last else MIN_UNITS_PER_ARM,
                }
                | ({} if audience is None else {"audience": audience})
            )
            for i, (audience, percent) in enumerate(RINGS)
        ],
        guardrails=[Guardrail(metric="error_rate")],
        limits=Limits(error_rate=ERROR_RATE_LIMIT),
        alpha=ALPHA,
        no_traffic_grace=timedelta(seconds=60),
    )


def _seconds(stage: int, last: int) -> int:
    if stage == last:
        return 0
    return FIRST_RING_SECONDS if stage == 0 else STAGE_SECONDS


def error_rate(*, faulty: bool, arm: Arm) -> float:
    """How often a request fails: the faulty flag's treatment fails 4x as often, from the start."""
    if faulty and arm is Arm.TREATMENT:
        return BASE_ERROR_RATE * FAULT_FACTOR
    return BASE_ERROR_RATE


@dataclass(frozen=True, slots=True)
class Users:
    """The simulated users: each one's context, and who sends how many of the requests."""

    contexts: tuple[dict[str, Any], ...]
    staff: tuple[int, ...]
    beta: tuple[int, ...]

    def pick(self, rng: random.Random) -> dict[str, Any]:
        """The user of one request: staff, a beta tester, or anyone, by their shares."""
        draw = rng.random()
        if draw < STAFF_SHARE:
            return self.contexts[_one(rng, self.staff)]
        if draw < STAFF_SHARE + BETA_SHARE:
            return self.contexts[_one(rng, self.beta)]
        return self.contexts[rng.randrange(len(self.contexts))]


def users(seed: int = 26) -> Users:
    """:data:`UNITS` users with a ``user_id``, a ``country``, a ``plan`` and, for some, ``beta``."""
    rng = random.Random(seed)  # noqa: S311 - a simulation, not a secret
    staff = frozenset(STAFF)
    contexts = []
    for i in range(UNITS):
        context: dict[str, Any] = {"user_id": f"user-{i}"}
        context |= {"country": rng.choice(COUNTRIES), "plan": rng.choice(PLANS)}
        if rng.random() < BETA_USERS:
            context["beta"] = True
        contexts.append(context)
    return Users(
        contexts=tuple(contexts),
        staff=tuple(i for i, c in enumerate(contexts) if c["user_id"] in staff),
        beta=tuple(i for i, c in enumerate(contexts) if c.get("beta") is True),
    )


def _one(rng: random.Random, indexes: Sequence[int]) -> int:
    return indexes[rng.randrange(len(indexes))]


def topic_names(run_id: str) -> dict[str, str]:
    """The run's own topics, so that a shared broker keeps runs apart."""
    _check_run_id(run_id)
    names = (
        "events",
        "commands",
        "monitors",
        "flag_state",
        "segments",
        "decisions",
        "alerts",
        "dlq",
    )
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
