"""The HTTP flag poller against a scripted /flags: ETags, failures, agreeing arms."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from controller.core.wire.messages import Arm, FlagState
from controller.sdk import FlagClient
from controller.sdk.poller import FlagPoller
from tests.support.dripping import Dripper, canned

STATE = {
    "flag": "checkout",
    "version": 4,
    "status": "rolling_out",
    "percent": 25.0,
    "salt": "abc",
    "rollout_id": "r1",
    "stage": 2,
}


class Script:
    """Answers each request with the next scripted response and records the request."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)


def flags(body: Any, etag: str = '"e1"') -> httpx.Response:
    return httpx.Response(200, json=body, headers={"ETag": etag})


async def test_polls_with_etags_and_keeps_states_through_failures() -> None:
    script = Script(
        flags([STATE, {"flag": "broken"}]),
        httpx.Response(304),
        httpx.Response(503),
        flags([{**STATE, "version": 5, "percent": 50.0}], etag='"e2"'),
    )
    poller = FlagPoller("http://controller:8000/", transport=httpx.MockTransport(script))
    assert await poller.poll()
    assert poller.ready.is_set()
    assert poller.invalid == 1
    assert await poller.poll()
    assert not await poller.poll()  # 503: the last states stay
    assert poller.state("checkout").version == 4  # type: ignore[union-attr]
    assert await poller.poll()
    assert poller.state("checkout").percent == 50.0  # type: ignore[union-attr]
    assert [r.headers.get("If-None-Match") for r in script.requests] == [
        None,
        '"e1"',
        '"e1"',
        '"e1"',
    ]
    assert str(script.requests[0].url) == "http://controller:8000/flags"
    assert (poller.failures, poller.polls) == (1, 4)
    await poller.stop()


async def test_unreachable_controller_is_not_ready_and_arms_are_control() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    poller = FlagPoller("http://controller:8000", transport=httpx.MockTransport(refuse))
    assert not await poller.poll()
    assert not poller.ready.is_set()
    assert poller.arm("checkout", "u1") == (Arm.CONTROL, 0)
    await poller.stop()


async def test_the_poller_and_the_kafka_client_assign_alike() -> None:
    script = Script(flags([STATE]))
    poller = FlagPoller("http://c", transport=httpx.MockTransport(script))
    await poller.poll()
    kafka_side = FlagClient(
        states=[FlagState.model_validate({**STATE, "type": "flag_state", "v": 1, "id": "x",
                                          "ts": int(time.time() * 1000)})]
    )  # fmt: skip
    units = [f"u{i}" for i in range(3000)]
    assert [poller.arm("checkout", u) for u in units] == [
        kafka_side.arm("checkout", u) for u in units
    ]
    await poller.stop()


async def test_an_answer_over_the_size_limit_is_abandoned_and_the_last_states_kept() -> None:
    huge = [{**STATE, "flag": f"flag-{i}", "salt": "x" * 60} for i in range(200)]
    script = Script(flags([STATE]), flags(huge, etag='"e2"'), flags(huge, etag='"e2"'))
    chunks = _Chunks(orjson.dumps(huge))
    script.responses.append(httpx.Response(200, stream=chunks))  # no Content-Length
    poller = FlagPoller(
        "http://controller:8000", transport=httpx.MockTransport(script), max_bytes=4096
    )
    assert await poller.poll()
    assert not await poller.poll()
    assert not await poller.poll()
    assert not await poller.poll()
    assert (poller.oversized, poller.failures) == (3, 3)
    assert chunks.read_bytes <= 4096 + _Chunks.SIZE  # stopped while reading
    assert poller.state("checkout") is not None
    assert poller.state("flag-0") is None
    await poller.stop()


async def test_an_answer_dripping_in_fails_the_poll_within_its_deadline() -> None:
    body = orjson.dumps([STATE])
    dripper = Dripper(lambda *_: _now(canned(200, body)), slow=lambda _m, _p: True, every=0.05)
    url = await dripper.start()
    poller = FlagPoller(url, timeout=0.3)
    try:
        assert not await poller.poll()  # a per-read timeout would wait ~4 s for every byte
        assert poller.failures == 1
    finally:
        await poller.stop()
        await dripper.close()


async def _now(answer: bytes) -> bytes:
    return answer


class _Chunks(httpx.AsyncByteStream):
    """A body streamed in 1 KiB chunks, counting what was read of it."""

    SIZE = 1024

    def __init__(self, body: bytes) -> None:
        self.body, self.read_bytes = body, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), self.SIZE):
            chunk = self.body[start : start + self.SIZE]
            self.read_bytes += len(chunk)
            yield chunk


async def test_the_app_key_goes_with_every_poll_of_flags_and_segments() -> None:
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("Authorization")))
        return httpx.Response(200, json={"segments": []} if "segments" in request.url.path else [])

    poller = FlagPoller(
        "http://controller:8000",
        transport=httpx.MockTransport(answer),
        poll_segments=True,
        api_key="rc_app_secret",
    )
    await poller.start()
    await poller.stop()
    assert {path for path, _ in seen} == {"/flags", "/v1/segments"}
    assert {key for _, key in seen} == {"Bearer rc_app_secret"}
