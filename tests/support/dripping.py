"""A hostile HTTP peer: answers whose body arrives one byte at a time.

:class:`Dripper` is a small HTTP/1.1 server over asyncio streams. Each
request is answered by ``answer`` (a canned answer, or the upstream's when it
proxies a real server); when ``slow`` says so, the status line and headers
go out at once and the body follows one byte every ``every`` seconds, which
no per-read timeout ever trips. Every connection is closed after its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Answer = Callable[[str, str, dict[str, str], bytes], Awaitable[bytes]]
"""(method, path, headers, body) -> the whole raw HTTP answer."""


def canned(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    """A raw HTTP answer with ``body``."""
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def upstream(host: str, port: int) -> Answer:
    """Answers fetched from the server at ``host:port`` (a proxy in front of it)."""

    async def fetch(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            kept = {k: v for k, v in headers.items() if k.lower() not in ("connection", "host")}
            lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in kept.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return fetch


@dataclass
class Dripper:
    """An HTTP server whose answers to the requests ``slow`` picks drip in a byte at a time."""

    answer: Answer
    slow: Callable[[str, str], bool] = lambda _method, _path: False
    every: float = 2.0
    slow_body: Callable[[bytes], bool] | None = None
    """Also drip the answers to requests whose body this picks (a query naming one flag)."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    dripping: int = 0
    """Answers being dripped right now."""
    _server: asyncio.Server | None = None
    _open: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> str:
        """Listen on a free port; the base URL."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in self._open:  # a drip in progress ends with the server
                task.cancel()
            await asyncio.gather(*self._open, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            try:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                first, *lines = head.split("\r\n")
                method, path, _ = first.split(" ", 2)
                headers = dict(line.split(": ", 1) for line in lines if ": " in line)
                size = int(
                    next((v for k, v in headers.items() if k.lower() == "content-length"), 0)
                )
                body = await reader.readexactly(size)
                self.requests.append((method, path))
                raw = await self.answer(method, path, headers, body)
                picked = self.slow_body is not None and self.slow_body(body)
                if self.slow(method, path) or picked:
                    await self._drip(raw, writer)
                else:
                    writer.write(_closing(raw))
                    await writer.drain()
            finally:
                self._open.discard(task)
                writer.close()

    async def _drip(self, raw: bytes, writer: asyncio.StreamWriter) -> None:
        head, _, body = _closing(raw).partition(b"\r\n\r\n")
        writer.write(head + b"\r\n\r\n")
        await writer.drain()
        self.dripping += 1
        try:
            for i in range(len(body)):
                await asyncio.sleep(self.every)
                writer.write(body[i : i + 1])
                await writer.drain()
        finally:
            self.dripping -= 1


def _closing(raw: bytes) -> bytes:
    """``raw`` with ``Connection: close``, as every answer here ends its connection."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + sep + body
