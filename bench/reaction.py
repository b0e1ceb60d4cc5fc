"""Reaction time: from a regression to the rollback decision on rollout.decisions.

Under steady background traffic (default 20,000 events/s over 20 flags,
through the broker), each round starts a rollout of a fresh flag at 50%,
serves it healthy for a few seconds, then makes its treatment fail 25% of
requests instead of 2%. For every round it measures:

* ``from_first_bad``: first bad event produced → rollback decision read;
* ``from_crossing``: the moment the sequential bound first crosses, computed
  offline from the same events in the order they were produced (the earliest
  any gate could have known) → rollback decision read.

Target: ``from_crossing`` p95 ≤ 1 s while ingest keeps up. A rollback of a
round's flag while it is still healthy is a false rollback: it is counted
apart (``false_rollbacks``, with how long after the start it came) and never
as a reaction; such a round is replaced by another, up to three times
``--rounds`` in all. The last line printed is one JSON object.

    python bench/reaction.py [--rounds 5] [--rate 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.stats.sequential import proportion_test
from controller.core.trust import signing
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from controller.ctl.operate.commands import encode_command, signed_model
from tests.support.backing.services import resolve_kafka, resolve_redis
from tests.support.controller_process import ControllerProcess, controller_env

TOPICS = ("events", "commands", "monitors", "flag_state", "decisions", "alerts", "dlq")
PLAN = Plan(
    stages=[
        Stage(percent=50, min_duration=timedelta(hours=1), min_units_per_arm=0),
        Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
    ],
    guardrails=[Guardrail(metric="error_rate")],
)
HEALTHY, BROKEN = 0.02, 0.25


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Round:
    flag: str
    salt: str = ""
    version: int = 0
    broken_since: float = 0.0
    # (produced at, arm, failed) of every request of the flag, in production order
    requests: list[tuple[float, Arm, bool]] = field(default_factory=list)
    decided_at: float = 0.0
    started_at: float = 0.0
    false_rollback: bool = False
    """Rolled back while still healthy: no reaction to measure."""


class Bench:
    def __init__(self, bootstrap: str, prefix: str, rate: int) -> None:
        self.bootstrap, self.prefix, self.rate = bootstrap, prefix, rate
        self.topics = {name: f"{prefix}.{name}" for name in TOPICS}
        self.key = Ed25519PrivateKey.generate()
        self.rounds: list[Round] = []
        self.current: Round | None = None
        self.states: dict[str, dict[str, Any]] = {}
        self.decisions: dict[str, float] = {}
        self.sent = 0
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)

    def env(self, redis_url: str) -> dict[str, str]:
        env = controller_env(
            bootstrap=self.bootstrap,
            redis_url=redis_url,
            prefix=self.prefix,
            events=self.topics["events"],
            dlq=self.topics["dlq"],
        )
        env.update({f"RC_TOPICS__{n.upper()}": t for n, t in self.topics.items()})
        env["RC_ENGINE__OPERATOR_KEYS"] = orjson.dumps(
            {"bench": signing.public_key_text(self.key.public_key())}
        ).decode()
        env["RC_INGEST__MAX_BATCH_RECORDS"] = "5000"
        env["RC_INGEST__FETCH_TIMEOUT_MS"] = "50"
        env["RC_LOG__LEVEL"] = "warning"
        return env

    async def create_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        await admin.create_topics(
            [
                NewTopic(t, num_partitions=8 if n == "events" else 1, replication_factor=1)
                for n, t in self.topics.items()
            ]
        )
        await admin.close()

    async def follow(self) -> None:
        """Record flag states and the time each rollback decision is readable."""
        consumer = AIOKafkaConsumer(
            self.topics["flag_state"],
            self.topics["decisions"],
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=50)
                now = time.time()
                for records in batch.values():
                    for record in records:
                        message = orjson.loads(record.value)
                        if message["type"] == "flag_state":
                            self.states[message["flag"]] = message
                        elif message["action"] == "rollback":
                            self.decisions.setdefault(message["flag"], now)
        finally:
            await consumer.stop()

    async def background(self) -> None:
        """Steady traffic over 20 flags without rollouts, plus the current round's flag."""
        rng = random.Random(1)
        tick = 0.02
        while True:
            started = time.time()
            for _ in range(int(self.rate * tick)):
                if self.current is not None and rng.random() < 0.15:
                    await self.serve(self.current, rng)
                    continue
                unit = f"u{rng.randrange(200_000)}"
                body = {
                    "type": "exposure",
                    "v": 1,
                    "id": uuid.uuid4().hex,
                    "ts": 0,
                    "flag": f"bg-{rng.randrange(20)}",
                    "unit": unit,
                    "arm": "control",
                    "flag_version": 1,
                }
                await self.producer.send(
                    self.topics["events"], key=unit.encode(), value=orjson.dumps(body)
                )
                self.sent += 1
            await asyncio.sleep(max(0.0, tick - (time.time() - started)))

    async def serve(self, round_: Round, rng: random.Random) -> None:
        state = self.states.get(round_.flag)
        if state is None or state["status"] != "rolling_out":
            return
        unit = f"u{rng.randrange(100_000)}"
        arm = assign(round_.flag, state["salt"], unit, state["percent"])
        broken = round_.broken_since > 0 and arm is Arm.TREATMENT
        failed = rng.random() < (BROKEN if broken else HEALTHY)
        body = {
            "type": "request",
            "v": 1,
            "id": uuid.uuid4().hex,
            "ts": 0,
            "flag": round_.flag,
            "unit": unit,
            "arm": arm.value,
            "flag_version": state["version"],
            "error": failed,
            "latency_ms": 10.0,
        }
        await self.producer.send(self.topics["events"], key=unit.encode(), value=orjson.dumps(body))
        round_.requests.append((time.time(), arm, failed))
        self.sent += 1

    async def run_round(self, index: int) -> Round:
        round_ = Round(flag=f"target-{index}-{uuid.uuid4().hex[:6]}")
        command = signed_model(
            "start", round_.flag, private_key=self.key, key_id="bench", actor="bench", plan=PLAN
        )
        await self.producer.send_and_wait(
            self.topics["commands"], key=round_.flag.encode(), value=encode_command(command)
        )
        while round_.flag not in self.states:
            await asyncio.sleep(0.05)
        self.current = round_
        round_.started_at = time.time()
        while time.time() - round_.started_at < 4:  # healthy traffic first
            if round_.flag in self.decisions:
                round_.false_rollback, round_.decided_at = True, self.decisions[round_.flag]
                self.current = None
                return round_
            await asyncio.sleep(0.02)
        round_.broken_since = time.time()
        while round_.flag not in self.decisions:
            if time.time() - round_.broken_since > 60:
                raise RuntimeError(f"no rollback for {round_.flag} within 60 s")
            await asyncio.sleep(0.02)
        round_.decided_at = self.decisions[round_.flag]
        self.current = None
        return round_


def crossing_time(round_: Round) -> float:
    """When the sequential bound first crossed, replaying the produced requests in order."""
    counts = {Arm.TREATMENT: [0, 0], Arm.CONTROL: [0, 0]}
    for i, (at, arm, failed) in enumerate(round_.requests):
        counts[arm][0] += failed
        counts[arm][1] += 1
        if at < round_.broken_since or i % 10:
            continue
        (e_t, n_t), (e_c, n_c) = counts[Arm.TREATMENT], counts[Arm.CONTROL]
        if min(n_t, n_c) < PLAN.min_metric_events:  # the gate's floor: in each arm
            continue
        if proportion_test(
            e_t,
            n_t,
            e_c,
            n_c,
            direction="lower_is_better",
            alpha=PLAN.alpha_for("error_rate"),
            n_tune=PLAN.n_tune,
        ).regressed:
            return at
    return round_.decided_at


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="rc-reaction-"))
    with ExitStack() as stack:
        bootstrap, stop_kafka, kafka_desc = resolve_kafka(workdir)
        stack.callback(stop_kafka)
        redis_url, stop_redis, redis_desc = resolve_redis(workdir)
        stack.callback(stop_redis)
        progress(f"broker: {kafka_desc}; redis: {redis_desc}")
        bench = Bench(bootstrap, f"react{uuid.uuid4().hex[:6]}", args.rate)
        await bench.create_topics()
        await bench.producer.start()
        daemon = ControllerProcess(env=bench.env(redis_url), log_path=workdir / "controller.log")
        daemon.start()
        stack.callback(daemon.kill)
        tasks = [asyncio.create_task(bench.follow()), asyncio.create_task(bench.background())]
        try:
            await asyncio.sleep(6)  # group joins, then steady traffic
            sent_before, t_before = bench.sent, time.time()
            for index in range(3 * args.rounds):
                if sum(not r.false_rollback for r in bench.rounds) == args.rounds:
                    break
                done = await bench.run_round(index)
                bench.rounds.append(done)
                if done.false_rollback:
                    progress(
                        f"round {index + 1}: FALSE rollback of a healthy flag "
                        f"{done.decided_at - done.started_at:.2f} s after its start"
                    )
                    continue
                after_bad = done.decided_at - done.broken_since
                after_cross = done.decided_at - crossing_time(done)
                progress(
                    f"round {index + 1}: rollback {after_bad:.2f} s after the first bad event, "
                    f"{after_cross:.2f} s after the bound crossed"
                )
            achieved = (bench.sent - sent_before) / (time.time() - t_before)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await bench.producer.stop()
            daemon.terminate()
    reacted = [r for r in bench.rounds if not r.false_rollback]
    false = [r for r in bench.rounds if r.false_rollback]
    from_bad = [r.decided_at - r.broken_since for r in reacted] or [math.nan]
    from_cross = [r.decided_at - crossing_time(r) for r in reacted] or [math.nan]
    return {
        "rounds": len(reacted),
        "false_rollbacks": len(false),
        "false_rollback_after_s": [round(r.decided_at - r.started_at, 2) for r in false],
        "target_rate_eps": args.rate,
        "achieved_rate_eps": round(achieved),
        "from_first_bad_p50_s": round(statistics.median(from_bad), 3),
        "from_first_bad_p95_s": round(p95(from_bad), 3),
        "from_crossing_p50_s": round(statistics.median(from_cross), 3),
        "from_crossing_p95_s": round(p95(from_cross), 3),
        "from_crossing_max_s": round(max(from_cross), 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="regressions to inject")
    parser.add_argument("--rate", type=int, default=20_000, help="background events per second")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
