"""Ingest's decode + fold per event, in process, against msgspec decoding alone.

Makes N mixed events (those of ``bench/ingest.py``), splits them into
partition batches of ``--batch`` records and times the daemon's folder over
all of them (``controller.daemon.ingest.batches.Folder``: decoding, validation and
the fold into cells) and, beside it, ``msgspec.json.decode`` of the same
bytes with no schema. The folder is timed twice, with the native fold
(``native/fold``, where it is installed: ``decode_fold_ns_*``) and with the
Python path alone (``python_decode_fold_ns_*``); for each, ``*_flush_args_ns_*``
times what the flush then reads of every cell to build its arguments (counters,
unit buckets, floats, units), the draw of its units into the watched sample and
the adding of its unit bucket counts to a copy of its lanes (each made from
nothing: a cell's first flush), natively beside the native fold. Times are CPU
time of this process, the best and the median of ``--passes`` passes, so that
other work on the machine moves them little. The last line printed is one JSON object.

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
from array import array
from collections.abc import Callable
from functools import partial
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.redis.cells.copies import added_lanes
from controller.adapters.redis.cells.layout import lane_of_slots
from controller.adapters.redis.cells.native import native_lanes, watched
from controller.core.stats import PartitionDelta, watched_members
from controller.daemon.ingest.batches import Folder
from controller.daemon.ingest.native_fold import native_folder
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
    rejected: list[DeadLetter] = []
    native = Folder(max_event_bytes=IngestSettings().max_event_bytes)
    adder = native_lanes(lane_of_slots()) or added_lanes
    python = Folder(max_event_bytes=IngestSettings().max_event_bytes, native=False)
    deltas: dict[Folder, list[PartitionDelta]] = {native: [], python: []}

    def fold_all(folder: Folder) -> None:
        deltas[folder] = [folder.fold(0, batch, rejected) for batch in batches]

    def flush_args(folder: Folder) -> None:
        # The native folder's flush draws and adds lanes natively too (.cells.native).
        draw, add = (watched, adder) if folder is native else (watched_members, added_lanes)
        for delta in deltas[folder]:
            for cell in delta.cells.values():
                add(array("H"), array("I"), cell.bucket_counts())
                cell.base_counters()
                cell.floats()
                list(cell.units)
                draw(cell.units)

    def decode_all() -> None:
        decode = msgspec.json.decode
        for value in values:
            decode(value)

    # The daemon's collector settings (controller.daemon.running.wiring).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    out: dict[str, object] = {
        "events": args.events,
        "batch": args.batch,
        "passes": args.passes,
        "native": native_folder(1) is not None,
    }
    for name, folder in (("", native), ("python_", python)):
        folded = timed(partial(fold_all, folder), args.passes, args.events)
        built = timed(partial(flush_args, folder), args.passes, args.events)
        out |= figures(f"{name}decode_fold", folded) | figures(f"{name}flush_args", built)
    out |= figures("bare_decode", timed(decode_all, args.passes, args.events))
    assert not rejected
    return out


def figures(name: str, times: list[float]) -> dict[str, int]:
    return {
        f"{name}_ns_best": round(min(times)),
        f"{name}_ns_median": round(statistics.median(times)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to make")
    parser.add_argument("--batch", type=int, default=1250, help="records per partition batch")
    parser.add_argument("--passes", type=int, default=15, help="timed passes")
    print(json.dumps(main(parser.parse_args())))
