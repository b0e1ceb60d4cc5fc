"""OFREP event stream clients on raw sockets: ones that reset their connection, and ones
that never read what they are sent.

:func:`raw_stream` opens ``GET /ofrep/v1/events`` with asyncio and reads only
the answer's head and the stream's first bytes (the ``retry`` the server
sends once the stream is open); :meth:`RawStream.reset` ends the connection
with a reset, as a client whose network dropped it would be seen.

:class:`NonReader` is a blocking socket that sends the request and never
reads: it only peeks (``MSG_PEEK`` takes nothing from the socket) until the
stream is open, and :func:`wait_ended` asks the kernel, without reading,
when the server has ended each connection.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import time
from dataclasses import dataclass

OPENED = b"retry: 2000"
"""The first bytes of an open stream."""


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()


@dataclass
class RawStream:
    """A stream request's answer: its status, and (when 200) the open connection."""

    status: int
    writer: asyncio.StreamWriter

    def reset(self) -> None:
        """End the connection with a reset (``SO_LINGER`` 0), not a close."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


async def raw_stream(host: str, port: int, path: str = "/ofrep/v1/events") -> RawStream:
    """Ask for a stream; the answer once its head (and, for a 200, the stream's first
    bytes) came. A refused one's connection is closed."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request(path))
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(None, 2)[1])
    if status == 200:
        await reader.readuntil(OPENED)
    else:
        writer.close()
    return RawStream(status, writer)


class NonReader:
    """A client that asks for a stream and never reads it."""

    def __init__(self, host: str, port: int, path: str = "/ofrep/v1/events") -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.sendall(request(path))

    def wait_open(self, timeout: float = 30) -> float | None:
        """Peek until the stream is open: when that was seen (``time.monotonic()``), or None
        when the stream was refused."""
        deadline = time.monotonic() + timeout
        while OPENED not in (seen := self.sock.recv(4096, socket.MSG_PEEK)):
            status, complete, _ = seen.partition(b"\r\n")
            if complete and b" 200 " not in status:
                return None
            if time.monotonic() > deadline:
                raise TimeoutError("the stream did not open")
            time.sleep(0.01)
        return time.monotonic()

    @classmethod
    def opened(cls, host: str, port: int, timeout: float = 30) -> tuple[NonReader, float]:
        """A non-reader whose stream is open, asking again while refused; when it opened."""
        deadline = time.monotonic() + timeout
        while True:
            client = cls(host, port)
            if (at := client.wait_open(deadline - time.monotonic())) is not None:
                return client, at
            client.close()
            time.sleep(0.05)

    def close(self) -> None:
        self.sock.close()


def wait_ended(clients: list[NonReader], timeout: float) -> list[float | None]:
    """Watch ``clients`` (reading nothing) until the server has ended each connection (closed
    or reset it) or ``timeout`` passes: when each was seen ended (``time.monotonic()``), None
    for one still open."""
    poller = select.poll()
    waiting = {client.sock.fileno(): i for i, client in enumerate(clients)}
    for fd in waiting:
        poller.register(fd, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    ended: list[float | None] = [None] * len(clients)
    deadline = time.monotonic() + timeout
    while waiting and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(min(left, 0.1) * 1000):
            poller.unregister(fd)
            ended[waiting.pop(fd)] = time.monotonic()
    return ended
