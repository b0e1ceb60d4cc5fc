"""A gzip body inflated as it arrives, never past a bound.

The HTTP server does not inflate request bodies itself (``auto_decompress``
off, :mod:`controller.adapters.http.server`): aiohttp would refuse an encoding it
cannot decode (``br`` and ``zstd`` without their libraries) with a plain-text
400 before any route sees the request, where OTLP/HTTP promises a 415 in a
``google.rpc.Status``. So the OTLP routes inflate ``gzip`` here, each chunk
as it comes, and stop at the bound instead of inflating a bomb.
"""

from __future__ import annotations

import zlib
from typing import Final

from controller.core.common import ControllerError

_GZIP: Final = 16 + zlib.MAX_WBITS
"""zlib's window bits for the gzip format (header and trailer checked)."""


class BodyTooLarge(ControllerError):
    """The body inflates past the bound."""


class NotGzip(ControllerError):
    """The body is not a whole gzip stream; the message says why."""


class GzipInflater:
    """Inflates the chunks fed to it (one gzip member or several, back to back)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._stream = zlib.decompressobj(wbits=_GZIP)
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        """Inflate ``data``; :class:`BodyTooLarge` past the bound, :class:`NotGzip` if bad."""
        try:
            while data:
                if self._stream.eof:
                    self._stream = zlib.decompressobj(wbits=_GZIP)
                out = self._stream.decompress(data, self._limit - self._size + 1)
                self._size += len(out)
                if self._size > self._limit:
                    raise BodyTooLarge(f"the body inflates past {self._limit} bytes")
                self._parts.append(out)
                data = self._stream.unconsumed_tail or self._stream.unused_data
        except zlib.error as exc:
            raise NotGzip(str(exc)) from exc

    def inflated(self) -> bytes:
        """All that was inflated; :class:`NotGzip` when the stream was cut short."""
        if not self._stream.eof:
            raise NotGzip("the gzip stream ends before its end")
        return b"".join(self._parts)
