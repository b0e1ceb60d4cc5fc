"""A new exception in the new flow, named and rolled back, in Node, Go and Java behind the
real Collector on Kafka.

app → OTLP/HTTP → the Collector ``make otelcol`` builds → Apache Kafka → the daemon. Each app
is a checkout service with no code of ours: OpenFeature through OFREP, and the OpenTelemetry
its language's users run. At its flow's ``--missing`` rate, pricing the cart misses the
cart's price: an exception type of the app's own, which the handler catches (the cart is
priced at list price, the request succeeds: no error rate sees it) and records on the
request's span as that language's OpenTelemetry users record one:

* Node (``tests/otel/node_app.mjs``, the SDK for Node): a ``PriceMissingError`` thrown in
  ``price``, recorded with ``span.recordException(err)``; its stack is V8's, from where the
  error was made.
* Go (``tests/otel/go``, otelhttp and the Go SDK): a ``*PriceMissingError`` returned by
  ``price``, recorded with ``span.RecordError(err, trace.WithStackTrace(true))``. A Go error
  carries no stack: the trace is the goroutine's where the error is recorded, the handler's
  closure below the SDK's own frames.
* Java (``tests/otel/java``, under the OpenTelemetry Java agent): a
  ``PriceMissingException`` thrown in ``price``, recorded with
  ``Span.current().recordException(e)``.

All six apps (a faulty and a healthy twin per language) export to one Collector and are
rolled out at once by one daemon. The faulty twin's new flow alone misses prices, on 1% of
its requests; the healthy twin's two flows both do, at 1%. In both, each flow fails 5% of
its requests (500) as the apps do by default; Java's agent names the route on its server
span, and those failures by it (Node's app and Go's otelhttp name none). Both plans guard
``error_rate`` and ``new_failures``. Each faulty twin is rolled back on ``new_failures``:
its reason, its evidence, the HTTP status and ``rolloutctl status`` name the exception by
its type and top frame, new in treatment, with an example whose cart number is scrubbed,
and Java's 500s counted in both arms, not regressed. Each healthy twin completes, its
exception counted and never regressed.

A faulty twin is rolled back once its treatment has about 22 of these exceptions against
none, some 2,200 requests of each arm: 70 to 90 s of its 50% stage on the shared 2-core
machine (load 10), where each faulty app took 50 to 65 requests a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.rollouts.plan_parts import Guardrail
from controller.dev.otelcol import Collector
from controller.settings import RedisSettings
from tests.conftest import _service_unavailable
from tests.otel.java_app import JavaApp, java_app, otel_env
from tests.otel.load import AppProcess, start_all
from tests.scenarios.harness import Observed, Scenario
from tests.scenarios.otel.test_otel_apps import _guarded, _versions
from tests.scenarios.otel.test_otel_apps_go import go_app_binary
from tests.scenarios.otel.test_otel_apps_java import READY_SECONDS
from tests.scenarios.otel.test_otel_crashes import completing, held
from tests.scenarios.otel.test_otel_new_failures import served
from tests.scenarios.otel.worlds import collector_world, start_reading_otlp
from tests.scenarios.statistics.test_latency_at_the_preview import rolloutctl
from tests.support.backing.services import ServiceUnavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODE_APP = Path(__file__).resolve().parents[2] / "otel" / "node_app.mjs"
GUARDRAILS = [Guardrail(metric="error_rate"), Guardrail(metric="new_failures")]
FAULTY, HEALTHY = "0,0.01", "0.01,0.01"
"""Each twin's ``--missing`` rates (control, treatment): 1% of the new flow's requests, and
of the old flow's too in the healthy twin."""
SLOW = "200,200"
"""The healthy twins' latency in each flow (ms; no plan guards it): each load runs until every
rollout has ended, so the twins that complete first take at most 40 requests a second
(8 clients) of the CPU the faulty twins' rollbacks wait on."""


@dataclass(frozen=True)
class Language:
    """One language's twins, and the fingerprint its new exception is named by."""

    name: str
    new: str
    """The exception's type and top frame, as the daemon names them from the real trace."""
    example: str
    """``no price for cart-123`` as the store keeps it: the cart's number scrubbed."""
    shared: tuple[str, ...] = ()
    """The failures both flows have that are named: the 500s, where the span has a route."""

    @property
    def faulty(self) -> str:
        return f"{self.name}.pricing-faulty"

    @property
    def healthy(self) -> str:
        return f"{self.name}.pricing"


NODE = Language(
    "node",
    "PriceMissingError in otel/node_app.mjs:price",
    "PriceMissingError: no price for cart-<n>",
)
GO = Language(
    "go",
    "*main.PriceMissingError in checkout/checkout.go:handler.func1",
    "*main.PriceMissingError: no price for cart-<n>",
)
JAVA = Language(
    "java",
    "checkout.PriceMissingException in checkout/Checkout.java:price",
    "checkout.PriceMissingException: no price for cart-<n>",
    ("5xx GET /checkout",),
)
LANGUAGES = (NODE, GO, JAVA)


@dataclass(frozen=True)
class Runtimes:
    """Node and its packages, the Go app's binary, Java and its app."""

    node: tuple[str, Path]
    go: Path
    java: JavaApp


@pytest.fixture
def runtimes(pytestconfig: pytest.Config, otel_node: tuple[str, Path], otelcol: Path) -> Runtimes:
    """What the three apps run on; each missing one fails the test under CI."""
    try:
        return Runtimes(otel_node, go_app_binary(), java_app())
    except ServiceUnavailable as exc:
        _service_unavailable(pytestconfig, exc)


@pytest.fixture
async def world(
    runtimes: Runtimes, real_kafka: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[Scenario, Collector]]:
    """The operator's topics, a Collector writing spans and logs to them, and a scenario
    whose daemon reads them."""
    async with collector_world(
        kafka=real_kafka,
        redis_url=redis_url,
        prefix=redis_namespace,
        workdir=tmp_path,
        label="nfl",
        partitions={"events": 4, "commands": 2, "spans": 2, "logs": 2},
    ) as made:
        yield made


def _twins(language: Language) -> tuple[tuple[str, list[str]], ...]:
    """The language's two flags, each with its app's options."""
    healthy = ["--missing", HEALTHY, "--latency-ms", SLOW]
    return (language.faulty, ["--missing", FAULTY]), (language.healthy, healthy)


def _launches(
    runtimes: Runtimes, ofrep: str, otlp: str
) -> dict[str, Coroutine[Any, Any, AppProcess]]:
    """Each twin's start, the JVMs' first: its app served by ``ofrep``, exporting to
    ``otlp``."""
    node, home = runtimes.node
    out: dict[str, Coroutine[Any, Any, AppProcess]] = {}
    for flag, options in _twins(JAVA):
        command = runtimes.java.command(ofrep, flag, *options)
        out[flag] = AppProcess.start(
            command, name=flag, env=otel_env(otlp), ready_seconds=READY_SECONDS
        )
    for flag, options in _twins(NODE):
        command = [node, str(NODE_APP), ofrep, otlp, flag, *options]
        out[flag] = AppProcess.start(command, name=flag, env={"OFREP_NODE_HOME": str(home)})
    for flag, options in _twins(GO):
        out[flag] = AppProcess.start([str(runtimes.go), ofrep, otlp, flag, *options], name=flag)
    return out


@pytest.mark.timeout(600)
async def test_a_new_exception_in_node_go_and_java_is_named_and_rolled_back_behind_the_collector(
    world: tuple[Scenario, Collector], runtimes: Runtimes
) -> None:
    scenario, collector = world
    base = start_reading_otlp(scenario)
    # Given a faulty and a healthy twin of a checkout service in each of Node, Go and Java,
    # exporting to the Collector: the faulty twin's new flow alone misses 1% of its carts'
    # prices (handled: the request succeeds), the healthy twin's two flows both do
    apps = await start_all(_launches(runtimes, base, collector.otlp_http_url))
    # When all six are rolled out at once while users send them requests
    plans = {}
    for language in LANGUAGES:
        plans[language.faulty] = held(GUARDRAILS)
        plans[language.healthy] = completing(GUARDRAILS)
    loads = await _guarded(scenario, apps, plans)
    for flag, load in loads.items():
        assert load.failures == 0, (flag, load.failed)
        assert load.statuses[200] > 0, (flag, load.statuses)
    # Then each faulty twin was rolled back on the exception new in its treatment, named by
    # its type and top frame, and each healthy twin completed
    for language in LANGUAGES:
        _assert_rolled_back_naming_it(scenario.observed, language)
        _assert_completed_alike(scenario.observed, language)
        counted = await _failures_counted(scenario, language.healthy)
        assert sum(_others(counted, language).values()) <= RARE, counted
        assert counted[language.new] > 0, counted
    # ... as the status the CLI reads says, and rolloutctl status under "what broke:"; and
    # of each completed twin, with no control at 100%, that nothing broke
    await _assert_said(base)


async def _assert_said(base: str) -> None:
    """``GET /rollouts/FLAG`` names each faulty twin's new exception first, and
    ``rolloutctl status`` under "what broke:"; of each healthy twin it says nothing broke."""
    faulty = [language.faulty for language in LANGUAGES]
    statuses = await asyncio.gather(*(served(base, flag) for flag in faulty))
    for language, status in zip(LANGUAGES, statuses, strict=True):
        assert status["evidence"]["failures"][0]["name"] == language.new, status
    flags = [*faulty, *(language.healthy for language in LANGUAGES)]
    texts = await asyncio.gather(*(rolloutctl(base, "status", flag) for flag in flags))
    for language, text in zip(LANGUAGES, texts[:3], strict=True):
        broke = [line for line in text.splitlines() if line.strip().startswith("what broke:")]
        assert len(broke) == 1, text
        assert f"new in treatment: `{language.new}`" in broke[0], text
    for text in texts[3:]:
        assert "what broke:" not in text, text


def _assert_rolled_back_naming_it(observed: Observed, language: Language) -> None:
    """The faulty twin rolled back on new_failures, its reason naming the new exception by
    its type and top frame, new in treatment, with a scrubbed example; its evidence the
    same: counted in treatment alone, and the failures both flows have not regressed."""
    rollback = observed.decision_where(flag=language.faulty, action="rollback")
    assert rollback is not None, observed.decision_where(flag=language.faulty)
    reason = rollback["reason"]
    assert rollback["evidence"]["breach"] == "new_failures", reason
    assert f"new in treatment: `{language.new}`" in reason, reason
    assert f"example: `{language.example}`" in reason, reason
    failures = rollback["evidence"]["failures"]
    first, *others = failures
    named = (first["name"], first["example"], first["control"])
    assert named == (language.new, language.example, 0), failures
    assert first["treatment"] > 0, failures
    assert first["regressed"] is True, failures
    expected = [seen for seen in others if seen["name"] in language.shared]
    assert [seen["name"] for seen in expected] == list(language.shared), failures
    for seen in expected:
        assert min(seen["treatment"], seen["control"]) > 0, failures
    for seen in others:
        assert not seen["regressed"], failures
    assert sum(_others(_totals(others), language).values()) <= RARE, failures


def _assert_completed_alike(observed: Observed, language: Language) -> None:
    """The healthy twin completed; at each stage that compared arms its exception, if named
    yet, never regressed; at 100%, with no control, none is named."""
    done = observed.decision_where(flag=language.healthy, action="complete")
    assert done is not None, observed.decision_where(flag=language.healthy, action="rollback")
    assert "failures" not in done["evidence"], done["evidence"]["failures"]
    advanced = [
        d for d in observed.decisions if d["flag"] == language.healthy and d["action"] == "advance"
    ]
    named = [seen for d in advanced for seen in d["evidence"].get("failures", [])]
    assert sum(_others(_totals(named), language).values()) <= RARE, advanced
    assert not any(seen["regressed"] for seen in named), named


RARE = 2
"""At most this many of a twin's failures are named other than its language's new and
shared ones: a real runtime also records what a busy machine does to it (Java's
`IOException` in `write0`, as it answered on a connection the load's client had just
reset, was seen once in a run of the suite with four workers)."""


def _others(counts: Mapping[str, int], language: Language) -> dict[str, int]:
    """The counts of fingerprints that are neither ``language``'s new nor shared ones."""
    return {n: c for n, c in counts.items() if n not in {language.new, *language.shared}}


def _totals(named: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Each fingerprint's most failures (both arms) in any of the evidence's ``named``."""
    out: dict[str, int] = {}
    for seen in named:
        out[seen["name"]] = max(out.get(seen["name"], 0), seen["treatment"] + seen["control"])
    return out


async def _failures_counted(scenario: Scenario, flag: str) -> dict[str, int]:
    """Each fingerprint's failures the store counted for ``flag``, both arms together."""
    async with connect(RedisSettings(url=scenario.redis_url)) as client:
        store = RedisAggregateStore(
            client,
            settings=RedisSettings(key_prefix=scenario.prefix),
            topic=scenario.topics["events"],
        )
        got = await store.read(flag, _versions(scenario, flag))
    out: dict[str, int] = {}
    for arm in (got.treatment, got.control):
        for counts in arm.failed.values():
            out[counts.name] = out.get(counts.name, 0) + counts.total
    return out
