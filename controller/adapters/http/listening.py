"""A listening aiohttp application that decides, per new connection, what serves it.

Both servers (:mod:`controller.adapters.http.server` and :mod:`controller.adapters.http.health`)
bind their own socket instead of using aiohttp's sites, so that a connection
past their limit can be answered or made room for before aiohttp's protocol
exists. What they share, binding and closing and the bound port, lives here;
each says in :meth:`Listener._connection` what a new connection gets, and
:class:`BusyAnswer` is the 503 one past its limit may get.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Self

from aiohttp import web

BACKLOG = 2048
"""Connections the kernel queues before the server accepts them (at most its
``net.core.somaxconn``). Past it a new connection's handshake is dropped and the
client tries again a second later, so it is sized for a crowd that comes back at
once: every event stream of a network that blipped."""


class Listener:
    """``async with`` binds ``host:port`` and serves ``runner``'s application; exit closes it."""

    def __init__(self, *, host: str, port: int, runner: web.AppRunner) -> None:
        self._host, self._port = host, port
        self._runner = runner
        self._listener: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._connection, self._host, self._port, backlog=BACKLOG
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._listener is not None:
            self._listener.close()
        await self._runner.cleanup()

    @property
    def port(self) -> int:
        """The bound port (the one asked for, or the one picked for port 0)."""
        if self._listener is None or not self._listener.sockets:
            return self._port
        return int(self._listener.sockets[0].getsockname()[1])

    def _server(self) -> web.Server:
        server = self._runner.server
        assert server is not None  # set up in __aenter__ before listening
        return server

    def _connection(self) -> asyncio.BaseProtocol:
        """The protocol for one new connection; aiohttp's by default."""
        return self._server()()


class BusyAnswer(asyncio.Protocol):
    """Answers 503 and closes: the server already holds its maximum of connections.

    The answer is followed by a half-close, and what the client sends is read
    and dropped until it closes too, for at most ``linger`` seconds: closing
    with its request unread would make the kernel send a reset, which can
    destroy the answer before the client reads it.
    """

    _BODY = b'{"error": "too many connections, retry later"}'
    _ANSWER = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
    )

    def __init__(self, linger: float, done: Callable[[BusyAnswer], None]) -> None:
        self._linger, self._done = linger, done
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self._ANSWER)
        if transport.can_write_eof() and self._linger > 0:
            transport.write_eof()
            self._timer = asyncio.get_running_loop().call_later(self._linger, transport.close)
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        """The request nobody will serve: dropped."""

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._done(self)
