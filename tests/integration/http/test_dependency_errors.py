"""Probes and the operator's tools name the dependency that is down, over real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from controller.ctl.app import main
from controller.ctl.exits import EXIT_FAILURE, EXIT_NO_DECISION
from controller.ctl.looking.diagnosis import ENV_HEALTH_URL
from tests.conftest import RedisServerFactory
from tests.integration.http.test_http import wait_status, wait_unready
from tests.integration.rig import Rig
from tests.support.backing.kafka_service import own_broker
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def rolloutctl_status(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["status", "--url", url])
    return code, capsys.readouterr().err


async def test_readyz_says_which_dependency_start_up_waits_for(
    rig: Rig,
    tmp_path: Path,
    redis_server_factory: RedisServerFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a Redis that is down when the daemon starts
    redis = redis_server_factory(persistent=False)
    redis.stop()
    port, health_port = free_port(), free_port()
    rig.env.update(
        {
            "REDIS_URL": redis.url,
            "RC_HTTP__PORT": str(port),
            "RC_HTTP__HEALTH_PORT": str(health_port),
        }
    )
    health = f"http://127.0.0.1:{health_port}"
    with rig.daemon(tmp_path):
        # Then the probe is answered already, and says what start-up waits for
        waiting = await wait_status(f"{health}/readyz", 503)
        reason = f"waiting for Redis at {redis.url} (setting redis.url)"
        assert waiting.json()["reason"] == reason, waiting.text
        assert (await wait_status(f"{health}/healthz", 200)).json() == {"status": "ok"}
        # And rolloutctl, finding the main port closed, says the same
        monkeypatch.setenv(ENV_HEALTH_URL, health)
        code, err = rolloutctl_status(f"http://127.0.0.1:{port}", capsys)
        assert code == EXIT_FAILURE
        assert f"the controller is up but not ready: {reason}" in err, err
        # When Redis comes up, the daemon goes on starting and becomes ready
        redis.start()
        ready = await wait_status(f"{health}/readyz", 200, timeout=90)
        assert ready.json()["ready"] is True


async def test_a_redis_outage_is_a_503_naming_redis_and_rolloutctl_says_so(
    rig: Rig,
    tmp_path: Path,
    redis_server_factory: RedisServerFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a ready daemon on a Redis of its own
    redis = redis_server_factory(persistent=False)
    port = free_port()
    rig.env.update(
        {
            "REDIS_URL": redis.url,
            "RC_HTTP__PORT": str(port),
            "RC_HTTP__HEALTH_PORT": "0",
            # The test polls /rollouts for its 503 and then asks rolloutctl from the same
            # address: its read rate is not what this test is about.
            "RC_HTTP__READS_PER_SECOND": "1000",
        }
    )
    main_url = f"http://127.0.0.1:{port}"
    with rig.daemon(tmp_path):
        await wait_status(f"{main_url}/readyz", 200)
        assert (await wait_status(f"{main_url}/rollouts", 200)).json() == {"rollouts": []}
        # When Redis goes down
        redis.stop()
        # Then the API answers 503 naming Redis, its address and its setting
        down = await wait_status(f"{main_url}/rollouts", 503)
        said = f"Redis at {redis.url} does not answer (setting redis.url)"
        assert down.json()["reason"].startswith(said), down.text
        # And rolloutctl status carries the controller's readiness reason
        code, err = rolloutctl_status(main_url, capsys)
        assert code == EXIT_FAILURE
        assert f"answered 503; the controller is up but not ready: {said}" in err, err
        # And a command that gets no decision says why, rather than asking if it runs
        err = await pause_without_decision(rig, tmp_path, main_url, capsys, monkeypatch)
        assert f"the controller is up but not ready: {said}" in err, err
        assert "is the controller running?" not in err


async def test_ofrep_answers_503_within_its_bound_while_redis_hangs(
    rig: Rig, tmp_path: Path, redis_server_factory: RedisServerFactory
) -> None:
    # Given a ready daemon on a Redis of its own, OFREP answering
    redis = redis_server_factory(persistent=False)
    port = free_port()
    rig.env.update(
        {
            "REDIS_URL": redis.url,
            "RC_HTTP__PORT": str(port),
            "RC_HTTP__HEALTH_PORT": "0",
            "RC_HTTP__REQUIRE_APP_KEYS": "false",
        }
    )
    base = f"http://127.0.0.1:{port}"
    body = {"context": {"targetingKey": "u1"}}
    with rig.daemon(tmp_path):
        await wait_status(f"{base}/readyz", 200)
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:

            async def evaluate() -> tuple[int, float]:
                began = time.monotonic()
                answer = await client.post("/ofrep/v1/evaluate/flags", json=body)
                return answer.status_code, time.monotonic() - began

            assert (await evaluate())[0] == 200
            # When Redis hangs (SIGSTOP: connected, never answering)
            redis.pause()
            try:
                # Then, once the snapshot held is too old, every request is a 503 within
                # the snapshot's bound (5 s), not that and a readiness check's as long again
                timed: list[tuple[int, float]] = []

                async def aged() -> bool:
                    timed.append(await evaluate())
                    assert timed[-1][0] != 200, f"still answered from the snapshot: {timed[-3:]}"
                    return True

                await eventually(
                    aged, timeout=30, what="a request refused, the snapshot aged", most=0.05
                )
                timed += [await evaluate() for _ in range(2)]
            finally:
                redis.resume()
    refused = [seconds for status, seconds in timed if status != 200]
    assert [status for status, _ in timed[-3:]] == [503] * 3, timed
    assert all(4.5 <= seconds < 6.0 for seconds in refused), timed


async def pause_without_decision(
    rig: Rig,
    tmp_path: Path,
    url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """``rolloutctl pause`` on the rig's topics, signed by a new key; its stderr."""
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "RC_TOPICS__COMMANDS", "RC_TOPICS__DECISIONS"):
        monkeypatch.setenv(name, rig.env[name])
    monkeypatch.setenv("ROLLOUTCTL_URL", url)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["keygen", "--key-id", "alice", "--out", str(tmp_path / "keys")]) == 0
    capsys.readouterr()
    argv = ["pause", "checkout", "--key", str(tmp_path / "keys" / "alice.key")]
    argv += ["--key-id", "alice", "--actor", "ops", "--timeout", "3"]
    assert await asyncio.to_thread(main, argv) == EXIT_NO_DECISION
    return capsys.readouterr().err


async def test_start_up_waits_for_kafka_and_says_so(rig: Rig, tmp_path: Path) -> None:
    # Given brokers that are down when the daemon starts (Redis is up)
    kafka_port, health_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    rig.env.update({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "RC_HTTP__HEALTH_PORT": str(health_port)})
    readyz = f"http://127.0.0.1:{health_port}/readyz"
    broker = None
    try:
        with rig.daemon(tmp_path) as daemon:
            # Then /readyz says start-up waits for Kafka, and the daemon keeps trying (on a
            # busy machine it may first say it waits for Redis, which it asks first)
            reason = f"waiting for Kafka at {bootstrap} (setting kafka.bootstrap_servers)"
            waiting = await wait_unready(readyz, reason)
            assert waiting.json()["reason"] == reason, waiting.text
            await asyncio.to_thread(daemon.wait_for_log, "waiting for kafka")
            # And its log names the brokers and their setting, not aiokafka's exception
            down = f"Kafka at {bootstrap} does not answer (setting kafka.bootstrap_servers)"
            await asyncio.to_thread(daemon.wait_for_log, down)
            assert daemon.running
            # When the brokers come up, the daemon creates its topics and becomes ready
            _, broker = own_broker(tmp_path / "kafka", port=kafka_port)
            ready = await wait_status(readyz, 200, timeout=90)
            assert ready.json()["ready"] is True
    finally:
        if broker is not None:
            broker.stop()


@pytest.mark.parametrize("command", [["send", "pause", "checkout"], ["pause", "checkout"]])
def test_rolloutctl_names_the_broker_setting_when_no_broker_answers(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broker address where nothing listens
    bootstrap = f"127.0.0.1:{free_port()}"
    assert main(["keygen", "--key-id", "alice", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    # When a command is sent there
    key = ["--key", str(tmp_path / "alice.key"), "--key-id", "alice", "--actor", "ops"]
    code = main([*command, *key, "--bootstrap", bootstrap, "--timeout", "5"])
    # Then rolloutctl says, in one sentence, which brokers, which setting and what to check
    err = capsys.readouterr().err
    assert code == EXIT_FAILURE
    said = f"Kafka at {bootstrap} does not answer (setting kafka.bootstrap_servers): check"
    assert said in err, err
    assert "KafkaConnectionError" not in err, err
    assert "AddressFamily" not in err, err
    assert len(err.strip().splitlines()) == 1, err


async def test_a_hung_broker_makes_readyz_say_not_ready_until_it_answers(
    rig: Rig, tmp_path: Path
) -> None:
    # Given a ready daemon on a broker of its own, silent brokers tolerated for 3 s
    bootstrap, broker = own_broker(tmp_path / "kafka")
    health_port = free_port()
    rig.env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "RC_HTTP__HEALTH_PORT": str(health_port),
            "RC_KAFKA__UNANSWERED_AFTER_SECONDS": "3",
        }
    )
    readyz = f"http://127.0.0.1:{health_port}/readyz"
    try:
        with rig.daemon(tmp_path) as daemon:
            await wait_status(readyz, 200, timeout=90)
            # When the broker hangs: it keeps its sockets open and answers nothing
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                # Then /readyz says not ready, naming the brokers and the setting
                down = await wait_status(readyz, 503, timeout=30)
                said = f"Kafka at {bootstrap} does not answer (setting kafka.bootstrap_servers)"
                assert down.json()["reason"].startswith(said), down.text
                assert "kafka.unanswered_after_seconds" in down.json()["reason"], down.text
                assert daemon.running
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            # And once it answers again, the daemon is ready again
            ready = await wait_status(readyz, 200, timeout=90)
            assert ready.json()["ready"] is True
    finally:
        broker.stop()
