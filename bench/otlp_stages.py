"""Where the OTLP Kafka path's CPU per span goes, in process, stage by stage.

Makes the Collector's records of ``bench/otlp.py`` (``--spans`` SERVER spans
with one ``feature_flag.evaluation`` event each, ``--per-record`` spans a
record, 20 flags with their rollouts known) and times, per span, what the
daemon's OTLP folder does with each record
(:class:`~controller.daemon.ingest.otlp.OtlpFolder`): the decoder it runs
(``decode_traces_flat``: native where the extension is installed) and, beside
it, the Python decoder it falls back to without it, the translation into
exposures and request outcomes (:class:`~controller.core.telemetry.Translator`)
and the fold into cells, each on the previous stage's output (the flush's
arguments, Redis and the consumer are ``bench/otlp.py``'s). Times are CPU time
of this process, the median of ``--passes`` passes. With ``--profile``,
cProfile's twenty costliest functions of one whole pass follow. The last line
printed is one JSON object.

    python bench/otlp_stages.py [--spans 100000] [--per-record 100] [--passes 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.otlp import decode_traces_flat, decode_traces_projected, native_decoder
from controller.core.stats import fold
from controller.core.telemetry import Spans, Translator, rules_of
from controller.core.wire import InEvent
from tests.support.otel.otlp_records import T0_NS, span_exports

FLAGS = [f"otlp-bench-{i:02d}" for i in range(20)]


def median_ns(run: Callable[[], object], passes: int, n: int) -> int:
    """The median CPU nanoseconds per span of ``passes`` passes of ``run`` (after a warm-up)."""
    run()
    out = []
    for _ in range(passes):
        started = time.process_time()
        run()
        out.append((time.process_time() - started) * 1e9 / n)
    return round(statistics.median(out))


def main(args: argparse.Namespace) -> dict[str, object]:
    raws = span_exports(args.spans, args.per_record, FLAGS, units=200_000)
    known = {flag: rules_of(flag, None, 1) for flag in FLAGS}
    now_ms = T0_NS // 1_000_000 + args.spans  # the last span's millisecond, as the records say
    decoded = [decode_traces_flat(raw) for raw in raws]
    assert all(isinstance(batch, Spans) and not batch.refused for batch in decoded)

    def decode() -> None:
        for raw in raws:
            decode_traces_flat(raw)

    def decode_projected() -> None:
        for raw in raws:
            decode_traces_projected(raw)

    def translate() -> list[list[InEvent]]:
        translator = Translator(known.get)
        return [translator.spans(batch, now_ms).events for batch in decoded]  # type: ignore[arg-type]

    events = translate()

    def fold_all() -> list[dict[object, object]]:
        out: list[dict[object, object]] = []
        for each in events:
            cells: dict[object, object] = {}
            fold(each, cells)  # type: ignore[arg-type]
            out.append(cells)
        return out

    def whole() -> None:
        translator = Translator(known.get)
        for raw in raws:
            fold(translator.spans(decode_traces_flat(raw), now_ms).events, {})  # type: ignore[arg-type]

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])  # the daemon's (running.wiring)
    n = args.spans
    result: dict[str, object] = {
        "spans": n,
        "per_record": args.per_record,
        "native": native_decoder(),
        "decode_ns": median_ns(decode, args.passes, n),
        "decode_python_ns": median_ns(decode_projected, args.passes, n),
        "translate_ns": median_ns(translate, args.passes, n),
        "fold_ns": median_ns(fold_all, args.passes, n),
        "whole_ns": median_ns(whole, args.passes, n),
    }
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(whole)
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=100_000, help="spans to make")
    parser.add_argument("--per-record", type=int, default=100, help="spans a Collector record")
    parser.add_argument("--passes", type=int, default=5, help="timed passes")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    print(json.dumps(main(parser.parse_args())))
