"""An export's chain and seal: each way a file can be changed is caught at the line it names."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.trust.audit_chain import (
    ReadOffsets,
    SealData,
    Signer,
    line_digest,
    seal,
    seal_line,
    start_digest,
)
from controller.core.trust.audit_check import Checked, Failed, check_export

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 2, tzinfo=UTC)
TYPES = ["decision", "command"]
KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
Lines = list[bytes]


def _export(events: int = 5, *, signer: Signer | None = None) -> Lines:
    """An export of ``events`` lines chained from the start, and its seal."""
    start = start_digest(SINCE, UNTIL, TYPES)
    head, lines = start, []
    for n in range(events):
        event = {"specversion": "1.0", "id": f"d-{n}", "data": {"stage": n}, "prevdigest": head}
        line = orjson.dumps(event)
        lines.append(line)
        head = line_digest(line)
    opened = SealData(since=SINCE, until=UNTIL, types=TYPES, events=0, start=start, head=start)
    sealed = seal(opened, events=events, head=head, at=UNTIL, signer=signer)
    return [*lines, seal_line(sealed).encode()]


def _edited(n: int) -> Callable[[Lines], Lines]:
    def edit(lines: Lines) -> Lines:
        event = orjson.loads(lines[n - 1])
        event["data"]["stage"] = 99
        return [*lines[: n - 1], orjson.dumps(event), *lines[n:]]

    return edit


def _dropped(n: int) -> Callable[[Lines], Lines]:
    return lambda lines: lines[: n - 1] + lines[n:]


def _swapped(n: int) -> Callable[[Lines], Lines]:
    return lambda lines: [*lines[: n - 1], lines[n], lines[n - 1], *lines[n + 1 :]]


def _same(lines: Lines) -> Lines:
    return lines


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        (_edited(3), 3, "edited: line 4 names another digest for this line"),
        (_edited(1), 1, "edited: line 2 names another digest"),
        (_edited(5), 5, "edited: the seal's head is not this line's digest"),
        (_dropped(3), 3, "a line is missing between line 2 and this one (dropped)"),
        (_dropped(1), 1, "a line is missing between the start and this one (dropped)"),
        (_dropped(5), 5, "a line is missing before the seal (dropped)"),
        (_swapped(2), 2, "out of order: line 3, not this one, follows line 1"),
        (_swapped(4), 4, "out of order: line 5, not this one, follows line 3"),
        (lambda lines: [lines[1], lines[0], *lines[2:]], 1, "follows the start"),
        (lambda lines: [*lines[:2], lines[0], *lines[2:]], 3, "(added)"),
        (_dropped(6), 5, "the last line is no seal: the export is cut short"),
        (lambda lines: [*lines[:-1], b"{trunc"], 6, "not JSON"),
        (lambda lines: [], 1, "the file is empty"),
        (lambda lines: [*lines[:2], b"not json", *lines[3:]], 3, "edited: not JSON"),
        (lambda lines: [*lines[:5], lines[5], lines[5]], 6, "a seal before the last line"),
    ],
)
def test_a_changed_export_names_its_first_failing_line(
    change: Callable[[Lines], Lines], line: int, reason: str
) -> None:
    verdict = check_export(change(_export()), {})
    assert isinstance(verdict, Failed)
    assert (verdict.line, reason in verdict.reason) == (line, True), verdict.reason


def _reseal(lines: Lines, **data: object) -> Lines:
    sealed = orjson.loads(lines[-1])
    sealed["data"] |= data
    return [*lines[:-1], orjson.dumps(sealed)]


@pytest.mark.parametrize(
    ("signer", "change", "keys", "verdict"),
    [
        (None, _same, {}, Checked(5, None)),
        (Signer("ops-1", KEY), _same, {"ops-1": KEY}, Checked(5, "ops-1")),
        # given operator keys, an unsigned seal vouches for nothing: it fails, at the seal
        (None, _same, {"ops-1": KEY}, Failed(6, "the seal is unsigned, and operator keys")),
        (None, _edited(2), {"ops-1": KEY}, Failed(2, "edited")),
        (Signer("ops-1", KEY), _same, {"ops-1": OTHER}, Failed(6, "bad signature")),
        (Signer("ops-1", KEY), _same, {}, Failed(6, "which is not known")),
        # the count lowered to hide a dropped line: the signature no longer holds
        (Signer("ops-1", KEY), lambda ls: _reseal(_dropped(5)(ls), events=4), {"ops-1": KEY},
         Failed(5, "bad signature")),
        (Signer("ops-1", KEY), lambda ls: _reseal(ls, types=["decision"]), {"ops-1": KEY},
         Failed(6, "bad signature")),
        (None, lambda ls: _reseal(ls, until="2026-11-03T00:00:00Z"), {},
         Failed(6, "the seal's start is not the digest of its span")),
        # an edited line of a signed export: the seal holds, the line is named
        (Signer("ops-1", KEY), _edited(2), {"ops-1": KEY}, Failed(2, "edited")),
        (Signer("ops-1", KEY), lambda ls: _reseal(ls, key_id="ops-2"), {"ops-2": KEY},
         Failed(6, "bad signature")),
    ],
)  # fmt: skip
def test_the_seal_counts_and_vouches_for_the_chain(
    signer: Signer | None,
    change: Callable[[Lines], Lines],
    keys: dict[str, Ed25519PrivateKey],
    verdict: Checked | Failed,
) -> None:
    public = {key_id: key.public_key() for key_id, key in keys.items()}
    found = check_export(change(_export(signer=signer)), public)
    if isinstance(verdict, Checked):
        assert found == verdict
    else:
        assert isinstance(found, Failed)
        assert found.line == verdict.line
        assert verdict.reason in found.reason, found.reason


def test_an_export_of_no_events_is_its_seal_alone() -> None:
    lines = _export(0, signer=Signer("ops-1", KEY))
    assert len(lines) == 1
    assert check_export(lines, {"ops-1": KEY.public_key()}) == Checked(0, "ops-1")


def test_the_chain_starts_at_the_span_it_names() -> None:
    # The same events under another span are another chain: the first names its start
    other = start_digest(SINCE, UNTIL, ["decision"])
    assert orjson.loads(_export()[0])["prevdigest"] == start_digest(SINCE, UNTIL, TYPES) != other


def _read_export(offsets: list[int], read: list[ReadOffsets]) -> Lines:
    """An export of events read at ``offsets`` of one partition, its seal naming ``read``."""
    start = start_digest(SINCE, UNTIL, TYPES)
    head, lines = start, []
    for n, offset in enumerate(offsets):
        where = {"kafkatopic": "decisions", "kafkapartition": 0, "kafkaoffset": offset}
        line = orjson.dumps({"specversion": "1.0", "id": f"d-{n}", **where, "prevdigest": head})
        lines.append(line)
        head = line_digest(line)
    opened = SealData(
        since=SINCE, until=UNTIL, types=TYPES, events=0, start=start, head=start, read=read
    )
    sealed = seal(opened, events=len(offsets), head=head, at=UNTIL, signer=Signer("ops-1", KEY))
    return [*lines, seal_line(sealed).encode()]


def test_the_seal_names_the_offsets_read_and_each_event_lies_within_them() -> None:
    keys = {"ops-1": KEY.public_key()}
    read = [ReadOffsets(topic="decisions", partition=0, begin=10, end=13)]
    assert check_export(_read_export([10, 11, 12], read), keys) == Checked(3, "ops-1")
    # an empty span the log still holds: the offsets read over, none between them
    empty = [ReadOffsets(topic="decisions", partition=0, begin=13, end=13)]
    lines = _read_export([], empty)
    assert check_export(lines, keys) == Checked(0, "ops-1")
    assert orjson.loads(lines[-1])["data"]["read"] == [
        {"topic": "decisions", "partition": 0, "begin": 13, "end": 13}
    ]
    # an event read elsewhere than the seal says (a partition or offset it never read)
    found = check_export(_read_export([10, 13, 12], read), keys)
    assert found == Failed(2, "read at decisions/0/13, outside the offsets the seal names")
