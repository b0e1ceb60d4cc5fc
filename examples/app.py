"""An example app: serve a flag with FlagClient and report what happened with EventEmitter.

    python examples/app.py --bootstrap localhost:9092 --flag checkout --units 5000 --seconds 30

(``--bootstrap`` defaults to ``$KAFKA_BOOTSTRAP_SERVERS``, which ``rollout-controller
dev up`` prints.)

Every second it serves a few hundred requests to random units, emits an
exposure and a request outcome for each, and prints the arms it served and
the emitter's counters. Each event carries the evaluation's cohort: a unit a
holdout keeps out (or a targeted stage's rings leave out) is served control
but is no part of the stage's control, and is counted apart only when its
events say so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
from collections import Counter

from controller.core.rules import Cohort
from controller.core.wire import Arm, Evaluation
from controller.sdk import EventEmitter, FlagClient
from controller.settings import KafkaSettings

REQUESTS_PER_SECOND = 200


def serve(flags: FlagClient, events: EventEmitter, flag: str, unit: str) -> Evaluation:
    """Handle one request: evaluate the flag, pretend to do the work, report it."""
    found = flags.evaluate(flag, unit)
    # The cohort goes with every event: without it a held-out unit counts as the control.
    arm, version, cohort = found.arm, found.version, found.cohort
    events.exposure(found.flag, unit, arm, version, cohort=cohort)
    latency = round(random.lognormvariate(3, 0.3), 2)  # simulated work
    failed = random.random() < 0.02  # noqa: S311
    events.request(found.flag, unit, arm, version, error=failed, latency_ms=latency, cohort=cohort)
    return found


async def run(args: argparse.Namespace) -> None:
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap)
    # With the controller's public key, only the flag states it signed are served.
    keys = dict(key.split("=", 1) for key in args.flag_key)
    async with FlagClient(kafka, keys=keys) as flags, EventEmitter(kafka) as events:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(flags.ready.wait(), 10)
        for second in range(1, args.seconds + 1):
            arms: Counter[str] = Counter()
            for _ in range(REQUESTS_PER_SECOND):
                unit = f"u{random.randrange(args.units)}"  # noqa: S311
                found = serve(flags, events, args.flag, unit)
                arms[Cohort.HOLDOUT if found.cohort is Cohort.HOLDOUT else found.arm] += 1
            state = flags.state(args.flag)
            print(
                f"{second:>4}s version={state.version if state else 0} "
                f"treatment={arms[Arm.TREATMENT]} control={arms[Arm.CONTROL]} "
                f"held_out={arms[Cohort.HOLDOUT]} "
                f"sent={events.sent} buffered={events.buffered} dropped={dict(events.dropped)} "
                f"rejected_states={flags.rejected}"
            )
            await asyncio.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        help="Kafka host:port (default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092)",
    )
    parser.add_argument("--flag", default="checkout", help="the flag to serve")
    parser.add_argument("--units", type=int, default=5000, help="how many distinct units")
    parser.add_argument("--seconds", type=int, default=30, help="how long to run")
    parser.add_argument(
        "--flag-key",
        action="append",
        default=[],
        metavar="KEY_ID=PUBLIC_KEY",
        help="verify flag states with this controller key (from `rollout-controller "
        "signing-key`); repeat while a key is rotated",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
