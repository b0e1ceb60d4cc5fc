"""One deadline per outbound call, first byte to last, and bounded answers.

The helper itself, the webhook poster (the alert forwarder's way to Slack)
and the tools' GET against a local server that drips its answer a byte at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controller.adapters import http_client
from controller.adapters.http_client import JsonPoster, Unreachable
from controller.kit.deadlines import (
    DeadlineExceeded,
    TooLarge,
    deadline,
    read_bounded,
    read_bounded_sync,
)
from tests.support.dripping import Dripper, canned


async def test_the_deadline_bounds_the_whole_block_and_names_it() -> None:
    with pytest.raises(DeadlineExceeded, match=r"GET /x: no complete answer within 0\.05 s"):
        async with deadline(0.05, "GET /x"):
            await asyncio.Event().wait()


async def test_a_timeout_of_the_block_s_own_is_not_taken_for_the_deadline() -> None:
    with pytest.raises(TimeoutError) as caught:
        async with deadline(60, "GET /x"):
            raise TimeoutError("the client's own")
    assert not isinstance(caught.value, DeadlineExceeded)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize(
    ("parts", "declared", "limit", "error"),
    [
        ((b"ab", b"cd"), None, 4, None),
        ((b"ab", b"cde"), None, 4, "over the 4-byte limit"),
        ((b"ab",), "5", 4, "declares 5 bytes"),
        ((b"ab",), "\u00b2", 4, None),  # a declared size that is no ASCII number is ignored
        ((b"ab",), "nonsense", 4, None),
    ],
)
async def test_a_body_is_read_up_to_its_limit(
    parts: tuple[bytes, ...], declared: str | None, limit: int, error: str | None
) -> None:
    if error is None:
        assert await read_bounded(_chunks(*parts), limit, declared=declared) == b"".join(parts)
        assert read_bounded_sync(parts, limit, declared=declared) == b"".join(parts)
        return
    with pytest.raises(TooLarge, match=error):
        await read_bounded(_chunks(*parts), limit, declared=declared)
    with pytest.raises(TooLarge, match=error):
        read_bounded_sync(parts, limit, declared=declared)


async def test_a_webhook_dripping_its_answer_is_unreachable_within_the_deadline() -> None:
    async def ok(*_: object) -> bytes:
        return canned(200, b"ok" * 50, "text/plain")

    dripper = Dripper(ok, slow=lambda _m, _p: True, every=0.05)
    url = await dripper.start()
    try:
        async with JsonPoster(timeout_s=0.3) as poster:
            with pytest.raises(Unreachable, match=r"no complete answer within 0\.3 s"):
                await poster.post(f"{url}/hooks/secret", b"{}")
            dripper.slow = lambda _m, _p: False
            answer = await poster.post(f"{url}/hooks/secret", b"{}")
        assert (answer.status, answer.text) == (200, "ok" * 50)
    finally:
        await dripper.close()


async def test_the_tools_get_is_bounded_in_time_and_size_as_a_whole() -> None:
    async def ok(*_: object) -> bytes:
        return canned(200, b'{"ok": 1}' + b" " * 200, "application/json")

    dripper = Dripper(ok, slow=lambda _m, _p: True, every=0.05)
    url = await dripper.start()
    try:

        def get(max_bytes: int = http_client.MAX_API_ANSWER_BYTES) -> http_client.Answer:
            return http_client.get(f"{url}/rollouts", timeout_s=0.3, max_bytes=max_bytes)

        with pytest.raises(Unreachable, match=r"no complete answer within 0\.3 s"):
            await asyncio.to_thread(get)
        dripper.slow = lambda _m, _p: False
        assert (await asyncio.to_thread(get)).json() == {"ok": 1}
        with pytest.raises(Unreachable, match="declares 209 bytes, over the 100-byte limit"):
            await asyncio.to_thread(get, 100)
    finally:
        await dripper.close()
