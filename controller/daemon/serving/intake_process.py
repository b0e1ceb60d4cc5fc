"""The intakes' sending in a process of its own: off the daemon's interpreter altogether.

:class:`~.intake_worker.IntakeWorker` sends on a thread, which keeps the event loop free
but shares the interpreter: under a flood of batches one interpreter digests the events,
reads and writes the record of sent events, hands each record to the producer, answers
the HTTP requests and ingests what it accepted, while a core of the machine waits.
:class:`IntakeProcess` runs the same :class:`~.event_intake.EventIntake` in a child
process (``python -m controller.daemon.serving.intake_child``) with its own Redis
client and producer. The daemon hands it each checked batch as the events' bytes, one
frame over a socket pair; the child decodes them again (they passed the same decoder
here) and answers what became of the batch. What the intake answers is unchanged.

The child is the daemon's: it gets its settings on its standard input, and it ends when
the socket closes (the daemon ended or closed it), not at a SIGTERM or SIGINT sent to the
daemon's process group (a service manager's stop, a terminal's ^C), so the batches in
hand are answered. A child that ends while batches wait
fails each of them as not sent (a ``503``: nothing of a batch is counted until the broker
acknowledged it, and a batch sent again is counted once by ingest), and the next batch
starts it again, answered ``503`` itself while the child starts.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import structlog

from controller.adapters.http import Accepted, BatchNotSent, ChangedEvents
from controller.core.common import ControllerError
from controller.core.wire import EventDecoder, InEvent, Rejection
from controller.daemon.metrics import Metrics
from controller.daemon.serving.event_intake import EventIntake, count_request, opened_intake
from controller.process import configure
from controller.settings import Settings

log = structlog.get_logger("controller.daemon.serving.intake_process")

_FRAME = struct.Struct("!I")
START_SECONDS = 60.0
"""How long the daemon's start waits for the child to say it is ready."""
RESTART_PAUSE_SECONDS = 1.0
"""The least time between two starts of the child."""
CLOSE_SECONDS = 5.0
"""The most the child waits for its clients to close once the daemon closed the socket."""
_READY = 0


def _frame(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(body)) + body


async def _read(reader: asyncio.StreamReader) -> Any:
    """The next message, or None at the end of the stream (only the two ends of one socket
    pair, parent and child, ever write to it)."""
    try:
        head = await reader.readexactly(_FRAME.size)
        return pickle.loads(await reader.readexactly(_FRAME.unpack(head)[0]))  # noqa: S301
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


@dataclass(slots=True)
class _Child:
    process: asyncio.subprocess.Process
    writer: asyncio.StreamWriter
    waiting: dict[int, asyncio.Future[tuple[str, Any]]] = field(default_factory=dict)
    ended: bool = False


class IntakeProcess:
    """An :class:`EventIntake` in a child process; use it with ``async with``."""

    def __init__(self, settings: Settings, *, metrics: Metrics) -> None:
        self._settings, self._metrics = settings, metrics
        self._child: _Child | None = None
        self._ids = itertools.count(1)
        self._readers: set[asyncio.Task[None]] = set()
        self._started_at = 0.0
        self._restart: asyncio.Task[None] | None = None

    async def __aenter__(self) -> IntakeProcess:
        self._child = await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._restart is not None:
            self._restart.cancel()
        child, self._child = self._child, None
        if child is not None:
            await _close(child)
        for reader in list(self._readers):
            await reader

    async def send(self, client: str, events: Sequence[tuple[InEvent, bytes]]) -> Accepted:
        """:meth:`EventIntake.send`, in the child."""
        child = self._child
        if child is None or child.ended:
            self._start_again()
            raise BatchNotSent("the intake's process is starting again")
        asked = next(self._ids)
        answer = child.waiting[asked] = asyncio.get_running_loop().create_future()
        try:
            child.writer.write(_frame((asked, [raw for _, raw in events])))
            await child.writer.drain()
            kind, said = await answer
        except ConnectionError as exc:
            raise BatchNotSent("the intake's process ended") from exc
        finally:
            child.waiting.pop(asked, None)
        if kind == "accepted":
            count, duplicates, unrecorded = said
            if unrecorded:
                self._metrics.intake_batches.labels("unrecorded").inc()
            return Accepted(count, duplicates=tuple(duplicates))
        if kind == "changed":
            raise ChangedEvents(said)
        raise BatchNotSent(str(said))

    def count(self, outcome: str, events: int) -> None:
        """Count one request by what became of it, and the events it sent."""
        count_request(self._metrics, outcome, events)

    def _start_again(self) -> None:
        if self._restart is not None and not self._restart.done():
            return
        if time.monotonic() - self._started_at < RESTART_PAUSE_SECONDS:
            return
        self._restart = asyncio.create_task(self._started_again(), name="intake-process")

    async def _started_again(self) -> None:
        try:
            self._child = await self._start()
        except (ControllerError, OSError) as exc:  # the next batch tries again
            log.warning("intake_process_not_started", error=str(exc)[:300])

    async def _start(self) -> _Child:
        """The child, started and ready: its clients open, its settings read."""
        self._started_at = time.monotonic()
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "controller.daemon.serving.intake_child",
                str(theirs.fileno()),
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        assert process.stdin is not None
        # As values: the daemon's settings class may be made for its file, and secrets
        # stay secret objects (pickled, not printed).
        given = self._settings.model_dump()
        process.stdin.write(pickle.dumps(given, protocol=pickle.HIGHEST_PROTOCOL))
        await process.stdin.drain()
        process.stdin.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        child = _Child(process, writer)
        try:
            async with asyncio.timeout(START_SECONDS):
                ready = await _read(reader)
        except TimeoutError:
            ready = None
        if ready != (_READY, "ready", None):
            await _close(child)
            raise ControllerError(
                f"the intake's process did not start (exit code {process.returncode})"
            )
        task = asyncio.create_task(_answers(reader, child), name="intake-answers")
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)
        log.info("intake_process_started", pid=process.pid)
        return child


async def _answers(reader: asyncio.StreamReader, child: _Child) -> None:
    """Hand each of the child's answers to the batch that waits for it; at the end, fail
    the batches still waiting (the child ended)."""
    while (message := await _read(reader)) is not None:
        asked, kind, said = message
        waiting = child.waiting.get(asked)
        if waiting is not None and not waiting.done():
            waiting.set_result((kind, said))
    child.ended = True
    for waiting in child.waiting.values():
        if not waiting.done():
            waiting.set_exception(BatchNotSent("the intake's process ended"))
    if child.process.returncode is None:
        await _close(child)
    log.warning("intake_process_ended", code=child.process.returncode)


async def _close(child: _Child) -> None:
    """Close the socket (the child ends at its end), and wait for it to exit."""
    child.ended = True
    child.writer.close()
    try:
        async with asyncio.timeout(10):
            await child.process.wait()
    except TimeoutError:
        child.process.kill()
        await child.process.wait()


# -- the child ---------------------------------------------------------------------------
async def _serve(settings: Settings, fd: int) -> None:
    """Answer the daemon's batches until it closes the socket."""
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    stack = AsyncExitStack()
    try:
        # the daemon counts: a batch's answer says what to
        intake = await opened_intake(stack, settings, Metrics())
        decoder = EventDecoder(max_bytes=settings.ingest.max_event_bytes)
        writer.write(_frame((_READY, "ready", None)))
        working: set[asyncio.Task[None]] = set()
        while (message := await _read(reader)) is not None:
            task = asyncio.create_task(_answer(intake, decoder, message, writer))
            working.add(task)
            task.add_done_callback(working.discard)
        await asyncio.gather(*working, return_exceptions=True)
    finally:
        try:  # a broker that never answers would hold the producer's close for good
            async with asyncio.timeout(CLOSE_SECONDS):
                await stack.aclose()
        except TimeoutError:
            log.warning("intake_process_close_abandoned", after_s=CLOSE_SECONDS)


async def _answer(
    intake: EventIntake,
    decoder: EventDecoder,
    message: tuple[int, list[bytes]],
    writer: asyncio.StreamWriter,
) -> None:
    asked, raws = message
    try:
        accepted = await intake.send("", _decoded(decoder, raws))
        said: tuple[str, Any] = (
            "accepted",
            (accepted.events, list(accepted.duplicates), accepted.unrecorded),
        )
    except ChangedEvents as exc:
        said = ("changed", exc.ids)
    except BatchNotSent as exc:
        said = ("not_sent", str(exc)[:500])
    except Exception as exc:  # one batch's failure is that batch's
        log.exception("intake_batch_failed")
        said = ("not_sent", f"the intake failed: {type(exc).__name__}")
    if not writer.is_closing():
        writer.write(_frame((asked, *said)))


def _decoded(decoder: EventDecoder, raws: list[bytes]) -> list[tuple[InEvent, bytes]]:
    """The events again, as the daemon decoded them with the same decoder before."""
    events: list[tuple[InEvent, bytes]] = []
    for raw in raws:
        found = decoder.decode(raw)
        if isinstance(found, Rejection):
            raise BatchNotSent(f"an event the daemon accepted was refused: {found.detail}")
        events.append((found, raw))
    return events


def main() -> None:
    """The child: its settings on standard input, the socket's descriptor its argument."""
    settings = Settings.model_validate(pickle.loads(sys.stdin.buffer.read()))  # noqa: S301
    configure(settings.log)
    # A terminal's ^C and a service manager's SIGTERM reach the daemon's whole process
    # group: the daemon finishes its batches, closes the socket, and that ends the child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)
    asyncio.run(_serve(settings, fd))
