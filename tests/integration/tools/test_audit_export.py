"""``rolloutctl audit export`` against Apache Kafka: a span of the published topics as
CloudEvents JSON Lines that validate against the published schema, each decision once,
in order, however often the controller published it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator

from controller.adapters.kafka import Producer, Publisher
from controller.core.trust import signing
from controller.core.wire import Alert, Decision
from controller.settings import KafkaSettings
from tests.support.backing.reading import read_to_end
from tests.support.backing.topics import fresh_topics

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
SCHEMA = SCHEMAS / "audit-event.schema.json"
SEAL_SCHEMA = SCHEMAS / "audit-seal.schema.json"
EXPORT_TIMEOUT_S = 120.0
SIGNED_TYPES = ("decision,command,alert",)
"""A Python process and a Kafka client on a busy two-core machine: seconds, rarely more."""


def _decision(n: int, flag: str) -> Decision:
    return Decision(
        type="decision",
        v=1,
        id=f"decision-{n}-{uuid.uuid4().hex[:6]}",
        ts=datetime.now(UTC),
        flag=flag,
        kind="command" if n % 2 else "gate",
        action="approve" if n % 2 else "hold",
        outcome="applied" if n % 2 else "held",
        reason=f"step {n}",
        stage=n % 3,
    )


async def _stamped(bootstrap: str, topic: str, value: bytes, timestamp_ms: int) -> None:
    """One record written with a timestamp of our choosing, outside the span."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"f", timestamp_ms=timestamp_ms)
    finally:
        await producer.stop()


def _export(
    config: Path,
    out: Path | str,
    since: str,
    until: str,
    types: str = "decision,command,alert",
    *signing: str,
) -> subprocess.CompletedProcess[str]:
    """The export to a file, or to the topic named by a string."""
    command = [sys.executable, "-m", "controller.ctl.app", "audit", "export"]
    command += ["--config", str(config), "--since", since, "--until", until]
    command += ["--out", str(out)] if isinstance(out, Path) else ["--to-topic", out]
    command += ["--types", types, *signing]
    return _rolloutctl(command)


def _rolloutctl(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, check=False
    )


def _checked(out: Path, *keys: str) -> subprocess.CompletedProcess[str]:
    """``rolloutctl audit check`` of the file, with ``--public-key ID=BASE64`` for each key."""
    command = [sys.executable, "-m", "controller.ctl.app", "audit", "check", str(out)]
    command += [f"--public-key={key}" for key in keys]
    return _rolloutctl(command)


def _validator(schema: Path) -> Draft202012Validator:
    return Draft202012Validator(
        json.loads(schema.read_text(encoding="utf-8")),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _config(tmp_path: Path, bootstrap: str, names: dict[str, str]) -> Path:
    lines = ["kafka:", f"  bootstrap_servers: {bootstrap}", "topics:"]
    lines += [f"  {key}: {name}" for key, name in names.items()]
    config = tmp_path / "settings.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


@pytest.fixture(params=["apache_kafka_bootstrap", "tansu_bootstrap"])
def bootstrap(request: pytest.FixtureRequest) -> str:
    """Apache Kafka, then the embedded broker (the demo's, which keeps no time index)."""
    return str(request.getfixturevalue(request.param))


async def test_the_export_validates_and_holds_each_decision_once_in_order(
    bootstrap: str, tmp_path: Path
) -> None:
    names = await fresh_topics(bootstrap, "audit", {"decisions": 3, "commands": 2, "alerts": 1})
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    decisions = [_decision(n, flag=f"flag-{n % 4}") for n in range(40)]
    alert = Alert(
        type="alert", v=1, id="alert-1", ts=datetime.now(UTC), severity="warning",
        kind="stuck", summary="stuck at stage 1", flag="flag-1",
    )  # fmt: skip
    since_ms = int(datetime.now(UTC).timestamp() * 1000) - 1
    # Given a record stamped before the span and one after it
    await _stamped(bootstrap, names["decisions"], b'{"id":"before"}', since_ms - 60_000)
    # ...and decisions, an alert and a garbled command published by the daemon's producer,
    # the first ten decisions published again, as a restarted outbox publishes them
    async with Producer(kafka=kafka) as producer:
        publisher = Publisher(producer=producer)
        for chunk in (decisions[:10], decisions[10:25], decisions[:10], decisions[25:]):
            await publisher.publish(
                [(names["decisions"], d.flag, d.model_dump_json().encode()) for d in chunk]
            )
        await publisher.publish([(names["alerts"], "flag-1", alert.model_dump_json().encode())])
        await publisher.publish([(names["commands"], "flag-2", b"{not json")])
    until_ms = int(datetime.now(UTC).timestamp() * 1000) + 1
    await _stamped(bootstrap, names["decisions"], b'{"id":"after"}', until_ms + 60_000)
    # When the span is exported, its seal signed with an operator key
    config = _config(tmp_path, bootstrap, names)
    out = tmp_path / "audit.jsonl"
    since = datetime.fromtimestamp(since_ms / 1000, UTC).isoformat()
    until = datetime.fromtimestamp(until_ms / 1000, UTC).isoformat()
    key, key_file = Ed25519PrivateKey.generate(), tmp_path / "ops-1.key"
    key_file.write_text(signing.private_key_text(key), encoding="ascii")
    sign = ("--key-id", "ops-1", "--key", str(key_file))
    done = await asyncio.to_thread(_export, config, out, since, until, *SIGNED_TYPES, *sign)
    # Then every line but the last is a CloudEvent the published schema accepts, the last
    # the seal its own schema accepts
    assert done.returncode == 0, done.stderr
    *lines, sealed = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        _validator(SCHEMA).validate(line)
    _validator(SEAL_SCHEMA).validate(sealed)
    assert sealed["data"]["events"] == len(lines)
    # ...and the check finds it whole and signed by the key, and the line edited in a copy
    public = f"ops-1={signing.public_key_text(key.public_key())}"
    checked = await asyncio.to_thread(_checked, out, public)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(lines)} events, chained, counted and signed by ops-1" in checked.stdout
    edited = out.read_text(encoding="utf-8").splitlines()
    edited[3] = edited[3].replace('"reason":"step', '"reason":"stop')
    assert edited[3] != out.read_text(encoding="utf-8").splitlines()[3]
    copy = tmp_path / "edited.jsonl"
    copy.write_text("\n".join(edited) + "\n", encoding="utf-8")
    caught = await asyncio.to_thread(_checked, copy, public)
    assert (caught.returncode, caught.stdout.split(": ")[1]) == (1, "line 4"), caught.stdout
    # ...holding each decision exactly once, as published, and the alert
    exported = [e for e in lines if e["type"] == "dev.rollout-controller.decision"]
    assert sorted(e["id"] for e in exported) == sorted(d.id for d in decisions)
    by_id = {d.id: d for d in decisions}
    assert all(Decision.model_validate(e["data"]) == by_id[e["id"]] for e in exported)
    assert [e["id"] for e in lines if e["type"].endswith(".alert")] == ["alert-1"]
    # ...in order of time, ties by topic, partition and offset
    order = [(e["time"], e["kafkatopic"], e["kafkapartition"], e["kafkaoffset"]) for e in lines]
    assert order == sorted(order)
    per_flag = {d.flag: [x.id for x in decisions if x.flag == d.flag] for d in decisions}
    for flag, ids in per_flag.items():
        assert [e["id"] for e in exported if e["subject"] == flag] == ids
    # ...and the copies dropped and the garbled command left out are told
    assert "10 republished copies dropped" in done.stderr
    assert f"left out {names['commands']}/" in done.stderr
    # ...and a second export of the span is the same, line for line
    # (but for the seal's time)
    again = await asyncio.to_thread(
        _export, config, tmp_path / "again.jsonl", since, until, *SIGNED_TYPES, *sign
    )
    assert again.returncode == 0, again.stderr
    lines_again = (tmp_path / "again.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines_again[:-1] == out.read_text(encoding="utf-8").splitlines()[:-1]


async def test_an_export_to_a_topic_carries_the_lines_the_file_does(
    apache_kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Given decisions of two flags on the decisions topic
    bootstrap = apache_kafka_bootstrap
    names = await fresh_topics(bootstrap, "audit", {"decisions": 2, "audit": 1})
    since = datetime.now(UTC).isoformat()
    decisions = [_decision(n, flag=f"flag-{n % 2}") for n in range(12)]
    async with Producer(kafka=KafkaSettings(bootstrap_servers=bootstrap)) as producer:
        await Publisher(producer=producer).publish(
            [(names["decisions"], d.flag, d.model_dump_json().encode()) for d in decisions]
        )
    until = (datetime.now(UTC) + timedelta(milliseconds=1)).isoformat()
    config = _config(tmp_path, bootstrap, {"decisions": names["decisions"]})
    # When the span is exported to a file and to a topic
    file = tmp_path / "audit.jsonl"
    to_file = await asyncio.to_thread(_export, config, file, since, until, "decision")
    to_topic = await asyncio.to_thread(_export, config, names["audit"], since, until, "decision")
    # Then the topic holds the file's lines, in its order, each a structured CloudEvent
    assert to_file.returncode == 0, to_file.stderr
    assert to_topic.returncode == 0, to_topic.stderr
    *lines, sealed = file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(decisions)
    records = await read_to_end(bootstrap, names["audit"], partitions=1)
    assert [r.value.decode() for r in records[:-1]] == lines
    assert [r.key.decode() for r in records[:-1]] == [json.loads(x)["subject"] for x in lines]
    # ...and ends with the seal, keyed by nothing
    assert json.loads(records[-1].value)["data"] == json.loads(sealed)["data"]
    assert records[-1].key is None
    for record in records:
        assert dict(record.headers)["content-type"].startswith(b"application/cloudevents+json")


async def test_each_command_names_the_holder_of_its_key_as_of_its_time(
    apache_kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Given keys whose holders the settings name today: ops-1 is now omar's
    bootstrap = apache_kafka_bootstrap
    names = await fresh_topics(bootstrap, "audit", {"commands": 1, "alerts": 1})
    public = signing.public_key_text(Ed25519PrivateKey.generate().public_key())
    keys = {"ops-1": {"public_key": public, "holder": "omar"}, "ci-1": public}
    # ...an operator_keys alert before the span saying ops-1 was ana's then
    reload = Alert(
        type="alert", v=1, id="keys-1", ts=datetime.now(UTC), severity="info",
        kind="operator_keys", summary="operator keys reloaded",
        details={"holders": {"ops-1": "ana", "old-1": "olga"}},
    )  # fmt: skip
    since = datetime.now(UTC)
    alert_ms = int(since.timestamp() * 1000) - 60_000
    await _stamped(bootstrap, names["alerts"], reload.model_dump_json().encode(), alert_ms)
    # ...and commands in the span signed by ops-1, by ci-1 (no alert names it) and a key
    # no one holds
    commands = [
        {"type": "command", "id": f"c-{key}", "flag": "f", "key_id": key, "actor": "x"}
        for key in ("ops-1", "ci-1", "nobody")
    ]
    async with Producer(kafka=KafkaSettings(bootstrap_servers=bootstrap)) as producer:
        await Publisher(producer=producer).publish(
            [(names["commands"], "f", json.dumps(c).encode()) for c in commands]
        )
    until = (datetime.now(UTC) + timedelta(milliseconds=1)).isoformat()
    config = _config(tmp_path, bootstrap, names)
    with config.open("a", encoding="utf-8") as settings:
        settings.write("engine:\n  operator_keys: " + json.dumps(keys) + "\n")
    # When the commands are exported
    out = tmp_path / "audit.jsonl"
    done = await asyncio.to_thread(_export, config, out, since.isoformat(), until, "command")
    # Then each command names its key's holder as of its time, and where that was read
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()[:-1]]
    holders = {e["id"]: (e.get("signerholder"), e.get("signerholderfrom")) for e in lines}
    assert holders == {
        "c-ops-1": ("ana", "operator_keys"),
        "c-ci-1": ("ci-1", "settings"),
        "c-nobody": (None, None),
    }


def _sealed(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8").splitlines()[-1])["data"]
    return data


async def test_an_empty_span_the_log_still_holds_is_sealed_with_the_offsets_read(
    bootstrap: str, tmp_path: Path
) -> None:
    # Given decisions on three partitions, all before the span
    names = await fresh_topics(bootstrap, "audit", {"decisions": 3})
    decisions = [_decision(n, flag=f"flag-{n % 3}") for n in range(9)]
    async with Producer(kafka=KafkaSettings(bootstrap_servers=bootstrap)) as producer:
        await Publisher(producer=producer).publish(
            [(names["decisions"], d.flag, d.model_dump_json().encode()) for d in decisions]
        )
    since = datetime.now(UTC) + timedelta(milliseconds=5)
    until = since + timedelta(seconds=1)
    config = _config(tmp_path, bootstrap, names)
    # When the span after them is exported
    out = tmp_path / "audit.jsonl"
    done = await asyncio.to_thread(
        _export, config, out, since.isoformat(), until.isoformat(), "decision"
    )
    # Then it is exported empty, its seal naming each partition and the offsets read over
    # (none of the span's on Apache Kafka; the embedded broker's, which keeps no time index,
    # read from their beginning, by timestamp)
    assert done.returncode == 0, done.stderr
    sealed = _sealed(out)
    assert sealed["events"] == 0
    read = {r["partition"]: (r["begin"], r["end"]) for r in sealed["read"]}
    assert {r["topic"] for r in sealed["read"]} == {names["decisions"]}
    assert sorted(read) == [0, 1, 2]
    ends = [end for _, end in read.values()]
    assert sum(ends) == len(decisions)
    if "read from their beginning" not in done.stderr:
        assert all(begin == end for begin, end in read.values()), read
    checked = await asyncio.to_thread(_checked, out)
    assert checked.returncode == 0, checked.stdout


async def test_a_span_whose_records_the_log_no_longer_holds_fails_naming_the_partition(
    apache_kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Given ten decisions on one partition, the first five deleted from the log
    bootstrap = apache_kafka_bootstrap
    names = await fresh_topics(bootstrap, "audit", {"decisions": 1})
    topic = names["decisions"]
    decisions = [_decision(n, flag="flag") for n in range(10)]
    since = datetime.now(UTC) - timedelta(seconds=1)
    async with Producer(kafka=KafkaSettings(bootstrap_servers=bootstrap)) as producer:
        publisher = Publisher(producer=producer)
        for decision in decisions:
            await publisher.publish([(topic, decision.flag, decision.model_dump_json().encode())])
    after = datetime.now(UTC) + timedelta(milliseconds=5)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=5)})
    finally:
        await admin.close()
    config = _config(tmp_path, bootstrap, names)
    # When the span from before the first is exported
    out = tmp_path / "gone.jsonl"
    until = (after + timedelta(seconds=1)).isoformat()
    gone = await asyncio.to_thread(_export, config, out, since.isoformat(), until, "decision")
    # Then it fails, naming the partition and where its log now starts, and writes nothing
    assert gone.returncode == 1, gone.stderr
    assert f"{topic}/0: the log starts at offset 5" in gone.stderr
    assert "the 5 before it are gone (deleted, or past retention)" in gone.stderr
    assert not out.exists()
    # ...while the span after the last, which the log still holds, is exported empty
    empty = tmp_path / "empty.jsonl"
    done = await asyncio.to_thread(_export, config, empty, after.isoformat(), until, "decision")
    assert done.returncode == 0, done.stderr
    assert _sealed(empty)["read"] == [{"topic": topic, "partition": 0, "begin": 10, "end": 10}]
