"""``tests/node/ofrep_follow.mjs`` in its own process: what a Node app on OpenFeature's
published OFREP providers is served, and every request its provider makes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.support.waiting import eventually

SCRIPT = Path(__file__).resolve().parents[2] / "node" / "ofrep_follow.mjs"


@dataclass
class Follower:
    """The lines the script printed, in order, as they come."""

    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def answers(self) -> list[dict[str, Any]]:
        """Each HTTP answer the provider got: method, path, status, ifNoneMatch, etag."""
        return [line["http"] for line in self.lines if "http" in line]

    @property
    def served(self) -> list[dict[str, Any]]:
        """Each change of what the app is served: value, variant, reason, and ``at`` (ms)."""
        return [{**line["served"], "at": line["at"]} for line in self.lines if "served" in line]

    async def serving(self, reason: str, *, timeout: float = 30) -> dict[str, Any]:
        """The first change to ``reason``, once the app is served it."""

        def found() -> dict[str, Any]:
            matching = [s for s in self.served if s["reason"] == reason]
            assert matching, self.served
            return matching[0]

        return await eventually(found, timeout=timeout, what=f"the app served {reason}")


@contextlib.asynccontextmanager
async def following(
    node: str, js_client: Path, mode: str, base: str, flag: str, unit: str, interval_ms: int
) -> AsyncIterator[Follower]:
    """The script following ``flag`` for ``unit`` in ``mode`` (``server`` or ``poll``), started."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        mode,
        base,
        flag,
        unit,
        str(interval_ms),
        env={"OFREP_JS_HOME": str(js_client), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    follower = Follower()

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            follower.lines.append(orjson.loads(line))

    reading = asyncio.create_task(read())
    try:
        await eventually(lambda: _started(follower, process), timeout=30, what="the app ready")
        yield follower
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await reading


async def _started(follower: Follower, process: asyncio.subprocess.Process) -> bool:
    if process.returncode is not None:
        assert process.stderr is not None
        raise RuntimeError((await process.stderr.read()).decode()[-3000:])
    assert {"ready": True} in follower.lines, follower.lines
    return True
