"""``rolloutctl audit export``'s arguments: the times, the types, the topics they read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.ctl.app import build_parser
from controller.ctl.report.audit_export import (
    options_from_args,
    parse_time,
    parse_types,
    topics_of,
)
from controller.ctl.usage import UsageError
from controller.settings import TopicSettings

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T09:00:00Z", datetime(2026, 11, 1, 9, tzinfo=UTC)),
        ("2026-11-01T09:00:00.250z", datetime(2026, 11, 1, 9, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-11-01T10:00:00+01:00", datetime(2026, 11, 1, 9, tzinfo=UTC)),
        (" 2026-11-01 ", datetime(2026, 11, 1, tzinfo=UTC)),
        ("now", NOW),
        ("NOW", NOW),
    ],
)
def test_a_time_is_rfc3339_with_an_offset_a_date_or_now(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW, flag="--since") == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-11-01T09:00:00", "has no offset"),
        ("2026-11-01T09:00", "has no offset"),
        ("yesterday", "is not a time"),
        ("", "is not a time"),
        ("1767225600", "is not a time"),
        ("2026-02-30", "no such date"),
        ("2026-13-01T00:00:00Z", "is not a time"),
    ],
)
def test_a_bad_time_is_refused_saying_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says) as refused:
        parse_time(text, now=NOW, flag="--until")
    assert str(refused.value).startswith("--until")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ["decision", "command", "alert", "monitor", "segment"]),
        ("alert,decision", ["decision", "alert"]),
        (" segment , ", ["segment"]),
    ],
)
def test_types_are_read_in_their_own_order(text: str | None, expected: list[str]) -> None:
    assert parse_types(text) == expected


@pytest.mark.parametrize("text", ["decision,approvals", ",", "Decision"])
def test_an_unknown_type_is_refused_naming_the_choices(text: str) -> None:
    with pytest.raises(UsageError, match="choose from decision,command,alert,monitor,segment"):
        parse_types(text)


def test_each_type_reads_its_configured_topic() -> None:
    names = TopicSettings(decisions="prod.decisions")
    assert topics_of(["decision", "command", "segment"], names) == {
        "prod.decisions": "decision",
        "rollout.commands": "command",
        "rollout.segments": "segment",
    }


@pytest.mark.parametrize(
    ("since", "until", "says"),
    [
        ("2026-11-02", "2026-11-01", "is not before --until"),
        ("now", "now", "the span is empty"),
    ],
)
def test_a_span_that_is_empty_is_refused(since: str, until: str, says: str) -> None:
    args = build_parser().parse_args(["audit", "export", "--since", since, "--until", until])
    with pytest.raises(UsageError, match=says):
        options_from_args(args, now=NOW)
