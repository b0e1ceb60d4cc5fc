"""The daemon's HTTP server with its OFREP endpoints over real Redis, and OFREP's own schemas.

Shared by ``tests/integration/ofrep/test_ofrep.py`` and ``bench/ofrep.py``. The
schemas are the published OpenAPI document of OFREP 0.3.0
(``tests/vectors/ofrep/openapi.yaml``, from github.com/open-feature/protocol,
Apache-2.0), read as JSON Schema 2020-12 with one correction: the document
says an evaluation's value is ``oneOf`` boolean, string, integer, float,
object or "code default"; the last has no properties, so every value matches
it too and ``oneOf`` could never hold. The value is read as ``anyOf`` them,
which is what the document means.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from controller.adapters.http import HttpServer
from controller.adapters.http.app_access import AppAccess
from controller.adapters.ofrep import OfrepRoutes, StreamBounds
from controller.adapters.redis.client import RedisClient
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.release import SINGLE, Environments
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.wire import Prerequisite
from controller.daemon.serving.read_worker import flag_states
from controller.ports import SaveOutcome, StateWrite
from controller.settings import HttpSettings, RedisSettings
from tests.support.backing.services import ServiceUnavailable, free_port
from tests.unit.core.machine.gate.test_gate import plan, rollout

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / "tests" / "vectors" / "ofrep" / "openapi.yaml"
NODE_SCRIPT = ROOT / "tests" / "node" / "ofrep_eval.mjs"
TEST_STREAMS = StreamBounds(max_streams=64, per_client=32)
"""Event streams the test server holds (the daemon's defaults are larger)."""
IDLE_SECONDS = 120.0
"""How long the test server keeps an idle keep-alive connection open."""

CONFIGURATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "capabilities"],
    "properties": {
        "name": {"type": "string"},
        "capabilities": {
            "type": "object",
            "properties": {
                "cacheInvalidation": {
                    "type": "object",
                    "properties": {
                        "polling": {
                            "type": "object",
                            "properties": {
                                "enabled": {"type": "boolean"},
                                "minPollingIntervalMs": {"type": "number"},
                            },
                        }
                    },
                },
                "flagEvaluation": {
                    "type": "object",
                    "properties": {
                        "supportedTypes": {
                            "type": "array",
                            "items": {"enum": ["int", "float", "string", "boolean", "object"]},
                        }
                    },
                },
            },
        },
    },
}
"""``configurationResponse`` of OFREP 0.1.0, the last version with the configuration endpoint."""


@cache
def _components() -> dict[str, Any]:
    document = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    components: dict[str, Any] = document["components"]
    typed = components["schemas"]["evaluationSuccess"]["allOf"][1]
    typed["anyOf"] = typed.pop("oneOf")  # see the module's docstring
    return components


def schema(name: str) -> Draft202012Validator:
    """A validator of the OpenAPI document's ``components/schemas/<name>``."""
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": _components()}
    )


def node_home() -> Path:
    """Where ``make ofrep-node`` installed the Node OFREP provider; ServiceUnavailable if not."""
    home = Path(os.environ.get("OFREP_NODE_HOME", ROOT / ".ofrep-node"))
    if not (home / "node_modules" / "@openfeature" / "ofrep-provider").is_dir():
        raise ServiceUnavailable(
            f"the Node OFREP provider is not installed in {home}: `make ofrep-node` "
            "(npm ci from tests/node/package-lock.json)"
        )
    return home


def flag_rollout(
    flag: str,
    percent: float,
    *,
    phase: Phase = Phase.RUNNING,
    version: int = 3,
    requires: list[Prerequisite] | None = None,
) -> Rollout:
    """A rollout of ``flag`` at its first stage, serving ``percent`` treatment (where
    ``requires`` is met)."""
    stages = [Stage(percent=percent, min_duration=timedelta(minutes=30))]
    if percent < 100:
        stages.append(Stage(percent=100))
    return rollout(plan(stages=stages, requires=requires)).model_copy(
        update={
            "flag": flag,
            "rollout_id": f"r-{flag}",
            "salt": f"salt-{flag}",
            "phase": phase,
            "flag_version": version,
            "stage_versions": {0: [version]},
        }
    )


async def store(client: RedisClient, prefix: str, rollouts: list[Rollout]) -> RolloutStore:
    states = RolloutStore(client, settings=RedisSettings(key_prefix=prefix))
    for each in rollouts:
        outcome = await states.save(each.flag, StateWrite(rev=0, rollout=each))
        assert outcome == SaveOutcome.SAVED, outcome
    return states


@asynccontextmanager
async def ofrep_server(
    states: RolloutStore,
    *,
    max_age: float = 1.0,
    access: AppAccess | None = None,
    requests_per_second: float | None = None,
    environments: Environments = SINGLE,
    streams: StreamBounds = TEST_STREAMS,
    max_connections: int = 256,
) -> AsyncIterator[str]:
    """The daemon's HTTP server with OFREP over ``states`` (behind ``access``: app keys and
    origins; open without; each client limited to ``requests_per_second``, no limit without;
    serving ``environments``), on 127.0.0.1: its base URL."""

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    port = free_port()
    server = HttpServer(
        host="127.0.0.1",
        port=port,
        # An idle keep-alive connection is closed by the client, never under it: on a busy
        # machine a client that stalled past the idle limit would send a request on a
        # connection the server is closing, and see it fail (not what is tested here).
        limits=HttpSettings(header_timeout_seconds=IDLE_SECONDS, max_connections=max_connections),
        readiness=ready,
        flags=lambda: flag_states(states, None),
        metrics=lambda: b"",
        metrics_content_type="text/plain",
        access=access,
        environments=lambda: environments,
        ofrep=OfrepRoutes(
            lambda: flag_states(states, None),
            body_timeout_seconds=5,
            max_age_seconds=max_age,
            access=access,
            requests_per_second=requests_per_second,
            environments=environments,
            streams=streams,
        ),
    )
    async with server:
        yield f"http://127.0.0.1:{port}"
