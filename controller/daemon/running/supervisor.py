"""The supervisor: run the daemon's services until a signal or a death, then drain them.

Draining asks every service to finish the work in hand within the grace
period; past it the tasks are cancelled, and the exit code says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import structlog

from controller.daemon.running.closing import Closing

log = structlog.get_logger("controller.daemon.running.supervisor")

EXIT_OK = 0
EXIT_FORCED = 3
"""The exit code when the drain outlasted the grace period and the services were cancelled."""

Service = tuple[Coroutine[Any, Any, None], Callable[[], None]]
"""A service's run, and what asks it to stop."""


async def until_stopped(
    services: dict[str, Service], stop: asyncio.Event, grace: float, closing: Closing
) -> int:
    """Run the services until SIGTERM or until one dies; then stop all within ``grace``.

    Stopping asks each service to finish the work in hand (ingest flushes its
    batch, the engine its current decision); past the grace period the tasks
    are cancelled, and the closes after them get what remains of ``closing``'s
    deadline. A service that died takes the daemon down with its error.
    """
    tasks = {asyncio.create_task(coro, name=name): halt for name, (coro, halt) in services.items()}
    stopper = asyncio.create_task(stop.wait(), name="signals")
    done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    closing.begin()
    died = [t for t in done if t is not stopper and (t.cancelled() or t.exception())]
    log.info("draining", grace_s=grace, cause="signal" if not died else died[0].get_name())
    for halt in tasks.values():
        halt()
    _, pending = await asyncio.wait(tasks, timeout=grace)
    if pending:
        log.warning(
            "drain_timed_out", grace_s=grace, cancelled=sorted(t.get_name() for t in pending)
        )
        for pending_task in pending:
            pending_task.cancel()
        # A task that ignores its cancellation is left behind rather than waited for.
        _, stuck = await asyncio.wait(pending, timeout=closing.remaining())
        if stuck:
            log.warning("cancel_ignored", tasks=sorted(t.get_name() for t in stuck))
        _retrieve(tasks)
        return EXIT_FORCED
    for task in died:
        task.result()  # re-raise the error that stopped the daemon
    _retrieve(tasks)
    log.info("stopped")
    return EXIT_OK


def _retrieve(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Mark the errors of ended tasks as seen (those that stopped the daemon were raised)."""
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()
