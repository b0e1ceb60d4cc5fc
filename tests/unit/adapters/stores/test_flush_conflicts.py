"""A refused flush: another owner (fenced), or writes Redis acknowledged and lost."""

from __future__ import annotations

import pytest

from controller.adapters.redis.client import flush_conflict
from controller.core.common.errors import FencedError, LostWrites

OURS = 7  # this owner's epoch
EXPECTED = 5733  # the offset this owner last wrote


@pytest.mark.parametrize(
    ("code", "stored", "expected", "kind", "stored_offset"),
    [
        (-1, "8", EXPECTED, FencedError, None),  # a newer claim: another owner
        (-1, "6", EXPECTED, LostWrites, None),  # our claim itself was lost
        (-1, "false", EXPECTED, LostWrites, None),  # nothing stored at all (nil epoch)
        (-2, "5522", EXPECTED, LostWrites, 5522),  # our last flushes were lost
        (-2, "-1", EXPECTED, LostWrites, None),  # every flush lost, the claim kept
        (-2, "5900", EXPECTED, FencedError, None),  # ahead of us: not ours to undo
        (-2, "120", None, FencedError, None),  # we expected nothing stored
    ],
)
def test_a_refusal_is_told_apart_by_what_redis_holds(
    code: int, stored: str, expected: int | None, kind: type, stored_offset: int | None
) -> None:
    error = flush_conflict(3, code, stored, OURS, expected)
    assert type(error) is kind
    assert "partition 3" in str(error)
    if isinstance(error, LostWrites):
        assert error.stored_offset == stored_offset
        assert not error.retriable
