"""The Quix Streams side of ``bench/peers.py``: count the events of a topic in Quix's state.

A plain Quix Streams application, run by ``peers.py`` in a child process: it reads
``TOPIC`` from the start in a fresh consumer group, decodes each value as JSON (Quix's
own ``"json"`` deserializer) and counts it per (flag, arm or variant, event type) in its
state store (RocksDB, with Quix's changelog topic), committing as Quix does by default
(a checkpoint every 5 s). Quix scopes state by the message key, here the unit: each
unit's counts are kept apart, one read and one write per event, as the controller reads
and writes one arm's aggregate per event. Counting across units would take Quix's
``group_by``, a repartition through a second topic (one more produce and consume per
event), which this application leaves out.

Progress goes to stdout, one line per ``--report`` events processed (1,000) (the count, alone),
and ``done`` once all ``--events`` are processed and the application stopped (its last
checkpoint committed). ``peers.py`` times its window on these lines.

    python bench/quix_counts.py BOOTSTRAP TOPIC --events N
        [--guarantee exactly-once|at-least-once] [--state-dir DIR] [--report 1000]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from quixstreams import Application, State


def main(args: argparse.Namespace) -> None:
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        processing_guarantee=args.guarantee,
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    topic = app.topic(args.topic, value_deserializer="json", key_deserializer="bytes")
    frame = app.dataframe(topic)
    processed = 0
    report, target = args.report, args.events

    def count(value: dict[str, Any], state: State[str, int]) -> None:
        nonlocal processed
        key = f"{value['flag']}|{value.get('arm', value.get('variant'))}|{value['type']}"
        state.set(key, state.get(key, 0) + 1)
        processed += 1
        if processed % report == 0 or processed == target:
            print(processed, flush=True)
            if processed >= target:
                app.stop()

    frame.update(count, stateful=True)
    app.run(collect=False)
    print("done", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap", help="the broker's bootstrap address")
    parser.add_argument("topic", help="the topic to count")
    parser.add_argument("--events", type=int, required=True, help="stop after this many")
    parser.add_argument(
        "--guarantee",
        choices=("exactly-once", "at-least-once"),
        default="exactly-once",
        help="Quix's processing guarantee",
    )
    parser.add_argument("--state-dir", default="state", help="where Quix keeps its RocksDB")
    parser.add_argument("--report", type=int, default=1000, help="print the count this often")
    main(parser.parse_args())
    sys.exit(0)
