"""OTLP intake per event, in process: decode + translate + fold, against the single-event path.

Records ``--requests`` requests with the OpenTelemetry SDK, each a SERVER span
with two child spans and ``--flags`` evaluations by OpenFeature's
``TracingHook``, and encodes them as the OTLP exporter does, in exports of
512 spans (the batch processor's default). Times, per wire event produced:
the OTLP/protobuf and OTLP/JSON exports decoded, translated
(``controller.core.telemetry.Translator``) and folded into cells; and, as
the baseline, the same events as single JSON messages through ingest's folder
(``controller.daemon.ingest.batches.Folder``: decode, validate, fold), which is
what one event per Kafka record costs past the consumer. Times are CPU time of
this process, the best and the median of ``--passes`` passes. The last line
printed is one JSON object.

    python bench/otlp_decode.py [--requests 5000] [--flags 1] [--passes 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.otlp import decode_traces_proto
from controller.core.stats import fold
from controller.core.telemetry import Spans, Translator, decode_traces_json, rules_of
from controller.daemon.ingest.batches import Folder
from controller.ports import DeadLetter, Record
from controller.settings import IngestSettings
from tests.support.otel.otlp_exports import (
    Recorder,
    evaluate,
    openfeature_client,
    traces_json,
    traces_proto,
)
from tests.support.reference import StubRecord

EXPORT_SPANS = 512


def timed(run: Callable[[], None], passes: int, n: int) -> list[float]:
    """CPU nanoseconds per event of each pass of ``run`` (after one warm-up pass)."""
    run()
    out = []
    for _ in range(passes):
        started = time.process_time()
        run()
        out.append((time.process_time() - started) * 1e9 / n)
    return out


def exports(requests: int, flags: list[str]) -> tuple[list[bytes], list[bytes], int]:
    app = Recorder({"service.name": "shop", "service.version": "1.4.2", "host.name": "web-1"})
    client = openfeature_client(dict.fromkeys(flags, "treatment"))
    for i in range(requests):
        with app.request():
            for flag in flags:
                evaluate(client, flag, f"user-{i}")
            with app.tracer.start_as_current_span("db.query") as query:
                query.set_attribute("db.system", "postgresql")
                query.set_attribute("db.statement", "SELECT * FROM carts WHERE id = $1")
            with app.tracer.start_as_current_span("render"):
                pass
    spans = app.spans()
    batches = [spans[i : i + EXPORT_SPANS] for i in range(0, len(spans), EXPORT_SPANS)]
    return [traces_proto(b) for b in batches], [traces_json(b) for b in batches], len(spans)


def main(args: argparse.Namespace) -> dict[str, object]:
    flags = [f"flag-{i}" for i in range(args.flags)]
    protos, jsons, spans = exports(args.requests, flags)
    known = {flag: rules_of(flag, None, 1) for flag in flags}
    translator = Translator(known.get)
    now_ms = int(time.time() * 1000)  # the spans were recorded just now
    events = []
    for raw in protos:
        batch = decode_traces_proto(raw)
        assert isinstance(batch, Spans)
        events += translator.spans(batch, now_ms).events
    n = len(events)
    encoder = msgspec.json.Encoder()
    records: list[Record] = [StubRecord(encoder.encode(e), i) for i, e in enumerate(events)]
    folder = Folder(max_event_bytes=IngestSettings().max_event_bytes)
    rejected: list[DeadLetter] = []

    def otlp(decode: Callable[[bytes], object], raws: list[bytes]) -> Callable[[], None]:
        def run() -> None:
            translator = Translator(known.get)
            for raw in raws:
                batch = decode(raw)
                assert isinstance(batch, Spans)
                fold(translator.spans(batch, now_ms).events, {})

        return run

    def single() -> None:
        for start in range(0, n, 1250):
            folder.fold(0, records[start : start + 1250], rejected)

    # The daemon's collector settings (controller.daemon.running.wiring).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    proto = timed(otlp(decode_traces_proto, protos), args.passes, n)
    as_json = timed(otlp(decode_traces_json, jsons), args.passes, n)
    baseline = timed(single, args.passes, n)
    assert not rejected
    return {
        "requests": args.requests,
        "flags": args.flags,
        "spans": spans,
        "events": n,
        "passes": args.passes,
        "otlp_proto_ns_best": round(min(proto)),
        "otlp_proto_ns_median": round(statistics.median(proto)),
        "otlp_json_ns_best": round(min(as_json)),
        "otlp_json_ns_median": round(statistics.median(as_json)),
        "single_event_ns_best": round(min(baseline)),
        "single_event_ns_median": round(statistics.median(baseline)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests to record")
    parser.add_argument("--flags", type=int, default=1, help="flags evaluated per request")
    parser.add_argument("--passes", type=int, default=7, help="timed passes")
    print(json.dumps(main(parser.parse_args())))
