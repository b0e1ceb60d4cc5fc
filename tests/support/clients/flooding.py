"""Floods of the daemon's HTTP routes, sent from a process of their own.

A flood sent from the test's (or a bench's) own event loop would share it with
the watcher that times a kill: the flood's clients would delay the watcher,
not the daemon. So :class:`Flood` runs this module as a child process
(``python -m tests.support.clients.flooding``), which sends requests back to back from
``senders`` clients at once and prints, every half second, one JSON line of
the answers so far by status. Every connection goes to 127.0.0.1 only; the
flood ends when its process is stopped.

The kinds:

* ``otlp``: ``POST /v1/traces`` of gzip'd protobuf exports read from files;
  each sender starts at its own file and goes on through the rest, so one
  file sent by every sender is one export re-sent by all of them, and many
  files are distinct exports;
* ``events``: ``POST /v1/events`` of ``batch`` fresh events (new ids) each;
* ``ofrep``: ``POST /ofrep/v1/evaluate/flags/<flag>`` single evaluations,
  a new ``targetingKey`` each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson

from controller.adapters.redis.aggregates import connect
from controller.settings import RedisSettings
from tests.support.clients.ofrep import flag_rollout, store

FLAG = "flood.checkout"
"""The flag the floods' evaluations and events are of (a running rollout's: stored by
:func:`store_rollouts`)."""
FLOOD_SETTINGS = {
    "RC_HTTP__REQUIRE_APP_KEYS": "false",
    "RC_HTTP__OTLP_ITEMS_PER_SECOND": "1e9",
    "RC_HTTP__INTAKE_EVENTS_PER_SECOND": "1e9",
    "RC_HTTP__OFREP_REQUESTS_PER_SECOND": "1e9",
    "RC_ENGINE__SWEEP_INTERVAL_SECONDS": "3600",
}
"""The daemon's settings under a flood: open, every per-client rate out of the way (what is
shown is what the daemon's own bounds leave for a kill, not a rate limit turning the flood
away), and no timer due (a kill is decided on its own)."""
ROOT = Path(__file__).resolve().parents[3]
REPORT_EVERY_SECONDS = 0.5
OTLP_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
JSON_HEADERS = {"Content-Type": "application/json"}
RETRY_PAUSE_SECONDS = 0.05
"""A sender answered 429 or 503 sends again after this (sooner than ``Retry-After``: a
flood, not a well-behaved client)."""


def _otlp(bodies: list[bytes], start: int) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    for body in itertools.islice(itertools.cycle(bodies), start % len(bodies), None):
        yield "/v1/traces", body, OTLP_HEADERS


def _events(flag: str, batch: int) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    for sent in itertools.count():
        events = [
            {
                "type": "exposure",
                "v": 1,
                "id": uuid.uuid4().hex,
                "ts": 1_700_000_000_000 + sent,
                "flag": flag,
                "unit": f"user-{(sent * batch + i) % 10_000}",
                "arm": "treatment" if i % 2 else "control",
                "flag_version": 3,
            }
            for i in range(batch)
        ]
        yield "/v1/events", orjson.dumps({"events": events}), JSON_HEADERS


def _ofrep(flag: str) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    for sent in itertools.count():
        body = orjson.dumps({"context": {"targetingKey": f"user-{sent}"}})
        yield f"/ofrep/v1/evaluate/flags/{flag}", body, JSON_HEADERS


async def _sender(
    base: str, requests: Iterator[tuple[str, bytes, dict[str, str]]], answers: Counter[int]
) -> None:
    async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=60)) as session:
        for path, body, headers in requests:
            try:
                async with session.post(path, data=body, headers=headers) as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            answers[status] += 1
            if status in (0, 429, 503):
                await asyncio.sleep(RETRY_PAUSE_SECONDS)


async def _report(answers: Counter[int]) -> None:
    while True:
        await asyncio.sleep(REPORT_EVERY_SECONDS)
        print(json.dumps({str(status): n for status, n in answers.items()}), flush=True)


async def _flood(args: argparse.Namespace, bodies: list[bytes]) -> None:
    base = f"http://127.0.0.1:{args.port}"
    answers: Counter[int] = Counter()
    senders = []
    for i in range(args.senders):
        if args.kind == "otlp":
            requests = _otlp(bodies, i * max(1, len(bodies) // args.senders))
        elif args.kind == "events":
            requests = _events(args.flag, args.batch)
        else:
            requests = _ofrep(args.flag)
        senders.append(_sender(base, requests, answers))
    await asyncio.gather(_report(answers), *senders)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("otlp", "events", "ofrep"))
    parser.add_argument("port", type=int)
    parser.add_argument("--senders", type=int, default=6)
    parser.add_argument("--flag", default=FLAG)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--body", action="append", default=[], help="a file of an OTLP export to send"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_flood(args, [Path(p).read_bytes() for p in args.body]))


@dataclass
class Flood:
    """A flood in a child process: start it, read its answers so far, stop it."""

    kind: str
    port: int
    senders: int = 6
    flag: str = FLAG
    bodies: list[Path] = field(default_factory=list)
    answers: dict[int, int] = field(default_factory=dict)
    """The answers so far, by status (0: no answer, the connection failed)."""
    _process: asyncio.subprocess.Process | None = None
    _reading: asyncio.Task[None] | None = None

    @property
    def answered(self) -> int:
        """Requests answered so far; :class:`RuntimeError` once the flood's process ended."""
        if self._process is not None and self._process.returncode is not None:
            raise RuntimeError(f"the {self.kind} flood ended: {self._process.returncode}")
        return sum(n for status, n in self.answers.items() if status)

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.clients.flooding",
            self.kind,
            str(self.port),
            f"--senders={self.senders}",
            f"--flag={self.flag}",
            *(f"--body={body}" for body in self.bodies),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        self._reading = asyncio.create_task(self._read(self._process))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            self.answers = {int(k): v for k, v in orjson.loads(line).items()}

    async def stop(self) -> dict[int, int]:
        """Stop the flood; its answers by status."""
        assert self._process is not None
        assert self._reading is not None
        with contextlib.suppress(ProcessLookupError):
            self._process.terminate()
        await self._reading
        await self._process.wait()
        return self.answers

    async def __aenter__(self) -> Flood:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def floods(port: int, exports: list[Path], *, senders: int = 6) -> dict[str, Flood]:
    """The four floods by name: one export (the first of ``exports``) re-sent by every
    sender, the distinct ``exports``, event batches and OFREP evaluations."""
    return {
        "otlp_same": Flood("otlp", port, senders, bodies=exports[:1]),
        "otlp_distinct": Flood("otlp", port, senders, bodies=exports),
        "events": Flood("events", port, senders),
        "ofrep": Flood("ofrep", port, senders),
    }


async def store_rollouts(redis_url: str, prefix: str, flags: list[str]) -> None:
    """Running rollouts of ``flags`` at 50%, in force since ten minutes ago."""
    since = datetime.now(UTC) - timedelta(minutes=10)
    times = {"stage_started_at": since, "started_at": since, "updated_at": since}
    rollouts = [flag_rollout(flag, 50).model_copy(update=times) for flag in flags]
    async with connect(RedisSettings(url=redis_url)) as client:
        await store(client, prefix, rollouts)


if __name__ == "__main__":
    main()
