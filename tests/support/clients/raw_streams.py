"""OFREP event stream clients on raw sockets: ones that reset their connection, and ones
that never read what they are sent.

:func:`raw_stream` opens ``GET /ofrep/v1/events`` with asyncio and reads only
the answer's head and the stream's first bytes (the ``retry`` the server
sends once the stream is open); :meth:`RawStream.reset` ends the connection
with a reset, as a client whose network dropped it would be seen.

:class:`NonReader` is a blocking socket that sends the request and never
reads: it only peeks (``MSG_PEEK`` takes nothing from the socket) until the
stream is open, and :meth:`NonReader.closed` asks the kernel, without
reading, whether the server has ended the connection.
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

    def wait_open(self, timeout: float = 30) -> float:
        """Peek until the stream is open; when that was seen (``time.monotonic()``)."""
        deadline = time.monotonic() + timeout
        while OPENED not in self.sock.recv(4096, socket.MSG_PEEK):
            if time.monotonic() > deadline:
                raise TimeoutError("the stream did not open")
            time.sleep(0.01)
        return time.monotonic()

    def closed(self) -> bool:
        """Whether the server has ended the connection (closed or reset it); reads nothing."""
        poller = select.poll()
        poller.register(self.sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(0))

    def close(self) -> None:
        self.sock.close()
