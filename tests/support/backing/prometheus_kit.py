"""A real Prometheus server and an app it scrapes, for the tests of Prometheus guardrails.

:class:`PrometheusServer` runs Debian's ``prometheus`` on a free port with a
config and a storage directory of its own, scraping its targets every second;
it can be killed (``kill -9``) and started again on the same port and storage.
:class:`MetricsApp` is an app as teams instrument them: per flag and variant, a
``prometheus_client`` counter of requests (by status code) and a histogram of
their latency, served on ``/metrics``; :meth:`MetricsApp.restart` starts its
counters from zero again, as a restarted process does. It also keeps the truth
(every request it counted, never reset) to compare with what Prometheus says.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from controller.dev.processes import ManagedProcess, free_port
from tests.support.backing.services import ServiceUnavailable
from tests.support.dripping import Dripper, canned
from tests.support.waiting import eventually_sync

LABELS = {Arm.TREATMENT: "on", Arm.CONTROL: "off"}
"""The variant label value each arm carries, as an OpenFeature app labels them."""
BUCKETS_S = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.1, 0.15, 0.25, 0.5)
REQUESTS = "http_requests_total"
LATENCY = "http_request_duration_seconds"
COUNT = (
    'sum(increase(http_requests_total{feature_flag_key="{{flag}}",'
    ' feature_flag_variant="{{arm}}", code="500"}[{{window}}]))'
)
TOTAL = (
    'sum(increase(http_requests_total{feature_flag_key="{{flag}}",'
    ' feature_flag_variant="{{arm}}"}[{{window}}]))'
)
BUCKETS = (
    "sum by (le) (increase(http_request_duration_seconds_bucket{"
    'feature_flag_key="{{flag}}", feature_flag_variant="{{arm}}"}[{{window}}]))'
)
ARMS = {"treatment": "on", "control": "off"}


def prometheus_binary() -> str:
    """Debian's ``prometheus`` server (the package that ships promtool)."""
    found = shutil.which("prometheus")
    if found is None:
        raise ServiceUnavailable(
            "no prometheus on PATH: `apt-get install --no-install-recommends prometheus`"
            " (Debian; `make tools` does it)."
        )
    return found


def error_rate(**extra: Any) -> dict[str, Any]:
    """An error-rate guardrail read from the app's counters."""
    queries = {"count": COUNT, "total": TOTAL, "arms": ARMS}
    return {"metric": "error_rate", "source": "prometheus", "prometheus": queries, **extra}


def latency_p95(**extra: Any) -> dict[str, Any]:
    """A p95 guardrail read from the app's histogram, 10% relative tolerance."""
    queries = {"buckets": BUCKETS, "arms": ARMS, "le_unit": "seconds"}
    return {
        "metric": "latency_p95",
        "tolerance": 0.10,
        "relative": True,
        "source": "prometheus",
        "prometheus": queries,
        **extra,
    }


class PrometheusServer:
    """Debian's Prometheus on a free port, scraping ``targets`` every second."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        *,
        binary: str | None = None,
        labels: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """``labels``: by target, the labels Prometheus attaches to its series (as a
        deployment's service discovery attaches its environment)."""
        self.binary = binary or prometheus_binary()
        self.workdir, self.targets, self.labels = workdir, targets, labels or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: ManagedProcess | None = None
        self.starts = 0

    def _config(self) -> Path:
        path = self.workdir / "prometheus.yml"
        groups = ", ".join(
            f"{{targets: ['{t}'], labels: {json.dumps(self.labels.get(t, {}))}}}"
            for t in self.targets
        )
        path.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: app\n    static_configs: [{groups}]\n",
            encoding="utf-8",
        )
        return path

    def start(self) -> PrometheusServer:
        """Start (again, on the same port and storage) and wait until it is ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            f"--config.file={self._config()}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        self._process = ManagedProcess(args, self.workdir / "prometheus.log")
        self.starts += 1
        eventually_sync(self._ready, timeout=60, what="prometheus to be ready")
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        if not self._process.running():
            raise RuntimeError(f"prometheus exited:\n{self._process.log_tail()}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError as exc:
            raise AssertionError(str(exc)) from None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def kill(self) -> None:
        """``kill -9``: it stops answering at once."""
        if self._process is not None:
            self._process.kill()

    def scraped(self) -> bool:
        """Whether every target was scraped up (``up == 1``)."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": "min(up)"}, timeout=2)
        result = answer.json()["data"]["result"]
        return bool(result) and result[0]["value"][1] == "1"


@dataclass
class _Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        labels = ["feature_flag_key", "feature_flag_variant"]
        self.requests = Counter(
            REQUESTS.removesuffix("_total"), "Requests.", [*labels, "code"], registry=self.registry
        )
        self.latency = Histogram(
            LATENCY, "Latency.", labels, buckets=BUCKETS_S, registry=self.registry
        )


ErrorModel = Callable[[dict[str, Any], Arm], float]
LatencyModel = Callable[[Arm, random.Random], float]


def healthy(_state: dict[str, Any], _arm: Arm) -> float:
    return 0.02


def steady(_arm: Arm, rng: random.Random) -> float:
    """Latency in ms: log-normal, median e³ ≈ 20 ms, p95 ≈ 33 ms."""
    return rng.lognormvariate(3, 0.3)


class MetricsApp:
    """Requests per flag and variant, counted in ``prometheus_client`` and served for scraping."""

    def __init__(self) -> None:
        self._metrics = _Metrics()
        self.restarts = 0
        self.truth: dict[tuple[str, str], list[int]] = {}
        """(flag, variant) → [requests, errors] ever counted, across restarts."""
        self.scrapes: list[tuple[float, dict[tuple[str, str], tuple[int, int]]]] = []
        """When each scrape came (Unix seconds), and the truth it was shown."""
        self._server = Dripper(self._answer)
        self.target = ""
        self.dark = False
        """While set, every scrape fails (503), as a crash-looping or unscraped target's."""

    async def start(self) -> str:
        """Serve ``/metrics``; the scrape target (``host:port``)."""
        url = await self._server.start()
        self.target = url.removeprefix("http://")
        return self.target

    async def close(self) -> None:
        await self._server.close()

    async def _answer(self, _method: str, _path: str, _headers: dict[str, str], _b: bytes) -> bytes:
        if self.dark:
            return canned(503, b"unavailable", "text/plain")
        body = generate_latest(self._metrics.registry)
        self.scrapes.append((time.time(), {k: (v[0], v[1]) for k, v in self.truth.items()}))
        return canned(200, body, "text/plain; version=0.0.4")

    def truth_between(self, flag: str, variant: str, start: float, end: float) -> tuple[int, int]:
        """Requests and errors the app counted between the scrapes nearest ``start`` and
        ``end`` (what Prometheus could know of), across restarts."""

        def at(moment: float) -> tuple[int, int]:
            seen = [t for when, t in self.scrapes if when <= moment]
            return seen[-1].get((flag, variant), (0, 0)) if seen else (0, 0)

        (r1, e1), (r0, e0) = at(end), at(start)
        return r1 - r0, e1 - e0

    def restart(self) -> None:
        """The app restarts: every counter and histogram starts from zero again."""
        self._metrics = _Metrics()
        self.restarts += 1

    def serve(self, flag: str, arm: Arm, *, error: bool, latency_ms: float) -> None:
        variant = LABELS[arm]
        code = "500" if error else "200"
        self._metrics.requests.labels(flag, variant, code).inc()
        self._metrics.latency.labels(flag, variant).observe(latency_ms / 1000)
        counts = self.truth.setdefault((flag, variant), [0, 0])
        counts[0] += 1
        counts[1] += int(error)


class Counting(Protocol):
    """Where an app counts the requests it serves."""

    def serve(self, flag: str, arm: Arm, *, error: bool, latency_ms: float) -> None: ...


@dataclass
class ArmApps:
    """Each arm served by an app of its own (a canary deployment): two scrape targets."""

    treatment: MetricsApp
    control: MetricsApp

    def serve(self, flag: str, arm: Arm, *, error: bool, latency_ms: float) -> None:
        app = self.treatment if arm is Arm.TREATMENT else self.control
        app.serve(flag, arm, error=error, latency_ms=latency_ms)


async def serve_traffic(
    app: Counting,
    flag: str,
    state: Callable[[str], dict[str, Any] | None],
    *,
    errors: ErrorModel = healthy,
    latency: LatencyModel = steady,
    rate: int = 1000,
    units: int = 4000,
    key: str | None = None,
) -> None:
    """Requests to ``flag`` at ``rate`` a second, each unit's arm as the SDK assigns it from
    the state of ``key`` (default: the flag; ``checkout@staging`` for another environment's)."""
    rng = random.Random(flag)
    tick = 0.05
    while True:
        current = state(key or flag)
        if current is None or current["status"] not in ("rolling_out", "paused", "completed"):
            await asyncio.sleep(tick)
            continue
        started = time.monotonic()
        for _ in range(int(rate * tick)):
            unit = f"u{rng.randrange(units)}"
            arm = assign(flag, current["salt"], unit, current["percent"])
            failed = rng.random() < errors(current, arm)
            app.serve(flag, arm, error=failed, latency_ms=latency(arm, rng))
        await asyncio.sleep(max(tick - (time.monotonic() - started), 0.0))


@asynccontextmanager
async def scraped_app(
    directory: Path, binary: str
) -> AsyncIterator[tuple[MetricsApp, PrometheusServer]]:
    """An app and a real Prometheus scraping it every second (its files in ``directory``)."""
    app = MetricsApp()
    target = await app.start()
    prometheus = PrometheusServer(directory, [target], binary=binary)
    try:
        yield app, await asyncio.to_thread(prometheus.start)
    finally:
        prometheus.kill()
        await app.close()
