"""Drive the apps of ``tests/otel``: start one as a child process, send it users' requests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import httpx
import orjson

READY_SECONDS = 60.0
STOP_SECONDS = 30.0
KEEPALIVE_SECONDS = 1.0


class AppProcess:
    """An app listening on a port it printed; its stdin closed, it exports what it holds and
    exits."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, name: str) -> None:
        self._process, self.name = process, name
        self.last_words = ""
        self.base = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(
        cls,
        command: Sequence[str],
        *,
        name: str,
        env: dict[str, str] | None = None,
        ready_seconds: float = READY_SECONDS,
    ) -> AppProcess:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), ready_seconds)
        except TimeoutError:
            process.kill()
            raise
        if not line:
            code = await process.wait()
            raise AssertionError(f"{name} ended before listening (exit code {code})")
        return cls(process, orjson.loads(line)["port"], name)

    async def stop(self) -> int:
        """Close stdin (the app exports what it holds, then exits); its exit code. What it
        printed after its port is kept in :attr:`last_words`."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), STOP_SECONDS)
        except TimeoutError:
            self.kill()
        code = await self._process.wait()
        assert self._process.stdout is not None
        self.last_words = (await self._process.stdout.read()).decode()
        return code

    def kill(self) -> None:
        if self._process.returncode is None:
            self._process.kill()


async def start_all(
    launches: Mapping[str, Coroutine[Any, Any, AppProcess]],
) -> dict[str, AppProcess]:
    """Every app started side by side (a JVM's start is slow), by the names of ``launches``;
    if one fails to listen, the others are stopped too and its error raised."""
    started = await asyncio.gather(*launches.values(), return_exceptions=True)
    apps = [app for app in started if isinstance(app, AppProcess)]
    if len(apps) < len(started):
        for app in apps:
            app.kill()
        raise next(e for e in started if isinstance(e, BaseException))
    return dict(zip(launches, apps, strict=True))


def served_flow(body: bytes) -> bool | None:
    """The flag's value an answer says the app served; None when it does not say, as the
    HTML page Flask answers an unhandled exception with."""
    try:
        said = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    flow = said.get("new_flow") if isinstance(said, dict) else None
    return flow if isinstance(flow, bool) else None


class Load:
    """Users' requests to one app, from ``concurrency`` clients, until :meth:`stop`."""

    def __init__(self, app: AppProcess, *, users: int, concurrency: int = 4, seed: int = 1) -> None:
        self.app, self._users, self._rng = app, users, random.Random(seed)
        self.statuses: Counter[int] = Counter()
        self.served: Counter[tuple[bool, int]] = Counter()
        """Answers that say the flag's value the app served, by (that value, HTTP status)."""
        self.failed: Counter[str] = Counter()
        """Requests that got no answer, by what httpx raised (its type and first words)."""
        self.resent: Counter[str] = Counter()
        """Requests sent again after their connection broke before an answer, by what
        httpx raised: the second answer is counted as any other."""
        self._stopping = asyncio.Event()
        # Idle connections closed well before a server's own keep-alive time-out (Node's is
        # 5 s, httpx's expiry the same): else a request sent on one as the server closes it
        # gets no answer, the client's race, not the app's failure.
        self._client = httpx.AsyncClient(
            base_url=app.base, timeout=30, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS)
        )
        self._tasks = [
            asyncio.create_task(self._send(), name=f"load-{app.name}-{i}")
            for i in range(concurrency)
        ]

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    async def _send(self) -> None:
        while not self._stopping.is_set():
            user = f"user-{self._rng.randrange(self._users)}"
            try:
                answer = await self._get(user)
            except httpx.HTTPError as exc:
                self.failed[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                await asyncio.sleep(0.1)
                continue
            self.statuses[answer.status_code] += 1
            flow = served_flow(answer.content)
            if flow is not None:
                self.served[flow, answer.status_code] += 1

    async def _get(self, user: str) -> httpx.Response:
        """One user's request; sent once more where the connection broke before any answer.

        A GET is idempotent, and a kept-alive connection may be reset as it is reused (a
        busy machine, a server closing it): Go's and Java's HTTP clients and urllib3 then
        send the request again on a new connection, and httpx does not. A second failure
        is the app's and counted in :attr:`failed`; each first one in :attr:`resent`.
        """
        params = {"user": user}
        try:
            return await self._client.get("/checkout", params=params)
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            self.resent[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
        return await self._client.get("/checkout", params=params)

    async def stop(self) -> None:
        """Send no more; the requests under way are answered and counted, so that
        :attr:`requests` is every request the app served."""
        self._stopping.set()
        await asyncio.wait(self._tasks, timeout=STOP_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()


def unserved(loads: Mapping[str, Load]) -> dict[str, dict[str, object]]:
    """The loads that sent no request or got no answer to one, each with what went wrong;
    empty when every app answered every request."""
    return {
        name: {"requests": load.requests, "failed": dict(load.failed)}
        for name, load in loads.items()
        if not load.requests or load.failures
    }
