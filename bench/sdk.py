"""What a flag evaluation with its exposure costs the app, per call, on each SDK path.

In one run, against a real broker (the embedded one, or KAFKA_BOOTSTRAP_SERVERS),
times every call of: a bare ``dict`` lookup (the baseline), the asyncio client
(``Flags.arm`` + ``exposure``), the thread-backed client (``SyncFlags``, same
calls), ``SyncFlags.measure`` (exposure + request outcome), and OpenFeature's
``client.get_boolean_value`` through the provider with an exposure on every
evaluation and with the default once-per-unit exposures. Events really go to
the broker while the calls are timed (the asyncio path yields to its loop
every 1,000 calls). Each call is timed alone with ``perf_counter_ns``, so every
figure, the baseline's too, includes the timer's own cost. Prints ns/call
(mean, p50, p99) and the ratio to the baseline; the last line is one JSON object.

    python bench/sdk.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext

from controller.sdk.events import EventEmitter
from controller.sdk.flags import FlagClient
from controller.sdk.measure import Flags
from controller.sdk.openfeature import RolloutProvider
from controller.sdk.sync import SyncFlags
from controller.settings import KafkaSettings
from tests.support.backing.services import resolve_kafka

FLAG = "checkout.new-flow"
UNITS = [f"user-{i}" for i in range(10_000)]
BURST = 1_000


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def summary(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean": round(statistics.fmean(ordered), 1),
        "p50": float(ordered[len(ordered) // 2]),
        "p99": float(ordered[int(len(ordered) * 0.99) - 1]),
    }


def timed(call: Callable[[int], object], calls: int) -> list[int]:
    """Time each call alone (``call(i)``) and return the durations in ns."""
    clock = time.perf_counter_ns
    samples = [0] * calls
    for i in range(calls):
        began = clock()
        call(i)
        samples[i] = clock() - began
    return samples


async def topics(bootstrap: str) -> tuple[str, str]:
    suffix = str(time.time_ns())
    flag_topic, events_topic = f"bench.flags.{suffix}", f"bench.events.{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(name=flag_topic, num_partitions=1, replication_factor=1),
                NewTopic(name=events_topic, num_partitions=4, replication_factor=1),
            ]
        )
    finally:
        await admin.close()
    state = {
        "type": "flag_state",
        "v": 1,
        "id": "s1",
        "ts": int(time.time() * 1000),
        "flag": FLAG,
        "version": 1,
        "status": "rolling_out",
        "percent": 25.0,
        "salt": "bench",
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(flag_topic, key=FLAG.encode(), value=orjson.dumps(state))
    finally:
        await producer.stop()
    return flag_topic, events_topic


def bare_dict(calls: int) -> list[int]:
    table = {FLAG: ("treatment", 1)}
    return timed(lambda i: table[FLAG], calls)


async def async_client(kafka: KafkaSettings, flag_topic: str, events: str, calls: int) -> list[int]:
    source = FlagClient(kafka, topic=flag_topic)
    emitter = EventEmitter(kafka, topic=events, max_buffered=calls + 1)
    async with Flags(source, emitter) as flags:
        await asyncio.wait_for(source.ready.wait(), 30)

        def call(i: int) -> None:
            unit = UNITS[i % len(UNITS)]
            arm, version = flags.arm(FLAG, unit)
            flags.exposure(FLAG, unit, arm, version)

        samples: list[int] = []
        for start in range(0, calls, BURST):

            def burst(i: int, start: int = start) -> None:
                call(start + i)

            samples += timed(burst, min(BURST, calls - start))
            await asyncio.sleep(0)  # let the emitter send, as a handler's awaits would
    progress(f"async: sent {emitter.sent}, dropped {dict(+emitter.dropped)}")
    return samples


def sync_paths(
    kafka: KafkaSettings, flag_topic: str, events: str, calls: int
) -> dict[str, list[int]]:
    flags = SyncFlags(kafka, flag_topic=flag_topic, events_topic=events, max_buffered=4 * calls)
    assert flags.wait_loaded(30), "the flag states did not load"

    def exposure(i: int) -> None:
        unit = UNITS[i % len(UNITS)]
        arm, version = flags.arm(FLAG, unit)
        flags.exposure(FLAG, unit, arm, version)

    def measured(i: int) -> None:
        with flags.measure(FLAG, UNITS[i % len(UNITS)]):
            pass

    results = {"sync": timed(exposure, calls), "sync_measure": timed(measured, calls)}
    contexts = [EvaluationContext(targeting_key=unit) for unit in UNITS]
    for mode in ("every", "once"):
        provider = RolloutProvider(flags, exposures="every" if mode == "every" else "once")
        api.set_provider_and_wait(provider, f"bench-{mode}")
        client = api.get_client(f"bench-{mode}")

        def evaluate(i: int, client: OpenFeatureClient = client) -> bool:
            return client.get_boolean_value(FLAG, False, contexts[i % len(contexts)])

        results[f"openfeature_{mode}"] = timed(evaluate, calls)
    flags.close()
    progress(f"sync: sent {flags.sent}, dropped {dict(+flags.dropped)}")
    return results


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        bootstrap, stop_kafka, description = resolve_kafka(Path(workdir))
        progress(f"broker: {description}")
        try:
            flag_topic, events = await topics(bootstrap)
            kafka = KafkaSettings(bootstrap_servers=bootstrap)
            samples = {"dict": bare_dict(args.calls)}
            samples["async"] = await async_client(kafka, flag_topic, events, args.calls)
            samples |= await asyncio.to_thread(sync_paths, kafka, flag_topic, events, args.calls)
        finally:
            api.clear_providers()
            stop_kafka()
    figures = {name: summary(values) for name, values in samples.items()}
    baseline = figures["dict"]["mean"]
    for name, figure in figures.items():
        figure["ratio"] = round(figure["mean"] / baseline, 1)
        print(
            f"{name:>18}: mean {figure['mean']:>9.1f} ns  p50 {figure['p50']:>8.0f} ns  "
            f"p99 {figure['p99']:>8.0f} ns  x{figure['ratio']} the dict lookup"
        )
    return {"calls": args.calls, "ns_per_call": figures}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000, help="timed calls per path")
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result))
