"""A 100,000-id segment, from ``rolloutctl`` to apps, over the topic and over HTTP.

Given the real daemon (with a signing key), broker and Redis: an operator puts
a segment of 100,000 ids from a file with ``rolloutctl segment put``; an app
following the segments topic and an app polling ``GET /v1/segments`` (both
verifying the controller's signature) then answer membership for members and
non-members alike; a replacement bumps the version and changes who is in; a
delete makes the segment unknown to both; and a rule that does not parse is
refused by ``rolloutctl`` with its line and column.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.core.trust import signing
from controller.sdk.segment_poller import SegmentPoller
from controller.sdk.segments import SegmentBook, SegmentFollower
from controller.settings import KafkaSettings
from tests.scenarios.harness import Scenario
from tests.scenarios.operators.test_rolloutctl import Operator
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
IDS = [f"user-{i:07d}-{(i * 7919) % 100_003:06d}" for i in range(100_000)]
OUTSIDERS = ["user-9999999-000000", "someone", IDS[0] + "x"]


async def _holds(book: SegmentBook, version: int | None, what: str) -> None:
    async def held() -> bool:
        if isinstance(book, SegmentPoller):
            await book.poll()
        assert book.version("beta") == version, (book.version("beta"), book.invalid)
        return True

    await eventually(held, timeout=60, what=what)


async def test_a_100000_id_segment_reaches_apps_by_topic_and_http(
    scenario: Scenario, tmp_path: Path
) -> None:
    port = free_port()
    key, public = signing.generate_key()
    scenario.configure(
        RC_HTTP__PORT=str(port),
        # Bound to loopback, the apps' reads need no key (elsewhere they need one)
        RC_HTTP__HOST="127.0.0.1",
        RC_SIGNING__KEY=signing.private_key_text(key),
        RC_SIGNING__KEY_ID="controller",
    )
    scenario.start_daemon()
    ctl = Operator(scenario, tmp_path, port)
    ctl.env["PYTHONPATH"] = str(ROOT)  # the rolloutctl of this tree, whatever is installed
    ids_file = tmp_path / "beta.txt"
    ids_file.write_text("\n".join(IDS) + "\n")
    keys = {"controller": public}
    follower = SegmentFollower(
        KafkaSettings(bootstrap_servers=scenario.bootstrap),
        topic=scenario.topics["segments"],
        keys=keys,
    )
    poller = SegmentPoller(f"http://127.0.0.1:{port}", keys=keys)
    await follower.start()
    try:
        # When the operator puts a segment of 100,000 ids
        put = await ctl("segment", "put", "beta", "--ids-file", str(ids_file), "--reason", "beta")
        assert (put.code, put.out.strip()) == (
            0,
            "applied: segment put beta -> version 1, 100000 ids",
        ), put.err
        # Then both apps hold it, and answer members and non-members
        await _holds(follower, 1, "the segment followed from the topic")
        await _holds(poller, 1, "the segment polled over HTTP")
        for book in (follower, poller):
            assert book.size("beta") == len(IDS)
            assert all(book.member("beta", unit) for unit in IDS[::997])
            assert [book.member("beta", unit) for unit in OUTSIDERS] == [False] * 3
            assert (book.rejected, book.invalid) == (0, 0)
        listed = await ctl("segment", "list")
        assert listed.out.splitlines()[1].split() == ["beta", "1", "100000", "ids"], listed
        shown = await ctl("segment", "show", "beta")
        assert "100000 ids in" in shown.out, shown
        assert "signed by controller" in shown.out, shown

        # When it is replaced by half of the ids and the outsiders
        ids_file.write_text("\n".join(IDS[::2] + OUTSIDERS))
        replaced = await ctl("segment", "put", "beta", "--ids-file", str(ids_file))
        assert replaced.out.strip() == "applied: segment put beta -> version 2, 50003 ids"
        await _holds(follower, 2, "version 2 from the topic")
        await _holds(poller, 2, "version 2 over HTTP")
        for book in (follower, poller):
            assert [book.member("beta", u) for u in (IDS[0], IDS[1], OUTSIDERS[1])] == [
                True,
                False,
                True,
            ]

        # When it is deleted, rules that name it see an unknown segment
        deleted = await ctl("segment", "delete", "beta")
        assert deleted.out.strip() == "applied: segment delete beta -> version 3, deleted"
        await _holds(follower, None, "the delete from the topic")
        await _holds(poller, None, "the delete over HTTP")
        assert follower.member("beta", IDS[0]) is None
        assert poller.member("beta", IDS[0]) is None
        again = await ctl("segment", "delete", "beta")
        assert (again.code, again.out.strip()) == (
            3,
            "rejected: segment delete beta: no segment named 'beta'",
        )

        # A rule that does not parse never leaves the operator's machine
        bad = await ctl("segment", "put", "pros", "--rule", 'plan in ["pro"] and\n  country ~ "TH"')
        assert bad.code == 2
        assert "line 2, column 11" in bad.err, bad.err
    finally:
        await asyncio.gather(follower.stop(), poller.stop())
