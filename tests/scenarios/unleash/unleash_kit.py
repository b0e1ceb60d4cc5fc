"""What the Unleash scenarios use: a person at the admin API, and an app with the real SDK."""

from __future__ import annotations

import math
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from UnleashClient.clients.unleash_client import UnleashClient

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Backend, Guardrail, Stage, UnleashTarget
from controller.core.rules.targeting import Cohort
from controller.core.wire.messages import Arm
from controller.dev.unleash import UnleashServer
from controller.sdk import EventEmitter
from controller.sdk.unleash import ServedFlags, UnleashExposures
from tests.scenarios.harness import Scenario
from tests.support.waiting import eventually

PERCENTS = (1, 5, 25, 50, 100)
UNITS = 10_000


def feature_name() -> str:
    return f"feat-{uuid.uuid4().hex[:10]}"


def unleash_plan(
    feature: str, *, min_duration: timedelta = timedelta(minutes=10), alpha: float = 0.01
) -> Plan:
    """The default ladder served from Unleash; stages move only by command unless shortened.

    ``alpha`` is the rollout's chance of rolling identical arms back: a scenario that is not
    about the gate lowers it, so that chance does not fail one run in a hundred."""
    return Plan(
        name="unleash",
        stages=[
            Stage(
                percent=p,
                min_duration=timedelta(0) if p == 100 else min_duration,
                min_units_per_arm=0 if p == 100 else 20,
            )
            for p in PERCENTS
        ],
        guardrails=[Guardrail(metric="error_rate")],
        alpha=alpha,
        backend=Backend(unleash=UnleashTarget(feature=feature)),
    )


def serve_from(scenario: Scenario, server: UnleashServer, *, sync_seconds: float = 1.0) -> None:
    """Point the scenario's daemon at ``server`` (before it starts)."""
    scenario.configure(
        RC_UNLEASH__URL=server.url,
        RC_UNLEASH__ADMIN_TOKEN=server.admin_token,
        RC_UNLEASH__ENVIRONMENT=server.environment,
        RC_UNLEASH__SYNC_INTERVAL_SECONDS=str(sync_seconds),
        RC_UNLEASH__REQUEST_TIMEOUT_SECONDS="2",
    )


class Person:
    """Someone at Unleash's admin API: reads what it serves, changes it by hand."""

    def __init__(self, server: UnleashServer) -> None:
        self.server = server
        self._http = httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": server.admin_token}, timeout=5
        )

    async def close(self) -> None:
        await self._http.aclose()

    def _env(self, feature: str, environment: str | None = None) -> str:
        env = environment or self.server.environment
        return f"/api/admin/projects/default/features/{feature}/environments/{env}"

    async def serving(self, feature: str, environment: str | None = None) -> dict[str, Any] | None:
        """``enabled`` and the controller's strategy (``percent``, ``version``, ``id``) in
        ``environment`` (the server's, unless named)."""
        answer = await self._http.get(f"/api/admin/projects/default/features/{feature}")
        if answer.status_code == httpx.codes.NOT_FOUND:
            return None
        answer.raise_for_status()
        environment = environment or self.server.environment
        envs = [e for e in answer.json()["environments"] if e["name"] == environment]
        if not envs:  # a feature being created may not list its environments yet
            return {"enabled": False, "strategies": 0}
        env = envs[0]
        strategies = [s for s in env["strategies"] if s["name"] == "flexibleRollout"]
        out: dict[str, Any] = {"enabled": env["enabled"], "strategies": len(env["strategies"])}
        if strategies:
            params = strategies[0]["parameters"]
            out |= {
                "percent": int(params["rollout"]),
                "version": int(params.get("rcFlagVersion", -1)),
                "stickiness": params["stickiness"],
                "id": strategies[0]["id"],
                "parameters": params,
            }
        return out

    async def dependencies(self, feature: str) -> list[dict[str, Any]]:
        """The feature's dependencies on parent features, as the admin API shows them."""
        answer = await self._http.get(f"/api/admin/projects/default/features/{feature}")
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["dependencies"]
        return sorted(found, key=lambda d: str(d["feature"]))

    async def create_feature(self, feature: str) -> None:
        """Create a release feature in the default project, as in Unleash's UI."""
        body = {"name": feature, "type": "release"}
        answer = await self._http.post("/api/admin/projects/default/features", json=body)
        answer.raise_for_status()

    async def add_dependency(self, child: str, parent: str, *, enabled: bool) -> httpx.Response:
        """Make ``child`` depend on ``parent`` by hand; Unleash's answer, whatever it is."""
        path = f"/api/admin/projects/default/features/{child}/dependencies"
        return await self._http.post(path, json={"feature": parent, "enabled": enabled})

    async def remove_dependencies(self, feature: str) -> None:
        """Delete every dependency of the feature by hand, as in Unleash's UI."""
        path = f"/api/admin/projects/default/features/{feature}/dependencies"
        answer = await self._http.delete(path)
        answer.raise_for_status()

    async def set_percent(self, feature: str, percent: int, environment: str | None = None) -> None:
        """Change the rollout percent by hand, as in Unleash's UI (the whole strategy)."""
        now = await self.serving(feature, environment)
        assert now is not None
        assert "id" in now
        body = {
            "name": "flexibleRollout",
            "constraints": [],
            "parameters": {**now["parameters"], "rollout": str(percent)},
        }
        path = f"{self._env(feature, environment)}/strategies/{now['id']}"
        answer = await self._http.put(path, json=body)
        answer.raise_for_status()

    async def edit_first_constraint(self, feature: str, values: list[str]) -> None:
        """Change the values of the last constraint of the first strategy, as in the UI."""
        answer = await self._http.get(f"/api/admin/projects/default/features/{feature}")
        answer.raise_for_status()
        env = next(e for e in answer.json()["environments"] if e["name"] == self.server.environment)
        strategy = env["strategies"][0]
        constraints = strategy["constraints"]
        constraints[-1] = {**constraints[-1], "values": values}
        body = {k: strategy[k] for k in ("name", "parameters")} | {"constraints": constraints}
        put = await self._http.put(f"{self._env(feature)}/strategies/{strategy['id']}", json=body)
        put.raise_for_status()

    async def add_strategy(self, feature: str, name: str) -> str:
        """Add a strategy of ``name`` beside the controller's, as in Unleash's UI; its id."""
        body = {"name": name, "constraints": [], "parameters": {}}
        answer = await self._http.post(f"{self._env(feature)}/strategies", json=body)
        answer.raise_for_status()
        return str(answer.json()["id"])


class App:
    """An app evaluating flags with the real ``UnleashClient``, wrapped by the exposure helper."""

    def __init__(
        self,
        server: UnleashServer,
        cache: Path,
        *,
        refresh_interval: int = 1,
        environment: str | None = None,
    ) -> None:
        self.exposures: list[tuple[str, str, Arm, int]] = []
        self.cohorts: dict[str, Cohort | None] = {}
        """Each unit's cohort in its last exposure (None: an untargeted rollout)."""
        self._lock = threading.Lock()
        self._emitter: EventEmitter | None = None
        self.enabled: dict[str, bool] = {}
        """Each feature's ``enabled`` in the last payload the SDK fetched."""
        self.helper = UnleashExposures(self._record, chain=self._fetched)
        self.client = UnleashClient(
            url=f"{server.url}/api",
            app_name=f"app-{uuid.uuid4().hex[:6]}",
            environment=environment or server.environment,
            custom_headers={
                "Authorization": server.client_tokens[environment or server.environment]
            },
            refresh_interval=refresh_interval,
            disable_metrics=True,
            disable_registration=True,
            cache_directory=str(cache),
            event_callback=self.helper.on_event,
        )
        self.client.initialize_client()
        self.flags: ServedFlags = self.helper.wrap(self.client)

    def _fetched(self, event: object) -> None:
        raw = getattr(event, "raw_features", None)
        if isinstance(raw, str):
            features = orjson.loads(raw)["features"]
            self.enabled = {f["name"]: f["enabled"] for f in features}

    def use_emitter(self, emitter: EventEmitter) -> None:
        """Send the helper's exposures to the events topic too."""
        self._emitter = emitter

    def _record(
        self, flag: str, unit: str, arm: Arm, version: int, cohort: Cohort | None = None
    ) -> None:
        with self._lock:
            self.exposures.append((flag, unit, arm, version))
            self.cohorts[unit] = cohort
        if self._emitter is not None:
            self._emitter.exposure(flag, unit, arm, version, cohort=cohort)

    def close(self) -> None:
        self.client.destroy()

    async def serves_version(self, feature: str, version: int, *, timeout: float = 30) -> None:
        """Wait until the SDK has fetched the strategy written at ``version``, environment on.

        The controller writes the strategy before it turns the environment on,
        so a fetch in between has the version with the feature still off.
        """

        def fetched() -> bool:
            managed = self.helper.managed(feature)
            return bool(
                managed is not None and managed.version >= version and self.enabled.get(feature)
            )

        await eventually(
            fetched, timeout=timeout, what=f"the SDK to fetch {feature} at version {version}, on"
        )

    def treated(self, feature: str, units: int = UNITS) -> int:
        """How many of ``units`` distinct users the SDK serves the feature to."""
        return sum(self.flags.is_enabled(feature, {"userId": f"user-{i}"}) for i in range(units))


def within_binomial(count: int, percent: float, n: int = UNITS) -> bool:
    """``count`` of ``n`` is within five standard deviations of ``percent``% (exact at 0/100)."""
    p = percent / 100
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= 5 * sd + 1


def rolling_at(scenario: Scenario, flag: str, stage: int) -> dict[str, Any] | None:
    """The flag's last state seen, when it is rolling out at ``stage``."""
    states = [s for s in scenario.observed.flag_states if s["flag"] == flag]
    if states and states[-1]["stage"] == stage and states[-1]["status"] == "rolling_out":
        return states[-1]
    return None
