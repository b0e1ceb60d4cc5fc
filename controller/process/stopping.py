"""Stopping on SIGTERM and SIGINT: a signal sets an event the loops watch."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(
    stopping: asyncio.Event, signals: tuple[signal.Signals, ...] = STOP_SIGNALS
) -> Iterator[None]:
    """Set ``stopping`` when one of ``signals`` arrives, until the block ends."""
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stopping.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
