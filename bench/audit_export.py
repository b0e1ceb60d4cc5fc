"""The audit export's own cost per record: sorting, the CloudEvent, the dedup, the line.

``rolloutctl audit export`` holds a span's records in memory, sorts them and
writes each as a line; this measures that part (no broker) on ``--records``
decisions of about ``--evidence-bytes`` of evidence each, spread over 3
partitions, a tenth of them published twice (as a restarted outbox does), and
reports records per second (of wall time and of CPU time, which a busy machine
leaves steadier) and the memory held per record (the bytes as read
plus their record, by ``tracemalloc``), which sizes ``--max-records``. The last
line printed is one JSON object.

    python bench/audit_export.py [--records 100000] [--evidence-bytes 2000]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.core.trust import (
    AuditEvent,
    Dedup,
    PublishedRecord,
    audit_event,
    audit_line,
    export_order,
)


def _records(count: int, evidence_bytes: int) -> list[PublishedRecord]:
    filler = "x" * max(0, evidence_bytes - 200)
    records = []
    for n in range(count):
        decision = {
            "type": "decision", "v": 1, "id": f"decision-{n}", "ts": 1767225600000 + n,
            "flag": f"flag-{n % 50}", "kind": "gate", "action": "hold", "outcome": "held",
            "reason": "waiting for units", "stage": n % 4,
            "evidence": {"srm": {"p_value": 0.41, "ratio": 1.0}, "note": filler},
        }  # fmt: skip
        value = json.dumps(decision).encode()
        copies = 2 if n % 10 == 0 else 1
        for copy in range(copies):
            offset = n + copy * count
            records.append(
                PublishedRecord(
                    "decision",
                    "rollout.decisions",
                    n % 3,
                    offset,
                    1767225600000 + offset,
                    f"flag-{n % 50}".encode(),
                    value,
                )
            )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--evidence-bytes", type=int, default=2_000)
    args = parser.parse_args()
    tracemalloc.start()
    records = _records(args.records, args.evidence_bytes)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    started, cpu_started = time.perf_counter(), time.process_time()
    records.sort(key=export_order)
    out, dedup, written = io.StringIO(), Dedup(), 0
    for record in records:
        event = audit_event(record)
        assert isinstance(event, AuditEvent)
        if (admitted := dedup.admit(event)) is not None:
            out.write(audit_line(admitted) + "\n")
            written += 1
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    result = {
        "records": len(records),
        "written": written,
        "copies_dropped": dedup.copies,
        "seconds": round(seconds, 2),
        "records_per_s": round(len(records) / seconds),
        "cpu_seconds": round(cpu, 2),
        "records_per_cpu_s": round(len(records) / cpu),
        "held_bytes_per_record": round(held / len(records)),
        "line_bytes": round(out.tell() / written),
    }
    print(f"{len(records):,} records ({written:,} written, {dedup.copies:,} copies dropped) "
          f"in {seconds:.2f} s ({cpu:.2f} s of CPU): {result['records_per_s']:,} records/s, "
          f"{result['records_per_cpu_s']:,} per CPU second; "
          f"{result['held_bytes_per_record']:,} bytes held per record read")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
