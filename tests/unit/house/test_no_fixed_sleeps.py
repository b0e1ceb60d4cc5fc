"""No test waits a fixed time for an outcome.

A test that sleeps and then asserts that something happened (or did not)
bets that the time was enough, and on a loaded two-core machine loses the
bet now and then; passing, it waits the whole time. It waits on the positive
signal instead (:func:`tests.support.waiting.eventually`); to show that
nothing happened, it first sees the next thing happen (a later marker
counted, a later command decided), then asserts the absence.

A sleep stays where it is the thing simulated, not a wait for an outcome: an
app pacing its requests or retrying after a refusal, a server stalling on
purpose, an outage or an idle stretch that the scenario is about, a poll
inside a helper that waits on a condition with a deadline. Each such place
is named in :data:`PACING` with why it sleeps.

The rule, read from every module under ``tests/``: a call of
``asyncio.sleep``, ``time.sleep``, ``anyio.sleep``, a bare ``sleep`` or a
page's ``wait_for_timeout``, with any argument but the literal ``0`` (a turn
of the event loop, not a length of time), is allowed only inside a function
named in :data:`PACING`. The test apps in other languages are read line by
line: a ``setTimeout(`` (JavaScript), ``time.Sleep(`` (Go) or
``Thread.sleep(`` (Java) is allowed only on a line named in
:data:`PACING_LINES`. A place named that no longer sleeps is reported too, so
that the lists shrink with the code.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]
ROOT = TESTS.parent
BUILT = {"node_modules", "target", "__pycache__"}
"""Folders of installed packages and build outputs: not the project's code."""

SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
"""What names a place: the functions and classes a sleep is in."""
SLEEPS = {("asyncio", "sleep"), ("time", "sleep"), ("anyio", "sleep")}
OTHER_LANGUAGES = {
    ".js": re.compile(r"\bsetTimeout\("),
    ".mjs": re.compile(r"\bsetTimeout\("),
    ".cjs": re.compile(r"\bsetTimeout\("),
    ".go": re.compile(r"\btime\.Sleep\("),
    ".java": re.compile(r"\bThread\.sleep\("),
}

PACING: dict[tuple[str, str], str] = {
    # the instrumented apps the OpenTelemetry tests run, and the load sent to them
    ("tests/otel/python_app.py", "main.Checkout.do_GET"): "the app's latency for a request",
    ("tests/otel/flask_app.py", "charge"): "the app's pause before its one retry",
    ("tests/otel/flask_app.py", "_app.checkout"): "the app's latency for a request",
    ("tests/otel/load.py", "Load._send"): "a user's pause after a failed request",
    # apps, exporters and clients pacing their sends or retrying as real ones do
    ("tests/integration/rig.py", "Rig.produce_events"): "a producer's pace",
    ("tests/integration/otlp/test_otlp_http.py", "export"): "an exporter honouring Retry-After",
    ("tests/integration/otlp/test_otlp_kafka_daemon.py", "OtlpDaemon.produce"): "a producer's pace",
    ("tests/integration/http/test_http_intake.py", "send"): "an app's retry after a refusal",
    ("tests/integration/http/test_health_flood.py", "Flood.client"): "a flood's reconnects",
    ("tests/integration/http/test_health_flood.py", "_probe"): "a kubelet's probe period",
    (
        "tests/integration/ofrep/test_ofrep_stream_release.py",
        "test_streams_of_reset_clients_are_free_for_their_reconnects_at_once.reconnect",
    ): "a client's reconnects while refused, bound by the test's deadline",
    ("tests/integration/ofrep/test_ofrep_stream_release.py", "follow"): "EventSource's retry",
    ("tests/integration/ofrep/test_ofrep_stream_release.py", "read_slowly"): "a slow reader",
    (
        "tests/integration/ingest/test_stop_rebalance.py",
        "lease_held_by_a_peer.renew",
    ): "a peer renewing its lease",
    (
        "tests/integration/kafka/test_emitter_outage.py",
        "_flood_while_down",
    ): "a flood in bursts, the sender failing in between",
    ("tests/integration/kafka/test_outbox_leader_change.py", "Publishing.run"): "a retry pause",
    (
        "tests/integration/kafka/test_sync_outage.py",
        "test_a_broker_outage_blocks_no_request",
    ): "the load's baseline span, and the memory sampled over the outage",
    ("tests/scenarios/harness.py", "Scenario._observer"): "a consumer's retry until a broker",
    ("tests/scenarios/harness.py", "Scenario._app"): "the simulated apps' pace",
    ("tests/scenarios/prometheus/test_error_budget.py", "service_traffic"): "a service's pace",
    ("tests/scenarios/otel/test_otlp_flood.py", "Flood.client"): "a flood's retry pause",
    ("tests/scenarios/otel/test_otlp_flood.py", "probe"): "a kubelet's probe period",
    ("tests/scenarios/brokers/test_held_evidence.py", "_steady"): "steady traffic's pace",
    ("tests/scenarios/statistics/test_latency_at_the_preview.py", "App.serve"): "a send rate",
    ("tests/scenarios/statistics/test_clustered_users.py", "serve"): "an app's request rate",
    ("tests/scenarios/statistics/test_one_unit.py", "serve"): "an app's request rate",
    ("tests/scenarios/unleash/test_unleash.py", "_serve_traffic"): "an app's request rate",
    ("tests/scenarios/apps/test_intake_kills.py", "App.send"): "an app's retry after a refusal",
    ("tests/scenarios/console/test_operator_views.py", "ring_app"): "the ring's apps' pace",
    ("tests/scenarios/console/test_hostile_failures.py", "failing_app"): "the apps' pace",
    ("tests/scenarios/store_loss/kit.py", "App.run"): "an app's polling pace",
    ("tests/support/backing/prometheus_kit.py", "serve_traffic"): "an app's request rate",
    ("tests/support/clients/flooding.py", "_sender"): "a flood's retry pause",
    ("tests/support/clients/flooding.py", "_report"): "the flood's report period",
    ("tests/support/clients/raw_streams.py", "NonReader.opened"): "a client's retry while refused",
    ("tests/support/otel/relay.py", "Relay.send"): "a relay's pace",
    ("tests/support/otel/http_relay.py", "HttpRelay._sent"): "a relay's retry, with a deadline",
    # servers and streams that stall on purpose
    ("tests/integration/stores/test_outbox_contention.py", "SlowBroker.publish"): "a slow broker",
    ("tests/unit/kit/test_repeated_logs.py", "SlowStream.write"): "a stream yielding the GIL",
    ("tests/support/dripping.py", "Dripper._drip"): "a body sent a byte at a time",
    ("tests/support/fake_model.py", "FakeModel._drip"): "a reply sent a byte a tick",
    # time itself as the scenario's input: an outage, an idle stretch, an age
    (
        "tests/integration/ofrep/test_ofrep_freshness.py",
        "test_the_first_evaluation_after_an_idle_stretch_answers_a_kill_made_during_it",
    ): "an idle stretch longer than the snapshot's age",
    (
        "tests/integration/ofrep/test_ofrep_freshness.py",
        "test_the_first_bulk_evaluation_after_an_idle_stretch_answers_a_kill_made_during_it",
    ): "an idle stretch longer than the snapshot's age",
    (
        "tests/scenarios/ofrep/test_ofrep_idle_kill.py",
        "test_the_first_answer_after_30_s_idle_is_the_kill",
    ): "30 s without an evaluation, the real SDK's cache aging",
    (
        "tests/scenarios/operators/test_restore.py",
        "test_an_empty_store_is_rebuilt_and_a_restore_puts_back_its_segment",
    ): "the commands' age, past the stale bound",
    (
        "tests/scenarios/brokers/test_held_evidence.py",
        "test_a_stage_moves_under_steady_traffic_while_ingest_keeps_a_second_behind",
    ): "traffic flowing past the lag bound: only its passing can show a partition lagging",
    (
        "tests/scenarios/otel/test_otel_node_http_kill.py",
        "test_a_node_apps_log_record_evaluations_over_http_count_once_across_a_kill_9",
    ): "the controller down for 3 s, then users served after its restart",
    (
        "tests/scenarios/apps/test_intake_kills.py",
        "test_killed_three_times_and_redis_once_counted_equals_sent_exactly",
    ): "Redis away for a second while the app sends",
    # the helpers that wait on a condition with a deadline
    ("tests/support/waiting.py", "eventually"): "the poll of a wait with a deadline",
    ("tests/support/waiting.py", "eventually_sync"): "the poll of a wait with a deadline",
    ("tests/support/clients/raw_streams.py", "NonReader.wait_open"): "a peek with a deadline",
    ("tests/support/backing/kafka_service.py", "stop_shared_kafka"): "an exit, then SIGKILL",
}
"""Each function under ``tests/`` that may sleep a fixed time, and why."""

PACING_LINES: dict[tuple[str, str], str] = {
    (
        "tests/node/ofrep_follow.mjs",
        "await new Promise((resolve) => setTimeout(resolve, interval));",
    ): "a follower app evaluating again each interval",
    (
        "tests/otel/node_app.mjs",
        "await new Promise((done) => setTimeout(done, jitter() * latencyMs[arm]));",
    ): "the app's latency for a request",
    (
        "tests/otel/go/checkout.go",
        "time.Sleep(time.Duration(jitter() * cfg.latencyMs[arm] * float64(time.Millisecond)))",
    ): "the app's latency for a request",
    (
        "tests/otel/java/src/main/java/checkout/Checkout.java",
        "Thread.sleep((long) ms, (int) ((ms % 1) * 1_000_000));",
    ): "the app's latency for a request",
}
"""Each line of the test apps in other languages that may sleep a fixed time, and why."""


def _sources(*suffixes: str) -> Iterator[Path]:
    for path in sorted(TESTS.rglob("*")):
        if path.suffix in suffixes and not BUILT & set(path.relative_to(ROOT).parts):
            yield path


def _sleeps(call: ast.Call) -> bool:
    """Whether ``call`` waits a length of time: a sleep whose argument is not the literal 0."""
    func = call.func
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else ""
        named = (owner, func.attr) in SLEEPS or func.attr == "wait_for_timeout"
    else:
        named = isinstance(func, ast.Name) and func.id == "sleep"
    instant = bool(call.args) and isinstance(call.args[0], ast.Constant) and call.args[0].value == 0
    return named and not instant


def sleeping_places(source: str) -> Iterator[tuple[str, int]]:
    """Each fixed sleep in ``source``: its enclosing functions and classes, dotted, and line."""

    def visit(node: ast.AST, scope: tuple[str, ...]) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            inner = (*scope, child.name) if isinstance(child, SCOPES) else scope
            if isinstance(child, ast.Call) and _sleeps(child):
                yield ".".join(scope) or "<module>", child.lineno
            yield from visit(child, inner)

    yield from visit(ast.parse(source), ())


@functools.cache
def python_places() -> dict[tuple[str, str], list[int]]:
    """Each place under ``tests/`` with a fixed sleep: (module, scope) and its lines."""
    found: dict[tuple[str, str], list[int]] = {}
    for path in _sources(".py"):
        source, name = path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))
        if "sleep(" not in source and "wait_for_timeout(" not in source:
            continue  # parsed only where a sleep may be
        for scope, line in sleeping_places(source):
            found.setdefault((name, scope), []).append(line)
    return found


def other_places() -> dict[tuple[str, str], list[int]]:
    """Each line of the test apps in other languages that sleeps, and where."""
    found: dict[tuple[str, str], list[int]] = {}
    for path in _sources(*OTHER_LANGUAGES):
        pattern, name = OTHER_LANGUAGES[path.suffix], str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.setdefault((name, line.strip()), []).append(number)
    return found


def test_no_test_sleeps_a_fixed_time_outside_the_places_named() -> None:
    found = python_places()
    unnamed = [
        f"{path}:{lines[0]} in {scope}"
        for (path, scope), lines in found.items()
        if (path, scope) not in PACING
    ]
    assert unnamed == [], f"wait on the signal (tests/support/waiting.py), not: {unnamed}"


def test_no_test_app_in_another_language_sleeps_outside_the_lines_named() -> None:
    found = other_places()
    unnamed = [
        f"{path}:{lines[0]}"
        for (path, line), lines in found.items()
        if (path, line) not in PACING_LINES
    ]
    assert unnamed == [], f"wait on the signal, not a fixed time: {unnamed}"


def test_every_place_named_still_sleeps() -> None:
    assert sorted(set(PACING) - set(python_places())) == [], "named, but sleeps no more"
    assert sorted(set(PACING_LINES) - set(other_places())) == [], "named, but sleeps no more"


BAD = [
    "async def t():\n    await go()\n    await asyncio.sleep(0.2)\n    assert done()\n",
    "def t():\n    go()\n    time.sleep(1)\n    assert not sent()\n",
    "async def t():\n    await sleep(IDLE)\n",
    "def t(page):\n    page.wait_for_timeout(500)\n",
    "class C:\n    async def m(self):\n        await anyio.sleep(self.every)\n",
]
GOOD = [
    "async def t():\n    await asyncio.sleep(0)\n    assert started()\n",
    "async def t():\n    await eventually(done, timeout=30, what='done')\n",
    "def t():\n    time.monotonic()\n    loop.sleep_ms = 3\n",
]


def test_the_rule_catches_what_it_says_and_only_that() -> None:
    assert [list(sleeping_places(code)) for code in GOOD] == [[] for _ in GOOD]
    assert [[scope for scope, _ in sleeping_places(code)] for code in BAD] == [
        ["t"],
        ["t"],
        ["t"],
        ["t"],
        ["C.m"],
    ]
