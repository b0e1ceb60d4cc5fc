"""Held events partitions: when a log lost what was counted, and where a choice resumes."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from controller.core.machine import log_gaps
from controller.core.machine.log_gaps import (
    IngestCommand,
    LogGap,
    advice,
    gap_of,
    resume_offset,
)


@pytest.mark.parametrize(
    ("stored", "beginning", "end", "partitions", "recorded", "held", "why"),
    [
        (100, 0, 250, 12, 12, False, ""),  # reading along: the log holds the offset
        (250, 0, 250, 12, 12, False, ""),  # caught up: the next record is 250
        (None, 0, 0, 12, None, False, ""),  # never flushed, first count recorded now
        (1000, 0, 0, 12, 12, True, "ends at offset 0, before the stored offset 1000"),
        (1000, 0, 250, 12, 12, True, "ends at offset 250"),  # cut short by the broker
        (10, 0, 250, 4, 12, True, "the topic has 4 partitions, 12 recorded"),
        (10, 0, 250, 16, 12, False, ""),  # grown by an operator: no gap
        (10, 0, 250, None, 12, False, ""),  # the count is not known now
        (900, 0, 5, 4, 12, True, "ends at offset 5, before the stored offset 900; the topic"),
        (100, 150, 250, 12, 12, True, "starts at offset 150, after the stored offset 100"),
        (150, 150, 250, 12, 12, False, ""),  # retention took only what was counted
        (250, 250, 250, 12, 12, False, ""),  # all of it counted, then deleted
        (None, 150, 250, 12, 12, False, ""),  # never flushed: nothing counted to skip
    ],
)
def test_a_gap_is_a_stored_offset_outside_the_log_or_a_shrunk_topic(
    stored: int | None,
    beginning: int,
    end: int,
    partitions: int | None,
    recorded: int | None,
    held: bool,
    why: str,
) -> None:
    gap = gap_of(
        3,
        stored=stored,
        beginning=beginning,
        end=end,
        partitions=partitions,
        recorded_partitions=recorded,
    )
    assert (gap is not None) == held
    if gap is not None:
        assert why in gap.why
        alert = gap.alert("rollout.events")
        assert (alert.kind, alert.severity) == ("events_log_gap", "critical")
        assert alert.details["partition"] == 3
        assert "rolloutctl ingest reread" in alert.summary


def test_a_reset_fetch_is_a_gap_even_when_the_log_grew_past_the_stored_offset() -> None:
    gap = LogGap(2, stored=500, beginning=0, end=800, fetched_from=0)
    assert gap.why == "the broker served offset 0, before the stored offset 500"


@pytest.mark.parametrize(
    ("gap", "fits"),
    [
        (LogGap(0, 1000, 0, 0), "reread"),  # a broker back empty: nothing on the new log yet
        (LogGap(0, 1000, 0, 500), "reread"),  # refilled, up to half of what was counted
        (LogGap(0, 1000, 0, 990), "accept_gap"),  # an unclean election cut the last records
        (LogGap(0, 1000, 200, 300), "accept_gap"),  # an old log (retention), cut short
        (LogGap(0, 10, 0, 250, partitions=4, recorded_partitions=12), "reread"),  # made again
        (LogGap(0, None, 0, 250, partitions=4, recorded_partitions=12), "reread"),
        (LogGap(0, 500, 0, 800, fetched_from=0), "reread"),  # made again, refilled past it
        (LogGap(0, 500, 0, 450, fetched_from=400), "accept_gap"),
        (LogGap(0, 100, 150, 250), "reread"),  # retention deleted uncounted records
    ],
)
def test_the_choice_that_fits_is_read_off_the_log(gap: LogGap, fits: log_gaps.Choice) -> None:
    assert gap.fits == fits
    alert = gap.alert("rollout.events")
    verb = {"reread": "reread", "accept_gap": "accept-gap"}[fits]
    assert f"`rolloutctl ingest {verb}` fits" in alert.summary
    assert alert.details["fits"] == fits
    assert len(alert.summary) <= 500, len(alert.summary)  # published whole


@pytest.mark.parametrize(
    ("gaps", "named", "said"),
    [
        (
            [LogGap(0, 900, 0, 0), LogGap(3, 800, 0, 2)],
            "",
            "`rolloutctl ingest reread` fits p0, p3",
        ),
        ([LogGap(1, 900, 0, 899)], "", "`rolloutctl ingest accept-gap` fits p1 (the log looks cut"),
        (
            [LogGap(0, 900, 0, 0), LogGap(1, 900, 0, 899)],
            " --topic otlp_spans",
            "`rolloutctl ingest reread --topic otlp_spans` fits p0 (the topic looks new (a broker"
            " back empty, or the topic made again) or starts past the stored offset: none of its"
            " records was counted);"
            " `rolloutctl ingest accept-gap --topic otlp_spans` fits p1",
        ),
    ],
)
def test_the_advice_names_the_command_that_fits_each_held_partition(
    gaps: list[LogGap], named: str, said: str
) -> None:
    assert said in advice(gaps, named=named)


@pytest.mark.parametrize(
    ("choice", "gap_end", "beginning", "end", "offset"),
    [
        ("reread", 0, 0, 250, 0),  # a new topic: all of it
        ("reread", 40, 7, 250, 7),  # retention took the first records
        ("accept_gap", 40, 0, 250, 40),  # what came after the cut is counted
        ("accept_gap", 40, 60, 250, 60),  # retention took even those
        ("accept_gap", 300, 0, 250, 250),  # never past the log end
    ],
)
def test_a_choice_resumes_within_the_log(
    choice: log_gaps.Choice, gap_end: int, beginning: int, end: int, offset: int
) -> None:
    assert resume_offset(choice, gap_end=gap_end, beginning=beginning, end=end) == offset


def _command(**fields: object) -> IngestCommand:
    base = {"type": "ingest", "v": 1, "id": "c1", "ts": 1, "action": "reread", "actor": "ops"}
    return IngestCommand.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("named", "held", "result"),
    [
        ([], {0, 2}, [0, 2]),
        ([2], {0, 2}, [2]),
        ([1, 2], {0, 2}, "events partitions [1] are not held (held: [0, 2])"),
        ([], set(), "no events partition is held"),
    ],
)
def test_a_command_applies_to_held_partitions_only(
    named: list[int], held: set[int], result: list[int] | str
) -> None:
    assert log_gaps.chosen(_command(partitions=named), held) == result


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "skip"},
        {"partitions": [-1]},
        {"partitions": [log_gaps.MAX_PARTITIONS + 1]},
        {"partitions": list(range(log_gaps.MAX_PARTITIONS + 1))},
        {"offset": 5},  # no field beyond the contract: a choice never names an offset
    ],
)
def test_a_command_outside_the_contract_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _command(**fields)


def test_the_decision_names_the_partitions_and_follows_the_command_id() -> None:
    command = _command(partitions=[1])
    applied = log_gaps.audit(command, [1], now_ms=5)
    again = log_gaps.audit(command, [1], now_ms=9)
    rejected = log_gaps.audit(command, "no events partition is held", now_ms=5)
    assert applied["id"] == again["id"]
    assert (applied["kind"], applied["outcome"]) == ("ingest", "applied")
    evidence = applied["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["partitions"] == [1]
    assert (rejected["outcome"], rejected["reason"]) == ("rejected", "no events partition is held")


def test_only_ingest_records_are_parsed_as_ingest_commands() -> None:
    raw = {"type": "ingest", "v": 1, "id": "c1", "ts": 1, "action": "accept_gap", "actor": "a"}
    parsed = log_gaps.parsed(orjson.dumps(raw))
    assert parsed is not None
    assert parsed[0].action == "accept_gap"
    assert log_gaps.parsed(orjson.dumps({"type": "command"})) is None
