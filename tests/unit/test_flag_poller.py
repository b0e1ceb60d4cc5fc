"""The HTTP flag poller against a scripted /flags: ETags, failures, agreeing arms."""

from __future__ import annotations

import time
from typing import Any

import httpx

from controller.core.messages import Arm, FlagState
from controller.sdk.client import FlagClient
from controller.sdk.poller import FlagPoller

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
