"""The tools' blocking HTTP calls, over the standard library, answer as httpx answered them.

A 3xx is the answer (no redirect is followed), a 4xx or 5xx is an answer too, headers are
read whatever their case, a body is decoded by its charset, and a URL that is not http or
https is refused in words; a refused connection is :class:`Unreachable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controller.adapters import http_client
from controller.adapters.http_client import Unreachable
from tests.support.dripping import Dripper, canned


async def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    if path == "/moved":
        return b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    if path == "/busy":
        head = "HTTP/1.1 429 X\r\nRetry-After: 3\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        return f"{head}Content-Length: 4\r\nConnection: close\r\n\r\nbusy".encode()
    if path == "/latin":
        return canned(200, "café".encode("latin-1"), "text/plain; charset=latin-1")
    token = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
    echoed = f'{{"method": "{method}", "token": "{token}"}}'
    return canned(200, echoed.encode() + body)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    server = Dripper(answer)
    base = await server.start()
    try:
        yield base
    finally:
        await server.close()


async def get(url: str, **headers: str) -> http_client.Answer:
    return await asyncio.to_thread(http_client.get, url, timeout_s=5, headers=headers)


async def test_an_answer_is_its_status_headers_and_body(url: str) -> None:
    # When the controller is asked, with a token
    answered = await get(f"{url}/rollouts", Authorization="Bearer t")

    # Then its JSON answer is read, the token having been sent
    assert answered.status == 200
    assert answered.json() == {"method": "GET", "token": "Bearer t"}
    assert answered.headers["content-type"] == "application/json"


async def test_a_refusal_is_an_answer_with_its_headers_in_any_case(url: str) -> None:
    answered = await get(f"{url}/busy")

    assert (answered.status, answered.text) == (429, "busy")
    assert answered.headers.get("Retry-After") == answered.headers["retry-after"] == "3"
    assert answered.headers["set-cookie"] == "a=1, b=2"


async def test_a_redirect_is_the_answer_not_followed(url: str) -> None:
    answered = await get(f"{url}/moved")

    assert answered.status == 302
    assert answered.headers["location"] == "/elsewhere"


async def test_a_body_is_read_in_its_charset(url: str) -> None:
    assert (await get(f"{url}/latin")).text == "café"


async def test_a_post_sends_its_json_body(url: str) -> None:
    posted = await asyncio.to_thread(http_client.post, f"{url}/check", b"", timeout_s=5)

    assert posted.json() == {"method": "POST", "token": ""}


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("ftp://127.0.0.1/rollouts", "is no http:// or https:// URL"),
        ("file:///etc/passwd", "is no http:// or https:// URL"),
        ("http://127.0.0.1:9/rollouts", "Connection refused"),
    ],
)
async def test_no_answer_is_unreachable_in_words(target: str, said: str) -> None:
    with pytest.raises(Unreachable, match=said):
        await get(target)
