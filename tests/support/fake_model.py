"""A misbehaving OpenAI-compatible model server on a local socket, for fault injection.

Speaks just enough HTTP/1.1 for one chat completion per connection, and
replies as ``behaviour`` says at the moment the request arrives: valid advice,
errors, garbage, silence, a one-byte-a-tick drip, endless or huge bodies.
The tests switch ``behaviour`` while the advisor or the daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from controller.core.rollouts.advice import FENCE

DRIP_INTERVAL = 0.1
"""Seconds between dripped bytes: far below any per-read timeout the tests use."""


def completion(content: str, *, model: str = "fake") -> bytes:
    return orjson.dumps(
        {"model": model, "choices": [{"message": {"role": "assistant", "content": content}}]}
    )


def advice(action: str) -> bytes:
    return completion(
        f'{{"action": "{action}", "confidence": 0.9, "rationale": "error rate looks fine"}}'
    )


def _reply(status: int, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}", "connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


FIXED: dict[str, bytes] = {
    "advance": _reply(200, advice("advance")),
    "refuse_json_schema": _reply(
        500,
        b'{"error": {"message": "loc: (body, response_format, type): '
        b"Input should be 'text' or 'json_object', input: json_schema\"}}",
    ),
    "hold": _reply(200, advice("hold")),
    "prose": _reply(200, completion("Sure! I think you should advance to the next stage.")),
    "bad_action": _reply(
        200, completion('{"action": "promote", "confidence": 1, "rationale": "go"}')
    ),
    "not_openai": _reply(200, b'{"hello": "world"}'),
    # A report's narrative (tests/integration/advisor/test_report_narrative.py):
    # true, then invented.
    "narrative": _reply(
        200, completion('{"narrative": "It was rolled back at stage 2/5 (5%) after 70 s."}')
    ),
    "narrative_rollback_25": _reply(
        200, completion('{"narrative": "It was rolled back at stage 3/5 (25%)."}')
    ),
    "narrative_partly": _reply(
        200,
        completion(
            '{"narrative": "It was rolled back at stage 2/5 (5%) after 70 s.'
            " Errors ran x40 the control's rate.\"}"
        ),
    ),
    "narrative_invented": _reply(
        200, completion('{"narrative": "It was rolled back at stage 2/5 (5%) after 123456789 s."}')
    ),
    # Past the reply limit: a 1.5 MB model name, an error page of 1 MB.
    "huge_model": _reply(
        200,
        completion(
            '{"action": "advance", "confidence": 0.9, "rationale": "ok"}', model="m" * 1_500_000
        ),
    ),
    "huge_error": _reply(500, b"E" * 1_000_000),
    # Under the reply limit, yet far too long a name to keep.
    "long_model": _reply(
        200,
        completion(
            '{"action": "advance", "confidence": 0.9, "rationale": "ok"}', model="m" * 200_000
        ),
    ),
    # Nested past any recursive parser's stack.
    "deep": _reply(200, b"[" * 200_000),
}


@functools.cache
def _gzip_bomb(inflated_mb: int) -> bytes:
    """A gzip body of a few kilobytes that inflates to ``inflated_mb`` megabytes of spaces."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: with a gzip header
    megabyte = b" " * 1_000_000
    body = b"".join(packer.compress(megabyte) for _ in range(inflated_mb))
    return body + packer.flush()


class FakeModel:
    """The server; ``requests`` holds every request body it received, in order."""

    def __init__(self) -> None:
        self.behaviour = "advance"
        self.error = "model crashed"
        """What ``error500`` replies say."""
        self.requests: list[dict[str, Any]] = []
        self.model_lists = 0
        """GET /models requests: the advisor's start-up check, the commands' look at the size."""
        self.listed: list[dict[str, Any]] = []
        """The models GET /models lists (llama.cpp's entries carry ``meta.n_params``)."""
        self.replies: list[str] = []
        """The behaviour each request met, in the order the requests arrived."""
        self.port = 0
        self.release = asyncio.Event()
        """Set at teardown: lets every held reply go."""
        self.answer_held = asyncio.Event()
        """Set by a test: lets ``held_error`` and ``slow`` replies go."""
        self.slow_seconds = 60.0
        """How long a ``slow`` reply takes unless ``answer_held`` lets it go sooner."""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._special: dict[str, Callable[[asyncio.StreamWriter], Awaitable[None]]] = {
            "hang": self._hang,
            "close": self._close,
            "drip": self._drip,
            "endless": self._endless,
            "error500": self._error500,
            "held_error": self._held_error,
            "slow": self._slow,
            "gzip": self._gzip,
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeModel:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        self.answer_held.set()
        assert self._server is not None
        self._server.close()
        if self._handlers:  # released above: each ends within a tick
            await asyncio.wait(self._handlers, timeout=1)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1)

    def asked_about(self, flag: str) -> int:
        """How many requests showed the model gate data of ``flag``."""
        return sum(1 for r in self.requests if _gate_data(r).get("flag") == flag)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /v1/models "):  # the start-up check: counted apart
                self.model_lists += 1
                writer.write(_reply(200, orjson.dumps({"object": "list", "data": self.listed})))
                await writer.drain()
                return
            self.requests.append(orjson.loads(await reader.readexactly(_length(head))))
            behaviour = self.behaviour
            if behaviour == "json_object_only":  # llama-cpp-python's refusal of json_schema
                kind = self.requests[-1].get("response_format", {}).get("type")
                behaviour = "refuse_json_schema" if kind == "json_schema" else "advance"
            self.replies.append(behaviour)
            special = self._special.get(behaviour)
            if special is not None:
                await special(writer)
            else:
                writer.write(FIXED[behaviour])
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up: what these tests provoke
        finally:
            writer.close()

    async def _hang(self, _writer: asyncio.StreamWriter) -> None:
        await self.release.wait()

    async def _close(self, _writer: asyncio.StreamWriter) -> None:
        return

    async def _error500(self, writer: asyncio.StreamWriter) -> None:
        writer.write(_reply(500, orjson.dumps({"error": self.error})))
        await writer.drain()

    async def _held_error(self, writer: asyncio.StreamWriter) -> None:
        await self.answer_held.wait()
        await self._error500(writer)

    async def _slow(self, writer: asyncio.StreamWriter) -> None:
        """Good advice (advance), after ``slow_seconds`` or when the test lets it go."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.answer_held.wait(), self.slow_seconds)
        writer.write(FIXED["advance"])
        await writer.drain()

    async def _gzip(self, writer: asyncio.StreamWriter) -> None:
        writer.write(_reply(200, _gzip_bomb(50), "content-encoding: gzip"))
        await writer.drain()

    async def _drip(self, writer: asyncio.StreamWriter) -> None:
        """A reply that promises 100 kB (within any limit) and sends one byte a tick."""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
        while not self.release.is_set() and not writer.is_closing():
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(DRIP_INTERVAL)

    async def _endless(self, writer: asyncio.StreamWriter) -> None:
        """A chunked reply without end, as fast as the client reads it."""
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        while not self.release.is_set() and not writer.is_closing():
            writer.write(chunk)
            await writer.drain()


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _gate_data(request: dict[str, Any]) -> dict[str, Any]:
    user = request["messages"][1]["content"]
    data: dict[str, Any] = orjson.loads(user.split(FENCE)[1])
    return data
