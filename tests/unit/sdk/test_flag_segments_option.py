"""Following flags and segments in one object: the book rules read is the one started."""

from __future__ import annotations

import pytest

from controller.core.rules.matching import IdSegments
from controller.sdk import FlagClient
from controller.sdk.poller import FlagPoller
from controller.sdk.segment_poller import SegmentPoller
from controller.sdk.segments import SegmentFollower


def test_the_options_make_the_segment_book_the_flags_read() -> None:
    client = FlagClient(follow_segments=True, segments_topic="t.segments")
    assert isinstance(client.segments, SegmentFollower)
    poller = FlagPoller("http://127.0.0.1:1", poll_segments=True)
    assert isinstance(poller.segments, SegmentPoller)
    with pytest.raises(TypeError, match="not both"):
        FlagClient(segments=IdSegments(), follow_segments=True)
    with pytest.raises(TypeError, match="not both"):
        FlagPoller("http://127.0.0.1:1", segments=IdSegments(), poll_segments=True)
