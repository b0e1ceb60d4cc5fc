"""Probes and the operator's tools name the dependency that is down, over real sockets (#29)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RedisServerFactory
from tests.integration.rig import Rig
from tests.integration.test_http import wait_status
from tests.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_readyz_says_which_dependency_start_up_waits_for(
    rig: Rig, tmp_path: Path, redis_server_factory: RedisServerFactory
) -> None:
    # Given a Redis that is down when the daemon starts
    redis = redis_server_factory(persistent=False)
    redis.stop()
    health_port = free_port()
    rig.env.update({"REDIS_URL": redis.url, "RC_HTTP__HEALTH_PORT": str(health_port)})
    readyz = f"http://127.0.0.1:{health_port}/readyz"
    with rig.daemon(tmp_path):
        # Then the probe is answered already, and says what start-up waits for
        waiting = await wait_status(readyz, 503)
        assert waiting.json()["reason"] == (
            f"waiting for Redis at {redis.url} (setting redis.url)"
        ), waiting.text
        assert (await wait_status(readyz.replace("readyz", "healthz"), 200)).json() == {
            "status": "ok"
        }
        # When Redis comes up, the daemon goes on starting and becomes ready
        redis.start()
        ready = await wait_status(readyz, 200, timeout=90)
        assert ready.json()["ready"] is True
