"""An app on another Kafka client: events produced with librdkafka count exactly.

``docs/clients.md`` tells clients in other languages how to key and partition
events. This test follows it with librdkafka, the C client most non-Java
languages wrap, from an app in its own process (``rdkafka_app.py``), with
batches in every compression codec Kafka has: the daemon counts every event exactly, sends the
broken ones to the DLQ, and librdkafka's ``murmur2_random`` partitioner puts
every unit on the partition aiokafka (the Python SDK) would, so unique units
summed over partitions stay exact when both kinds of app serve one flag.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from tests.integration.rig import Rig, flags_of
from tests.support.reference import make_event
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = Path(__file__).with_name("rdkafka_app.py")
EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples"
UNITS = ["user-42", "ユーザー-7", "пользователь", "😀-u", "café", "cafe\u0301"]
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
BROKEN = [b'{"type": "exposure", "v": 1}', b"{not json"]


def _events() -> list[dict[str, Any]]:
    rng = random.Random(15)
    events = [make_event(rng, i, units=300) for i in range(1500)]
    for i, event in enumerate(events[:300]):
        event["unit"] = f"{UNITS[i % len(UNITS)]}-{i % 40}"  # non-ASCII keys too
    examples = [orjson.loads(p.read_bytes()) for p in sorted(EXAMPLES.glob("*.json"))]
    # The documented examples, as an app would send them (version 0 is counted apart).
    events += [e for e in examples if e["type"] != "flag_state" and e["flag_version"] in (1, 2, 3)]
    return events


async def _produce_with_librdkafka(
    rig: Rig, lines: list[bytes], tmp_path: Path, codec: str
) -> None:
    """The app: its own process, producing one message per line, the key before a tab."""
    source = tmp_path / f"events-{codec}.txt"
    source.write_bytes(b"\n".join(lines) + b"\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(APP),
        rig.bootstrap,
        rig.events,
        str(source),
        codec,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, (out + err).decode(errors="replace")[-3000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["delivered"] == len(lines), report


async def _partitions_by_key(rig: Rig, expected: int) -> tuple[dict[bytes, set[int]], int]:
    """Every key on the events topic and the partitions it landed on; the partition count."""
    consumer = AIOKafkaConsumer(
        rig.events, bootstrap_servers=rig.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[bytes, set[int]] = {}
    seen = 0
    try:

        async def all_read() -> bool:
            nonlocal seen
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    found.setdefault(record.key or b"", set()).add(tp.partition)
                    seen += 1
            assert seen >= expected, f"read {seen} of {expected} messages back"
            return True

        await eventually(all_read, timeout=30, what=f"{expected} messages read back")
        partitions = len(consumer.partitions_for_topic(rig.events) or ())
    finally:
        await consumer.stop()
    assert seen >= expected, f"read {seen} of {expected} messages back"
    return found, partitions


async def test_events_from_librdkafka_count_exactly_on_the_partitions_aiokafka_picks(
    rig: Rig, tmp_path: Path
) -> None:
    # Given events (and two broken messages) produced by an app on librdkafka
    events = _events()
    lines = [e["unit"].encode() + b"\t" + orjson.dumps(e) for e in events]
    lines += [f"broken-{i}".encode() + b"\t" + raw for i, raw in enumerate(BROKEN)]
    with rig.daemon(tmp_path) as daemon:
        # (a fifth of them in each codec: lz4 alone stopped ingest before cramjam)
        for index, codec in enumerate(CODECS):
            await _produce_with_librdkafka(rig, lines[index :: len(CODECS)], tmp_path, codec)
        # Then the daemon counts every event exactly and dead-letters the broken ones
        await rig.wait_counted(flags_of(events), len(events), what="events from librdkafka")
        letters = await rig.dead_letters(len(BROKEN))
        assert daemon.running, daemon.log_text()[-2000:]
    await rig.assert_exact(events)
    reasons = {m.key: dict(m.headers)["rc.reason"].decode() for m in letters}
    assert reasons == {b"broken-0": "schema_violation", b"broken-1": "malformed_json"}
    # And each unit sits on the one partition aiokafka's partitioner gives its key
    placed, count = await _partitions_by_key(rig, len(lines))
    choose = DefaultPartitioner()
    every = list(range(count))
    wrong = {key: parts for key, parts in placed.items() if parts != {choose(key, every, every)}}
    assert count > 1
    assert not wrong, dict(list(wrong.items())[:5])
