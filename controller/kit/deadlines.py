"""One overall deadline per outbound call, and a bounded read of its answer.

An HTTP client's timeout limits each socket operation: a server that drips
one byte every two seconds never trips a five-second read timeout, and holds
the caller for as long as it likes. Every outbound call (the Unleash admin
API, the model server, the alert webhook, the SDK's ``/flags`` poller)
therefore runs inside :func:`deadline`, which bounds the whole exchange from
the first byte sent to the last byte read, and reads the body with
:func:`read_bounded`, which stops as soon as the answer is known to be too
large. Both only use asyncio, so the daemon's adapters and the app SDK share
them without sharing an HTTP client. The operator's tools are not async:
:func:`within` and :func:`read_bounded_sync` bound their calls the same way, and load no
asyncio (``rolloutctl status`` answers sooner without its 30-odd modules).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager

from controller.core.common import ControllerError


class DeadlineExceeded(ControllerError, TimeoutError):
    """The whole call did not finish within its deadline; the message names it."""


class TooLarge(ControllerError, ValueError):
    """The answer is larger than the caller accepts; the message says how large."""


@asynccontextmanager
async def deadline(seconds: float, what: str) -> AsyncIterator[None]:
    """Cancel the block after ``seconds`` and raise :class:`DeadlineExceeded` naming ``what``.

    A :class:`TimeoutError` raised inside the block for another reason is let
    through as it is: only this deadline's expiry is reported as its own.
    """
    import asyncio  # noqa: PLC0415 - loaded already by whoever awaits this; not by the tools

    try:
        async with asyncio.timeout(seconds) as scope:
            yield
    except TimeoutError as exc:
        if not scope.expired():
            raise
        raise DeadlineExceeded(f"{what}: no complete answer within {seconds:g} s") from exc


async def read_bounded(
    chunks: AsyncIterable[bytes], limit: int, *, declared: str | None = None
) -> bytes:
    """Every chunk joined; :class:`TooLarge` once more than ``limit`` bytes came or were declared.

    ``declared`` is the answer's ``Content-Length``, refused before any byte
    is read when it is already over the limit.
    """
    _refuse_declared(declared, limit)
    body = bytearray()
    async for chunk in chunks:
        _add(body, chunk, limit)
    return bytes(body)


def read_bounded_sync(chunks: Iterable[bytes], limit: int, *, declared: str | None = None) -> bytes:
    """:func:`read_bounded` for a caller outside an event loop."""
    _refuse_declared(declared, limit)
    body = bytearray()
    for chunk in chunks:
        _add(body, chunk, limit)
    return bytes(body)


def within(chunks: Iterable[bytes], seconds: float, what: str) -> Iterator[bytes]:
    """The chunks, raising :class:`DeadlineExceeded` naming ``what`` once ``seconds`` have passed.

    For blocking clients, whose timeouts bound each read: the deadline is
    checked as each chunk arrives, so a server dripping its answer holds the
    caller at most one read timeout past it.
    """
    end = time.monotonic() + seconds
    for chunk in chunks:
        if time.monotonic() > end:
            raise DeadlineExceeded(f"{what}: no complete answer within {seconds:g} s")
        yield chunk


def _refuse_declared(declared: str | None, limit: int) -> None:
    size = (declared or "").strip()
    if size.isascii() and size.isdigit() and int(size) > limit:  # ASCII: "²".isdigit() too
        raise TooLarge(f"the answer declares {int(size)} bytes, over the {limit}-byte limit")


def _add(body: bytearray, chunk: bytes, limit: int) -> None:
    body += chunk
    if len(body) > limit:
        raise TooLarge(f"the answer is over the {limit}-byte limit")
