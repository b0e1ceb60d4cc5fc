"""Ingest's decode + fold per event, in process, against msgspec decoding alone.

Makes N mixed events (those of ``bench/ingest.py``), splits them into
partition batches of ``--batch`` records and times the daemon's folder over
all of them (``controller.daemon.ingest.batches.Folder``: decoding, validation and
the fold into cells) and, beside it, ``msgspec.json.decode`` of the same
bytes with no schema. Times are CPU time of this process, the best and the
median of ``--passes`` passes, so that other work on the machine moves them
little. The last line printed is one JSON object.

    python bench/decode_fold.py [--events 200000] [--batch 1250] [--passes 15]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.daemon.ingest.batches import Folder
from controller.ports import DeadLetter, Record
from controller.settings import IngestSettings
from tests.support.reference import StubRecord, encode, make_event


def timed(run: Callable[[], None], passes: int, n: int) -> list[float]:
    """CPU nanoseconds per event of each pass of ``run`` (after one warm-up pass)."""
    run()
    out = []
    for _ in range(passes):
        started = time.process_time()
        run()
        out.append((time.process_time() - started) * 1e9 / n)
    return out


def main(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(1)
    values = [
        encode(make_event(rng, i, flags=20, units=200_000, versions=1, error_rate=0.02))
        for i in range(args.events)
    ]
    records: list[Record] = [StubRecord(v, i) for i, v in enumerate(values)]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    folder = Folder(max_event_bytes=IngestSettings().max_event_bytes)
    rejected: list[DeadLetter] = []

    def fold_all() -> None:
        for batch in batches:
            folder.fold(0, batch, rejected)

    def decode_all() -> None:
        decode = msgspec.json.decode
        for value in values:
            decode(value)

    # The daemon's collector settings (controller.daemon.running.wiring).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    folded = timed(fold_all, args.passes, args.events)
    bare = timed(decode_all, args.passes, args.events)
    assert not rejected
    return {
        "events": args.events,
        "batch": args.batch,
        "passes": args.passes,
        "decode_fold_ns_best": round(min(folded)),
        "decode_fold_ns_median": round(statistics.median(folded)),
        "bare_decode_ns_best": round(min(bare)),
        "bare_decode_ns_median": round(statistics.median(bare)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to make")
    parser.add_argument("--batch", type=int, default=1250, help="records per partition batch")
    parser.add_argument("--passes", type=int, default=15, help="timed passes")
    print(json.dumps(main(parser.parse_args())))
