"""Which log a stored offset belongs to: the stored identity against the broker's."""

from __future__ import annotations

import pytest

from controller.core.machine.log_gaps import LogGap, LogIdentity, gap_of, identity_change

A = "5f0c6c1e-2a5b-4d55-9a51-0d1f0b6f2a11"
B = "01a21606-250e-7361-a1e3-d8f8df4d819e"


@pytest.mark.parametrize(
    ("partition", "stored", "live", "why"),
    [
        # the same topic
        (1, LogIdentity(A, 12), LogIdentity(A, 12), None),
        (1, LogIdentity(A, 12), LogIdentity(A, 16), None),  # grown by an operator
        # the topic made again: another id, whatever its logs hold
        (1, LogIdentity(A, 12), LogIdentity(B, 12), f"the topic's id is {B}, {A} recorded"),
        (1, LogIdentity(A, 12), LogIdentity(B, 16), f"the topic's id is {B}, {A} recorded"),
        (1, LogIdentity(A, None), LogIdentity(B, 4), f"the topic's id is {B}, {A} recorded"),
        # fewer partitions: Kafka never takes them away, so another topic
        (1, LogIdentity(A, 12), LogIdentity(B, 4), "; the topic has 4 partitions, 12 recorded"),
        (1, LogIdentity(None, 12), LogIdentity(None, 4), "the topic has 4 partitions, 12 recorded"),
        (1, LogIdentity(A, 12), LogIdentity(None, 4), "the topic has 4 partitions, 12 recorded"),
        # a partition the topic no longer has, whatever was stored
        (5, LogIdentity(A, 12), LogIdentity(B, 4), "4 partitions now, none numbered 5"),
        (5, None, LogIdentity(B, 4), "4 partitions now, none numbered 5"),
        (4, LogIdentity(None, None), LogIdentity(None, 4), "none numbered 4"),
        (3, None, LogIdentity(B, 4), None),  # nothing stored to compare with
        # nothing proves another log
        (1, LogIdentity(None, 12), LogIdentity(None, 12), None),  # a broker without ids
        (1, LogIdentity(None, 12), LogIdentity(None, 16), None),  # grown, no ids to compare
        (1, LogIdentity(A, 12), LogIdentity(None, 12), None),  # the broker gives no id now
        (1, LogIdentity(None, 12), LogIdentity(B, 12), None),  # none stored (stored before ids)
        (1, LogIdentity(A, 12), None, None),  # the broker did not answer
        (1, None, None, None),
    ],
)
def test_another_log_is_another_id_fewer_partitions_or_a_partition_gone(
    partition: int, stored: LogIdentity | None, live: LogIdentity | None, why: str | None
) -> None:
    found = identity_change(partition, stored=stored, live=live)
    if why is None:
        assert found is None
    else:
        assert found is not None
        assert why in found


@pytest.mark.parametrize(
    ("topic_id", "partitions", "expected"),
    [
        (A.encode(), b"12", LogIdentity(A, 12)),
        (A, "12", LogIdentity(A, 12)),
        (b"", b"", None),  # never stored
        (None, None, None),
        (b"", b"4", LogIdentity(None, 4)),  # stored from a broker without ids
        (A, "x", LogIdentity(A, None)),  # not a count: unknown
    ],
)
def test_an_identity_read_back_from_storage(
    topic_id: str | bytes | None, partitions: str | bytes | None, expected: LogIdentity | None
) -> None:
    assert LogIdentity.stored(topic_id, partitions) == expected


@pytest.mark.parametrize(
    ("identity", "fields"),
    [
        (LogIdentity(A, 12), {"topic_id": A, "partitions": "12"}),
        (LogIdentity(None, 4), {"topic_id": "", "partitions": "4"}),  # '' keeps what is stored
        (LogIdentity(None, None), {"topic_id": "", "partitions": ""}),
    ],
)
def test_an_identity_as_stored_beside_an_offset(
    identity: LogIdentity, fields: dict[str, str]
) -> None:
    assert identity.fields() == fields
    read_back = LogIdentity.stored(fields["topic_id"], fields["partitions"])
    assert read_back == (identity if identity != LogIdentity(None, None) else None)


@pytest.mark.parametrize(
    ("stored", "beginning", "end", "changed", "held"),
    [
        # a log longer than the stored offset proves nothing by itself
        (3209, 0, 5000, None, False),
        # on another log it is held, however long, and reread fits
        (3209, 0, 5000, "the topic's id is B, A recorded: the topic was made again", True),
        (3113, 0, 3113, "the topic has 4 partitions, 12 recorded", True),
        (None, 0, 5000, "the topic's id is B, A recorded", True),
    ],
)
def test_a_changed_identity_is_a_gap_however_long_the_log(
    stored: int | None, beginning: int, end: int, changed: str | None, held: bool
) -> None:
    gap = gap_of(
        1,
        stored=stored,
        beginning=beginning,
        end=end,
        partitions=None,
        recorded_partitions=None,
        changed=changed,
    )
    assert (gap is not None) == held
    if gap is not None:
        assert changed is not None
        assert changed in gap.why
        assert "the stored offset names a record of another log" in gap.why
        assert gap.fits == "reread"
        alert = gap.alert("rollout.events")
        assert alert.details["changed"] == changed
        assert "rolloutctl ingest reread" in alert.summary


def test_a_changed_count_is_said_once() -> None:
    gap = LogGap(
        1, 100, 0, 50, partitions=4, recorded_partitions=12, changed="the topic has 4 partitions"
    )
    assert gap.why.count("4 partitions") == 1
