"""The segment service: signed commands in; versions saved, published and audited out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from controller.adapters.memory import MemorySegments, MemoryValueOutputs
from controller.core.trust import signing
from controller.core.trust.signing import StateSigner, generate_key, load_public_key
from controller.core.wire import sent_object
from controller.core.wire.segment_messages import SegmentCommand
from controller.ctl.operate.segments import commands_for
from controller.daemon.registries.segments import SegmentService
from controller.sdk.segments import SegmentBook
from controller.settings import TopicSettings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TOPICS = TopicSettings()
IDS = [f"unit-{i:06d}-{'q' * 40}" for i in range(30_000)]


class World:
    def __init__(self) -> None:
        self.operator, public = generate_key()
        self.keys = {"ops": load_public_key(public)}
        controller_key, self.controller_public = generate_key()
        self.store, self.outputs = MemorySegments(), MemoryValueOutputs()
        self.counted: list[tuple[str, str]] = []
        self.changed: list[str] = []
        self.service = SegmentService(
            store=self.store,
            outputs=self.outputs,
            topics=TOPICS,
            signer=StateSigner(controller_key, "controller"),
            max_age_seconds=300,
            clock=lambda: NOW,
            counted=lambda action, outcome: self.counted.append((action, outcome)),
            changed=self.changed.append,
        )

    def commands(self, action: str, **body: Any) -> list[dict[str, Any]]:
        made = commands_for("beta", action=action, actor="ana", key_id="ops", **body)
        ts = int(NOW.timestamp() * 1000)
        stamped = [c.model_copy(update={"ts": ts}) for c in made]
        return [sent_object(signing.sign_command(c, self.operator)) for c in stamped]

    async def send(self, commands: list[dict[str, Any]], *, offset: int | None = None) -> None:
        """Handle ``commands``, read from consecutive records from ``offset`` when given."""
        for i, raw in enumerate(commands):
            at = "" if offset is None else f"{TOPICS.commands}:0:{offset + i}"
            command = SegmentCommand.model_validate(raw)
            await self.service.handle(command, raw, keys=self.keys, delivery=at)

    def decisions(self) -> list[dict[str, Any]]:
        return [orjson.loads(v or b"") for t, _, v in self.outputs.sent if t == TOPICS.decisions]

    def book(self) -> SegmentBook:
        book = SegmentBook(keys={"controller": self.controller_public})
        for topic, key, value in self.outputs.sent:
            if topic == TOPICS.segments:
                book.receive(key.encode(), value)
        return book


async def test_a_list_in_parts_becomes_one_version_decided_once() -> None:
    world = World()
    commands = world.commands("put", ids=IDS)
    assert len(commands) > 2
    await world.send(commands)
    [decision] = world.decisions()
    assert decision["outcome"] == "applied"
    assert decision["flag"] == "segment:beta"
    assert decision["command_id"] == commands[-1]["id"]
    assert decision["evidence"] | {"sha256": "-"} == {
        "segment": "beta",
        "actor": "ana",
        "version": 1,
        "count": len(IDS),
        "sha256": "-",
        "parts": len(commands),
    }
    book = world.book()
    assert (book.version("beta"), book.size("beta")) == (1, len(IDS))
    assert world.store.uploads == {}


async def test_replace_then_delete_bump_versions_and_clear_old_parts() -> None:
    world = World()
    await world.send(world.commands("put", ids=IDS))
    first_parts = len(world.store.held["beta"].parts)
    await world.send(world.commands("put", ids=IDS[:5]))
    assert world.book().version("beta") == 2
    tombstones = [k for t, k, v in world.outputs.sent if t == TOPICS.segments and v is None]
    assert tombstones == [f"beta#{i}" for i in range(1, first_parts)]
    await world.send(world.commands("delete"))
    book = world.book()
    assert book.member("beta", IDS[0]) is None
    assert [d["evidence"].get("version") for d in world.decisions()] == [1, 2, 3]
    await world.send(world.commands("put", rule='plan == "pro"'))
    assert world.book().version("beta") == 4
    assert world.changed == ["beta"] * 4  # each version published, once: the Unleash sync


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda c: c | {"sig": None}, "unsigned command"),
        (lambda c: c | {"key_id": "nobody"}, "unknown key id 'nobody'"),
        (lambda c: c | {"reason": "edited after signing"}, "bad signature"),
    ],
)
async def test_commands_that_are_not_signed_by_an_operator_are_refused_and_audited(
    spoil: Any, reason: str
) -> None:
    world = World()
    [command] = world.commands("put", rule='plan == "pro"')
    await world.send([spoil(command)])
    [decision] = world.decisions()
    assert (decision["outcome"], decision["reason"]) == ("rejected", reason)
    assert world.store.held == {}


async def test_a_replayed_or_pointless_command_is_refused() -> None:
    world = World()
    put = world.commands("put", rule='plan == "pro"')
    await world.send(put)
    await world.send(put)
    await world.send(world.commands("delete"))
    await world.send(world.commands("delete"))
    outcomes = [(d["outcome"], d["reason"]) for d in world.decisions()]
    assert outcomes == [
        ("applied", ""),
        ("rejected", "replayed command id"),
        ("applied", ""),
        ("rejected", "no segment named 'beta'"),
    ]
    assert world.changed == ["beta", "beta"]  # a refusal changes nothing


async def test_a_forged_part_fails_the_upload_with_its_reason() -> None:
    world = World()
    commands = world.commands("put", ids=IDS)
    other = world.commands("put", ids=[*IDS[:-1], "intruder"])
    forged = other[-1] | {"ids": other[-1]["ids"] | {"upload": commands[0]["ids"]["upload"]}}
    forged["ids"] |= {"sha256": commands[0]["ids"]["sha256"]}
    forged["sig"] = signing.sign(forged, world.operator)
    await world.send([*commands[:-1], forged])
    [decision] = world.decisions()
    assert decision["outcome"] == "rejected"
    assert decision["reason"].startswith("the upload does not assemble:")
    assert world.store.held == {}


async def test_a_replayed_upload_is_refused_part_by_part() -> None:
    world = World()
    upload = world.commands("put", ids=IDS)
    await world.send(upload)
    await world.send(world.commands("put", rule='plan == "pro"'))
    await world.send([upload[1], upload[0], *upload[2:]])
    outcomes = [(d["outcome"], d["reason"]) for d in world.decisions()]
    assert outcomes == [("applied", ""), ("applied", "")] + [
        ("rejected", "replayed command id")
    ] * len(upload)
    assert world.book().version("beta") == 2
    assert world.counted[:3] == [("segment_put", "applied")] * 2 + [("segment_put", "rejected")]


RULE = {"rule": 'plan == "pro"'}
UPLOAD = {"ids": IDS[:6_000]}


@pytest.mark.parametrize(
    ("body", "fresh", "resent", "offset", "outcomes"),
    [
        pytest.param(RULE, True, slice(None), 10, ["applied"], id="a new command: applied"),
        # A new owner after a rebalance, or a paused owner resuming, reads the records
        # its predecessor applied: they were decided then, and are no one's replay.
        pytest.param(RULE, False, slice(None), 0, [], id="a rule's record, read again"),
        pytest.param(UPLOAD, False, slice(None), 0, [], id="an upload's records, read again"),
        pytest.param(UPLOAD, False, slice(-2, None), 0, [], id="an upload's tail, read again"),
        pytest.param(RULE, False, slice(None), 10, ["rejected"], id="a rule, sent again"),
        pytest.param(UPLOAD, False, slice(None), 10, ["rejected"] * 3, id="an upload, sent again"),
    ],
)
async def test_a_command_applied_before_is_refused_as_a_replay_only_when_sent_again(
    body: dict[str, Any], fresh: bool, resent: slice, offset: int, outcomes: list[str]
) -> None:
    world = World()
    first = world.commands("put", **body)
    assert len(first) in (1, 3)  # every part of an upload is a record of its own
    await world.send(first, offset=0)
    again = world.commands("put", **body) if fresh else first
    await world.send(again[resent], offset=offset + len(first) - len(again[resent]))
    [applied, *decided] = world.decisions()
    assert applied["outcome"] == "applied"
    assert [d["outcome"] for d in decided] == outcomes
    refusals = {d["reason"] for d in decided if d["outcome"] == "rejected"}
    assert refusals <= {"replayed command id"}
    assert world.book().version("beta") == 1 + outcomes.count("applied")
    assert world.store.uploads == {}


@pytest.mark.parametrize(
    ("puts", "served"),
    [
        ([{"applied": "ab" * 32}], "ab" * 32),  # apply's put: its digest is served
        ([{"applied": "ab" * 32}, {}], None),  # then one by hand: the digest is gone
        ([{}], None),
    ],
)
async def test_the_applied_digest_is_listed_and_never_sent_to_apps(
    puts: list[dict[str, Any]], served: str | None
) -> None:
    world = World()
    for extra in puts:
        await world.send(world.commands("put", rule='plan == "pro"', **extra))
    [listed] = await world.service.reads().listing()
    assert listed.get("applied") == served
    records = [orjson.loads(v or b"") for t, _, v in world.outputs.sent if t == TOPICS.segments]
    assert records
    assert all("applied" not in record for record in records)
    assert world.book().version("beta") == len(puts)  # apps still verify every record
