"""A relay between an app's OTLP/HTTP exporter and the controller that sends every export twice.

As a proxy that retries each request whose answer it lost would: the same export, twice,
to the controller's ``/v1/traces`` or ``/v1/logs``. While the controller is down (killed,
starting again) the relay holds the export and sends it again until the controller
answers ``200``, so the app's exporter sees one slow answer, never a lost export; the
app's answer is the controller's last. What the app exported is kept, by signal, as the
protobuf bodies (decompressed), for the reference count.
"""

from __future__ import annotations

import asyncio
import gzip
import time

import httpx
from aiohttp import web

from tests.support.backing.services import free_port

SIGNALS = ("traces", "logs")
RETRY_SECONDS = 0.2
GIVE_UP_SECONDS = 90.0


class HttpRelay:
    """Listens on a port of its own; forwards each export twice to ``target``."""

    def __init__(self, target: str) -> None:
        self._target = target.rstrip("/")
        self.port = free_port()
        self.exports: dict[str, list[bytes]] = {signal: [] for signal in SIGNALS}
        """What the app exported (each once), by signal, in the order it came."""
        self.errors: list[str] = []
        """What the controller answered that no retry mends (a test fails on any)."""
        self.answered = 0
        """Exports answered 200 by the controller (each of the two copies)."""
        self._client = httpx.AsyncClient(timeout=30)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HttpRelay:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/{signal}", self._relay)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._client.aclose()

    async def _relay(self, request: web.Request) -> web.Response:
        signal = request.match_info["signal"]
        if signal not in SIGNALS:
            return web.Response(status=404)
        body = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "content-encoding", "authorization")
        }
        gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip"
        self.exports[signal].append(gzip.decompress(body) if gzipped else body)
        answer = None
        try:
            for _ in range(2):
                answer = await self._sent(f"/v1/{signal}", body, headers)
        except AssertionError as exc:
            self.errors.append(str(exc))
            return web.Response(status=500, text=str(exc))
        assert answer is not None
        content_type = answer.headers.get("Content-Type", "application/x-protobuf").split(";")[0]
        return web.Response(status=200, body=answer.content, content_type=content_type)

    async def _sent(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """Send until the controller answers 200 (or give up, a 503 to the app)."""
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while True:
            try:
                answer = await self._client.post(self._target + path, content=body, headers=headers)
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code == 200:
                self.answered += 1
                return answer
            if answer is not None and answer.status_code not in (429, 503):
                raise AssertionError(f"{path}: {answer.status_code} {answer.content[:300]!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: the controller did not take the export")
            await asyncio.sleep(RETRY_SECONDS)
