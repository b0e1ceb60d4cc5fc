"""1,000 concurrent rollouts: gate-loop cost.

Creates N running rollouts of :data:`DEFAULT_PLAN` (random stage 0..3, each
started some time ago, so about half are past their stage's minimum duration)
and writes realistic aggregates for each one's current stage through the real
flush script: both arms split by the stage's percent, a few requests per unit
(an exponential number of them), 2% errors, a log-normal latency histogram,
the units themselves (real strings in HyperLogLogs, sized so that about half
the due stages have enough units to advance), and each unit's counts in its
bucket of units, so the gates test every guardrail on units as they do on
the daemon's data. About 5% of the flags are regressed (treatment errors 3x),
so the gates roll some of them back.

Then it gates every flag as the daemon's gate loop does when all of them
received events: one pass, ``engine.gates.run_pass`` with every flag marked
dirty, which reads the flags' states and aggregates a batch at a time and
gates each; with the real :class:`RolloutStore` and :class:`RedisAggregateStore`
and a fixed clock. It measures each pass's wall time, this process's CPU time
and Redis's own CPU time (``INFO cpu``). The first pass applies the decisions
(advances, rollbacks); the later ones see the decided flags in their new stage
or terminal, which is the steady state. The same flags are also gated one by
one, ``for flag in flags: await engine.gates.gate(flag)``, as a gate that runs
alone reads: its state, then its aggregates (``one_by_one_*``). Publishing is recorded in memory:
sending to Kafka happens after the save and is the producer's cost, not the
gate loop's. As a baseline, the same run times the pure part alone
(``gate.evaluate`` and ``machine.step`` on rollouts and aggregates loaded
beforehand), so the output shows how much of a gate is I/O and decoding.

The read path is measured against the one it replaced: the aggregate
read of before, kept in :mod:`bench.legacy_reads` (``SMEMBERS``, then a
pipeline of ``HGETALL`` and ``PFCOUNT``, decoded through dicts, one flag per
read). A second engine gates the same flags with it, in the same two ways; it
shares everything else with the first (the state store, the decision), so
the ratio is what the read path alone changes. The passes of the two engines
alternate, and the steady figures of each are its pass of least CPU time.
The reads alone are timed both ways in alternating rounds, and both reads
must return the same aggregates for every active flag.
``ratio_*`` figures are the new cost over the old one, measured in this run.

The last line printed is one JSON object.

    python bench/gates.py [--rollouts 1000] [--sweeps 4] [--partitions 4] [--unit-scale 1.0]
                           [--profile]

With ``--prometheus``, the gates of rollouts whose guardrails read a real Prometheus
instead (100 rollouts unless ``--rollouts`` says; :mod:`bench.prometheus_gates`):

    python bench/gates.py --prometheus [--rollouts 100] [--seconds 30] [--interval 5]

Uses REDIS_URL when set (its CPU figures then include other clients' load),
else starts a private redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import itertools
import json
import logging
import math
import pstats
import random
import secrets
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from legacy_reads import LegacyAggregateStore, Wire, counting_wire  # beside this script

from controller.adapters.memory import MemoryControl
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.client import RedisClient
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.common.histogram import BUCKET_COUNT, EDGES_MS
from controller.core.machine.gate import evaluate
from controller.core.machine.machine import step
from controller.core.rollouts.plan import DEFAULT_PLAN
from controller.core.rollouts.rollout import GateInput, Phase, Rollout, TickInput
from controller.core.stats.aggregates import ArmAggregate, CellDelta, CellKey, FlagAggregates
from controller.core.stats.folding import PartitionDelta
from controller.core.stats.units import (
    ERRORS,
    EXPOSURES,
    FINE_PER_BIN,
    KIND_COUNT,
    LATENCY,
    REQUESTS,
    UnitBuckets,
    unit_bucket,
)
from controller.core.wire.messages import Arm
from controller.daemon.rollouts.engine import Engine, build_engine
from controller.daemon.rollouts.gates import GATE_BATCH
from controller.ports import DeadLetter, StateWrite
from controller.process.logs import configure as configure_logs
from controller.settings import EngineSettings, LogSettings, RedisSettings, TopicSettings
from tests.support.backing.services import scratch_redis

FLAGS_PER_FLUSH = 25
TOPIC = "rollout.events"
REGRESSED_SHARE = 0.05
ERROR_RATE = 0.02
STAGES = (0, 1, 2, 3)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- the rollouts and their aggregates ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlagSpec:
    rollout: Rollout
    regressed: bool

    @property
    def flag(self) -> str:
        return self.rollout.flag


def make_rollout(rng: random.Random, index: int, now: datetime) -> Rollout:
    """A running rollout at a random stage 0..3, started 0.3x to 1.7x its minimum ago."""
    stage = rng.choice(STAGES)
    minimum = DEFAULT_PLAN.stages[stage].min_duration
    stage_started = now - minimum * rng.uniform(0.3, 1.7)
    started = stage_started - timedelta(minutes=45 * stage + rng.uniform(1, 30))
    return Rollout(
        flag=f"bench.flag-{index:05d}",
        rollout_id=uuid.UUID(int=rng.getrandbits(128)).hex,
        plan=DEFAULT_PLAN,
        phase=Phase.RUNNING,
        stage=stage,
        stage_started_at=stage_started,
        salt=secrets.token_hex(8),
        flag_version=stage + 1,
        stage_versions={s: [s + 1] for s in range(stage + 1)},
        started_at=started,
        updated_at=stage_started,
    )


def lognormal_histogram(n: int, mu: float, sigma: float) -> dict[int, int]:
    """``n`` latencies from LogNormal(mu, sigma) in ms, binned as expected counts."""

    def cdf(x: float) -> float:
        return 0.5 * math.erfc(-(math.log(x) - mu) / (sigma * math.sqrt(2)))

    below = [cdf(edge) for edge in EDGES_MS]
    shares = [below[0], *(b - a for a, b in itertools.pairwise(below)), 1 - below[-1]]
    assert len(shares) == BUCKET_COUNT
    counts = {i: round(n * s) for i, s in enumerate(shares)}
    return {i: c for i, c in counts.items() if c}


def arm_cells(
    rng: random.Random,
    *,
    units: int,
    error_rate: float,
    per_unit: float,
    latency: tuple[float, float],
    next_unit: Iterator[int],
    partitions: int,
) -> list[CellDelta]:
    """One arm's aggregates, spread over the partitions as keyed events would be.

    Unit by unit, as ingest folds them: each unit's partition and its bucket of units
    (:func:`unit_bucket`, so the store holds the buckets a gate reads), its requests
    (an exponential number, ``per_unit`` on average, at least one), their errors and
    latencies, and its exposures.
    """
    hist = lognormal_histogram(max(1, round(units * per_unit)), *latency)
    fine = sorted(hist)
    weights = list(itertools.accumulate(hist[i] for i in fine))
    mean_ms = math.exp(latency[0] + latency[1] ** 2 / 2)
    cells = [CellDelta() for _ in range(partitions)]
    for _ in range(units):
        uid = next(next_unit)
        unit = f"u{uid:08d}"
        cell = cells[uid % partitions]
        cell.units.add(unit)
        base = unit_bucket(unit) * KIND_COUNT
        slots = cell.buckets
        requests = max(1, round(rng.expovariate(1 / per_unit)))
        errors = sum(1 for _ in range(requests) if rng.random() < error_rate)
        exposures = rng.randint(1, 4)
        for slot, n in ((REQUESTS, requests), (ERRORS, errors), (EXPOSURES, exposures)):
            if n:
                slots[base + slot] = slots.get(base + slot, 0) + n
        cell.req += requests
        cell.err += errors
        cell.exp += exposures
        cell.lat_n += requests
        for index in rng.choices(fine, cum_weights=weights, k=requests):
            cell.hist[index] = cell.hist.get(index, 0) + 1
            slot = base + LATENCY + index // FINE_PER_BIN
            slots[slot] = slots.get(slot, 0) + 1
    for cell in cells:
        cell.lat_sum = cell.lat_n * mean_ms
    return cells


# Total units per flag at which the smaller arm just reaches the stage's
# min_units_per_arm: 100 at 1%, 500 at 5%, 1000 at 25%, 2000 at 50%.
UNITS_NEEDED = {
    s: round(DEFAULT_PLAN.stages[s].min_units_per_arm * 100 / DEFAULT_PLAN.stages[s].percent)
    for s in STAGES
}


def flag_cells(
    rng: random.Random,
    spec: FlagSpec,
    *,
    unit_scale: float,
    next_unit: Iterator[int],
    partitions: int,
) -> list[dict[CellKey, CellDelta]]:
    """Both arms of the flag's current stage version, one dict per partition."""
    rollout = spec.rollout
    share = rollout.plan.stages[rollout.stage].percent / 100
    total = max(2, round(UNITS_NEEDED[rollout.stage] * rng.uniform(0.5, 1.6) * unit_scale))
    treatment_units = max(1, round(total * share))
    per_unit = rng.uniform(3.0, 8.0)
    latency = (math.log(rng.uniform(40, 120)), rng.uniform(0.5, 0.9))
    version = rollout.flag_version
    out: list[dict[CellKey, CellDelta]] = [{} for _ in range(partitions)]
    arms = (
        (Arm.TREATMENT, treatment_units, ERROR_RATE * (3 if spec.regressed else 1)),
        (Arm.CONTROL, total - treatment_units, ERROR_RATE),
    )
    for arm, units, error_rate in arms:
        cells = arm_cells(
            rng,
            units=units,
            error_rate=error_rate,
            per_unit=per_unit,
            latency=latency,
            next_unit=next_unit,
            partitions=partitions,
        )
        for part, cell in zip(out, cells, strict=True):
            part[(rollout.flag, version, arm.value)] = cell
    return out


def unit_ids() -> Iterator[int]:
    uid = 0
    while True:
        yield uid
        uid += 1


async def populate(
    states: RolloutStore,
    store: RedisAggregateStore,
    specs: list[FlagSpec],
    *,
    unit_scale: float,
    partitions: int,
    seed: int,
) -> int:
    """Save every rollout and flush its aggregates; return the number of units written."""
    for spec in specs:
        await states.save(spec.flag, StateWrite(rev=0, rollout=spec.rollout))
    claims = {p: await store.claim(p) for p in range(partitions)}
    offsets: dict[int, int | None] = {p: c.offset for p, c in claims.items()}
    rng, next_unit, written = random.Random(seed + 1), unit_ids(), 0
    for start in range(0, len(specs), FLAGS_PER_FLUSH):
        batch: list[dict[CellKey, CellDelta]] = [{} for _ in range(partitions)]
        for spec in specs[start : start + FLAGS_PER_FLUSH]:
            cells_of_flag = flag_cells(
                rng, spec, unit_scale=unit_scale, next_unit=next_unit, partitions=partitions
            )
            for part, cells in zip(batch, cells_of_flag, strict=True):
                part.update(cells)
        for partition, cells in enumerate(batch):
            written += sum(len(c.units) for c in cells.values())
            before = offsets[partition]
            after = (before or 0) + 1 + sum(c.exp + c.req for c in cells.values())
            delta = PartitionDelta(partition=partition, next_offset=after, cells=cells)
            await store.flush(delta, epoch=claims[partition].epoch, expected_offset=before)
            offsets[partition] = after
        done = min(start + FLAGS_PER_FLUSH, len(specs))
        if done % 200 == 0 or done == len(specs):
            progress(f"aggregates written for {done:,}/{len(specs):,} flags ({written:,} units)")
    return written


# -- what the engine talks to besides Redis -------------------------------------------------


@dataclass
class RecordingOutputs:
    """Stands in for the Kafka publisher: keeps the messages, sends nothing."""

    messages: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        self.messages.extend(messages)


class NoDeadLetters:
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        return None


# -- measurements ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sweep:
    wall_s: float
    cpu_s: float
    redis_cpu_s: float
    redis_commands: int
    published: int
    decisions: dict[str, int]
    phases: dict[str, int]

    def summary(self, n: int) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "redis_cpu_s": round(self.redis_cpu_s, 4),
            "ms_per_gate": round(1000 * self.wall_s / n, 4),
            "cpu_ms_per_gate": round(1000 * self.cpu_s / n, 4),
            "redis_commands_per_gate": round(self.redis_commands / n, 2),
            "published_messages": self.published,
            "decisions": self.decisions,
            "phases_after": self.phases,
        }


async def redis_counters(client: RedisClient) -> tuple[float, int]:
    """Redis's own CPU seconds (user + sys) and commands processed so far."""
    info = await client.info()  # one command: the cpu and stats sections among others
    used = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return used, int(info["total_commands_processed"])


def decisions_of(messages: list[tuple[str, str, bytes]], topics: TopicSettings) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for topic, _, value in messages:
        if topic == topics.decisions:
            counts[str(orjson.loads(value)["action"])] += 1
    return dict(sorted(counts.items()))


async def phases_of(states: RolloutStore, flags: list[str]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for flag in flags:
        rollout = (await states.load(flag)).rollout
        counts[rollout.phase.value if rollout else "none"] += 1
    return dict(sorted(counts.items()))


@dataclass(frozen=True, slots=True)
class Gating:
    """One engine and how it gates every flag: in the daemon's passes, or one by one."""

    engine: Engine
    aggregates: RedisAggregateStore
    one_by_one: bool = False

    async def gate_all(self, flags: list[str], *, fresh: bool) -> None:
        if self.one_by_one:
            for flag in flags:
                await self.engine.gates.gate(flag, fresh=fresh)
            return
        # With news for every flag, or (a timer sweep) for none: every state then
        # comes from the sweep's load_all and every read from the last one.
        await self.engine.gates.run_pass(MemoryControl(set(flags)), full=not fresh)


async def sweep(
    gating: Gating,
    flags: list[str],
    *,
    client: RedisClient,
    states: RolloutStore,
    outputs: RecordingOutputs,
    topics: TopicSettings,
    profile: cProfile.Profile | None = None,
    fresh: bool = True,
) -> Sweep:
    first_message = len(outputs.messages)
    if fresh and not gating.one_by_one:
        await gating.aggregates.mark_dirty(set(flags))  # as the flushes of new events do
    redis_cpu, commands = await redis_counters(client)
    wall, cpu = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    await gating.gate_all(flags, fresh=fresh)
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    redis_cpu_after, commands_after = await redis_counters(client)
    new = outputs.messages[first_message:]
    return Sweep(
        wall_s=wall,
        cpu_s=cpu,
        redis_cpu_s=redis_cpu_after - redis_cpu,
        # Less the one INFO call that read the counters before the sweep.
        redis_commands=commands_after - commands - 1,
        published=len(new),
        decisions=decisions_of(new, topics),
        phases=await phases_of(states, flags),
    )


@dataclass(frozen=True, slots=True)
class Baseline:
    pure_s: float
    parse_s: float
    verdicts: dict[str, int]


def pure_baseline(
    loaded: list[tuple[Rollout, FlagAggregates]], docs: list[bytes], now: datetime, repeat: int
) -> Baseline:
    """The gate's decision without I/O: evaluate, then step the gate and the tick.

    Also times decoding one stored rollout document (the engine decodes one per
    load). Each figure is the median of ``repeat`` passes over every flag.
    """
    pure: list[float] = []
    verdicts: Counter[str] = Counter()
    for _ in range(repeat):
        verdicts.clear()
        # As read: no pass reuses what an earlier one worked out from the same buckets.
        fresh = [(rollout, unread(data)) for rollout, data in loaded]
        started = time.process_time()
        for rollout, data in fresh:
            verdict = evaluate(rollout, data, now)
            new, _ = step(rollout, GateInput(verdict, now))
            step(new, TickInput(now))
            verdicts[verdict.kind.value] += 1
        pure.append(time.process_time() - started)
    parse: list[float] = []
    for _ in range(repeat):
        started = time.process_time()
        for doc in docs:
            Rollout.model_validate_json(doc)
        parse.append(time.process_time() - started)
    return Baseline(
        statistics.median(pure), statistics.median(parse), dict(sorted(verdicts.items()))
    )


def unread(data: FlagAggregates) -> FlagAggregates:
    """``data`` with new unit buckets of the same totals, as a new read returns them."""

    def arm(aggregate: ArmAggregate) -> ArmAggregate:
        held = aggregate.buckets
        return aggregate if held is None else replace(aggregate, buckets=UnitBuckets(held.totals))

    return replace(data, treatment=arm(data.treatment), control=arm(data.control))


@dataclass(frozen=True, slots=True)
class Breakdown:
    """CPU time of the engine's two reads, alone, per call; the aggregate read both ways."""

    load_s: float
    read_s: float
    legacy_read_s: float
    batched_load_s: float
    """Per flag, loading the states :data:`GATE_BATCH` flags at a time (``load_many``)."""
    batched_read_s: float
    """Per active flag, reading :data:`GATE_BATCH` flags at a time (``read_many``)."""
    reads: int
    wire: Wire
    """What the new reads of every active flag sent, together."""
    legacy_wire: Wire


async def io_breakdown(
    states: RolloutStore,
    store: RedisAggregateStore,
    legacy: LegacyAggregateStore,
    flags: list[str],
    rounds: int = 3,
) -> Breakdown:
    """One state load per flag, then one aggregate read per active flag, timed apart.

    The aggregate reads run ``rounds`` times each way, alternating (the median
    of each is kept); then once more each way counting what they send, and a
    last time to check that both ways read the same for every flag. The state
    loads and the new reads are also timed a batch at a time, as a pass makes them.
    """
    started = time.process_time()
    rollouts = [(await states.load(flag)).rollout for flag in flags]
    load_s = time.process_time() - started
    started = time.process_time()
    for start in range(0, len(flags), GATE_BATCH):
        await states.load_many(flags[start : start + GATE_BATCH])
    batched_load_s = time.process_time() - started
    active = [
        (r.flag, r.stage_flag_versions()) for r in rollouts if r is not None and r.phase.active
    ]
    new: list[float] = []
    old: list[float] = []
    for _ in range(rounds):
        for reader, times in ((store, new), (legacy, old)):
            started = time.process_time()
            for flag, versions in active:
                await reader.read(flag, versions)
            times.append((time.process_time() - started) / len(active))
    batched: list[float] = []
    for _ in range(rounds):
        started = time.process_time()
        for start in range(0, len(active), GATE_BATCH):
            await store.read_many(active[start : start + GATE_BATCH])
        batched.append((time.process_time() - started) / len(active))
    wires = []
    for reader in (store, legacy):
        with counting_wire() as wire:
            for flag, versions in active:
                await reader.read(flag, versions)
        wires.append(wire)
    for flag, versions in active:
        got, want = await store.read(flag, versions), await legacy.read(flag, versions)
        assert got == want, f"{flag}: the reads differ:\n{got}\n{want}"
    return Breakdown(
        load_s / len(flags),
        statistics.median(new),
        statistics.median(old),
        batched_load_s / len(flags),
        statistics.median(batched),
        len(active),
        *wires,
    )


def tune_garbage_collector() -> None:
    """The daemon's collector settings (as in ``controller.daemon.running.wiring``)."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(50_000, second, third)


def quiet_logs(path: Path) -> None:
    """The daemon's JSON logging at info level, written to a file instead of stdout."""
    configure_logs(LogSettings(level="info", format="json"))
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=path.open("w")))
    logging.getLogger().setLevel(logging.WARNING)


# -- the run --------------------------------------------------------------------------------


async def run(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    prefix = f"benchgates{uuid.uuid4().hex[:8]}"
    settings = RedisSettings(url=redis_url, key_prefix=prefix)
    topics = TopicSettings()
    now = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(args.seed)
    specs = [
        FlagSpec(make_rollout(rng, i, now), rng.random() < REGRESSED_SHARE)
        for i in range(args.rollouts)
    ]
    flags = [s.flag for s in specs]
    async with connect(settings) as client:
        try:
            states = RolloutStore(client, settings=settings)
            store = RedisAggregateStore(client, settings=settings, topic=TOPIC)
            started = time.perf_counter()
            units = await populate(
                states,
                store,
                specs,
                unit_scale=args.unit_scale,
                partitions=args.partitions,
                seed=args.seed,
            )
            progress(
                f"{len(specs):,} rollouts and {units:,} units written in "
                f"{time.perf_counter() - started:.1f}s; stages "
                f"{dict(sorted(Counter(s.rollout.stage for s in specs).items()))}, "
                f"{sum(s.regressed for s in specs)} regressed"
            )

            tune_garbage_collector()
            # The baseline: the same flags, loaded beforehand, decided without I/O.
            loaded: list[tuple[Rollout, FlagAggregates]] = []
            docs: list[bytes] = []
            for flag in flags:
                rollout = (await states.load(flag)).rollout
                assert rollout is not None
                loaded.append((rollout, await store.read(flag, rollout.stage_flag_versions())))
                docs.append(rollout.model_dump_json().encode())
            baseline = pure_baseline(loaded, docs, now, repeat=3)
            progress(
                f"pure gate+machine {1000 * baseline.pure_s / len(flags):.3f} ms/flag, "
                f"one rollout decode {1000 * baseline.parse_s / len(flags):.3f} ms; "
                f"verdicts {baseline.verdicts}"
            )

            outputs = RecordingOutputs()
            legacy = LegacyAggregateStore(client, settings=settings, topic=TOPIC)
            engine, legacy_engine = (
                build_engine(
                    settings=EngineSettings(),
                    topics=topics,
                    states=states,
                    aggregates=aggregates,
                    outputs=outputs,
                    dead_letters=NoDeadLetters(),
                    clock=lambda: now,
                )
                for aggregates in (store, legacy)
            )
            ways = {
                "pass": Gating(engine, store),
                "old read": Gating(legacy_engine, legacy),
                "one by one": Gating(engine, store, one_by_one=True),
                "old read, one by one": Gating(legacy_engine, legacy, one_by_one=True),
            }
            timed: dict[str, list[Sweep]] = {way: [] for way in ways}
            first: Sweep | None = None
            for index in range(args.sweeps):
                for way, gating in ways.items():
                    result = await sweep(
                        gating, flags, client=client, states=states, outputs=outputs, topics=topics
                    )
                    # The first pass applies the decisions; each way's first run warms it.
                    if index == 0 and first is None:
                        first = result
                    timed[way] += [result] if index else []
                    progress(
                        f"round {index + 1}, {way}{'' if index else ' (warming)'}: wall "
                        f"{result.wall_s:.3f}s, cpu {result.cpu_s:.3f}s, redis cpu "
                        f"{result.redis_cpu_s:.3f}s, "
                        f"{result.redis_commands / len(flags):.1f} redis commands/gate, "
                        f"published {result.published}, decisions {result.decisions}"
                    )
            assert first is not None
            # The timer sweep proper: flags without new events reuse their last read.
            timer = await sweep(
                ways["pass"],
                flags,
                client=client,
                states=states,
                outputs=outputs,
                topics=topics,
                fresh=False,
            )
            progress(
                f"timer sweep (no new events): wall {timer.wall_s:.3f}s, cpu {timer.cpu_s:.3f}s, "
                f"{timer.redis_commands / len(flags):.1f} redis commands/gate"
            )
            parts = await io_breakdown(states, store, legacy, flags)
            progress(
                f"alone: one state load {1000 * parts.load_s:.3f} ms cpu, one aggregate "
                f"read {1000 * parts.read_s:.3f} ms cpu (the old read "
                f"{1000 * parts.legacy_read_s:.3f} ms; {parts.reads} active flags, both "
                f"reads the same for each); a batch at a time, per flag: state load "
                f"{1000 * parts.batched_load_s:.3f} ms, aggregate read "
                f"{1000 * parts.batched_read_s:.3f} ms"
            )
            if args.profile:
                # An extra sweep, not reported: the profiler triples its time.
                profile = cProfile.Profile()
                await sweep(
                    ways["pass"],
                    flags,
                    client=client,
                    states=states,
                    outputs=outputs,
                    topics=topics,
                    profile=profile,
                )
                text = io.StringIO()
                pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
                progress(f"profile of one more steady-state sweep, by own time:\n{text.getvalue()}")
        finally:
            keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
            progress(f"deleted {len(keys):,} keys")
    return report(
        len(flags),
        args.partitions,
        units,
        first,
        timed,
        timer,
        baseline,
        parts,
        EngineSettings(),
    )


def report(
    n: int,
    partitions: int,
    units: int,
    first: Sweep,
    timed: dict[str, list[Sweep]],
    timer: Sweep,
    baseline: Baseline,
    parts: Breakdown,
    engine: EngineSettings,
) -> dict[str, Any]:
    least = {way: min(runs, key=lambda s: s.cpu_s) for way, runs in timed.items()}
    steady, old = least["pass"], least["old read"]
    single, old_single = least["one by one"], least["old read, one by one"]
    cpu_per_gate = steady.cpu_s / n
    pure_per_gate = baseline.pure_s / n
    return {
        "rollouts": n,
        "partitions": partitions,
        "units_written": units,
        "sweeps": len(timed["pass"]) + 1,
        "sweep_wall_s": round(steady.wall_s, 4),
        "sweep_cpu_s": round(steady.cpu_s, 4),
        "redis_cpu_s": round(steady.redis_cpu_s, 4),
        "gates_per_cpu_second": round(n / steady.cpu_s),
        "ms_per_gate": round(1000 * steady.wall_s / n, 4),
        "cpu_ms_per_gate": round(1000 * cpu_per_gate, 4),
        "redis_cpu_ms_per_gate": round(1000 * steady.redis_cpu_s / n, 4),
        # Redis's CPU per gate over the daemon's, in the same pass.
        "redis_over_daemon_cpu": round(steady.redis_cpu_s / steady.cpu_s, 3),
        # Commands Redis ran, those a script runs included.
        "redis_commands_per_gate": round(steady.redis_commands / n, 2),
        "pure_ms_per_gate": round(1000 * pure_per_gate, 4),
        "pure_share_of_cpu": round(pure_per_gate / cpu_per_gate, 3),
        "rollout_decode_ms": round(1000 * baseline.parse_s / n, 4),
        # A gate alone loads the state once and reads the aggregates once.
        "state_load_cpu_ms": round(1000 * parts.load_s, 4),
        "aggregate_read_cpu_ms": round(1000 * parts.read_s, 4),
        # The same, per flag, as a pass reads them: a batch at a time.
        "state_load_batched_cpu_ms": round(1000 * parts.batched_load_s, 4),
        "aggregate_read_batched_cpu_ms": round(1000 * parts.batched_read_s, 4),
        # The same with the read of before batching (bench/legacy_reads.py), in this run.
        "old_read_cpu_ms_per_gate": round(1000 * old.cpu_s / n, 4),
        "old_read_redis_cpu_ms_per_gate": round(1000 * old.redis_cpu_s / n, 4),
        "old_read_redis_commands_per_gate": round(old.redis_commands / n, 2),
        "old_aggregate_read_cpu_ms": round(1000 * parts.legacy_read_s, 4),
        "ratio_cpu_per_gate": round(steady.cpu_s / old.cpu_s, 3),
        "ratio_aggregate_read_cpu": round(parts.read_s / parts.legacy_read_s, 3),
        # Every flag gated alone, one after the other (two round trips each), both ways.
        "one_by_one_cpu_ms_per_gate": round(1000 * single.cpu_s / n, 4),
        "old_read_one_by_one_cpu_ms_per_gate": round(1000 * old_single.cpu_s / n, 4),
        "ratio_one_by_one_cpu_per_gate": round(single.cpu_s / old_single.cpu_s, 3),
        # Sent by this process (a script's own commands run in Redis and are not counted).
        "aggregate_read_commands_sent": round(parts.wire.commands / parts.reads, 2),
        "aggregate_read_round_trips": round(parts.wire.writes / parts.reads, 2),
        "old_aggregate_read_commands_sent": round(parts.legacy_wire.commands / parts.reads, 2),
        "old_aggregate_read_round_trips": round(parts.legacy_wire.writes / parts.reads, 2),
        "baseline_verdicts": baseline.verdicts,
        "rollbacks": first.decisions.get("rollback", 0),
        "advances": first.decisions.get("advance", 0) + first.decisions.get("complete", 0),
        "published_messages": first.published + sum(s.published for s in timed["pass"]),
        "per_sweep": [s.summary(n) for s in [first, *timed["pass"]]],
        "old_read_per_sweep": [s.summary(n) for s in timed["old read"]],
        "one_by_one_per_sweep": [s.summary(n) for s in timed["one by one"]],
        "old_read_one_by_one_per_sweep": [s.summary(n) for s in timed["old read, one by one"]],
        "timer_sweep_cpu_s": round(timer.cpu_s, 4),
        "timer_cpu_ms_per_gate": round(1000 * timer.cpu_s / n, 4),
        "timer_redis_commands_per_gate": round(timer.redis_commands / n, 2),
        # Every active rollout is gated once per sweep interval; without new
        # events that is the timer sweep, which reuses the last aggregates read.
        "core_share_sweep_interval": round(timer.cpu_s / engine.sweep_interval_seconds, 4),
        "redis_core_share_sweep_interval": round(
            timer.redis_cpu_s / engine.sweep_interval_seconds, 4
        ),
        # Flags that received events are gated every gate interval as well: if all
        # of them receive traffic, that is a full pass every gate interval.
        "core_share_all_dirty": round(steady.cpu_s / engine.gate_interval_seconds, 3),
        "sweep_interval_s": engine.sweep_interval_seconds,
        "gate_interval_s": engine.gate_interval_seconds,
    }


def implication(result: dict[str, Any]) -> str:
    """What the steady-state sweep means for the daemon's one event loop."""
    share, dirty = result["core_share_sweep_interval"], result["core_share_all_dirty"]
    redis = result["redis_core_share_sweep_interval"]
    text = (
        f"{result['rollouts']:,} rollouts: one sweep every {result['sweep_interval_s']:g} s costs "
        f"{100 * share:.0f}% of one core (Redis {100 * redis:.1f}%)"
    )
    if share >= 1:
        text += "; a sweep outlasts the interval, so the gate loop never idles"
    return text + (
        f"; gating every flag on each {result['gate_interval_s']:g} s pass (all of them receiving "
        f"events) would need {dirty:.1f} cores, on the event loop that also runs ingest"
    )


def main(args: argparse.Namespace) -> dict[str, Any]:
    with scratch_redis("rc-bench-gates-") as (workdir, redis_url, redis_desc):
        quiet_logs(workdir / "controller.log")
        progress(f"redis: {redis_desc}")
        return asyncio.run(run(args, redis_url))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rollouts",
        type=int,
        default=None,
        help="concurrent rollouts (1000; 100 with --prometheus)",
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="gate on guardrails read from a real Prometheus (bench/prometheus_gates.py)",
    )
    parser.add_argument("--seconds", type=float, default=30, help="with --prometheus: how long")
    parser.add_argument(
        "--interval", type=float, default=5, help="with --prometheus: seconds between readings"
    )
    parser.add_argument(
        "--rate", type=float, default=200, help="with --prometheus: requests per second a flag"
    )
    parser.add_argument(
        "--sweeps",
        type=int,
        default=4,
        help="rounds of passes to time (at least 2; the first warms), each way",
    )
    parser.add_argument(
        "--unit-scale",
        type=float,
        default=1.0,
        help="scale the units per flag (below 1, more due stages hold for too few units)",
    )
    parser.add_argument(
        "--partitions", type=int, default=4, help="events-topic partitions the aggregates span"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    parser.add_argument(
        "--profile", action="store_true", help="profile one more sweep, printed to stderr"
    )
    arguments = parser.parse_args()
    if arguments.prometheus:
        import prometheus_gates  # beside this script

        rollouts = arguments.rollouts or 100
        found = prometheus_gates.main(
            rollouts, arguments.seconds, arguments.interval, arguments.rate
        )
        print(json.dumps(found))
        sys.exit(0)
    arguments.rollouts = arguments.rollouts or 1000
    if arguments.sweeps < 2:
        parser.error("--sweeps: at least 2 (the first applies the decisions)")
    result = main(arguments)
    result["implication"] = implication(result)
    progress(result["implication"])
    progress(
        f"CPU per gate: the daemon {result['cpu_ms_per_gate']:.3f} ms, Redis "
        f"{result['redis_cpu_ms_per_gate']:.3f} ms (Redis/daemon "
        f"{result['redis_over_daemon_cpu']:.2f}); the decision alone "
        f"{result['pure_ms_per_gate']:.3f} ms"
    )
    print(json.dumps(result))
