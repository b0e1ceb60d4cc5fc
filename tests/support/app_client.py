"""An aiohttp application served on a free loopback port, with an httpx client to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from aiohttp import web


@asynccontextmanager
async def app_client(app: web.Application, **handler: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` on 127.0.0.1 (a port the system picks) and yield a client to it;
    ``handler``: aiohttp's per-connection options (the daemon's are in ``HttpServer``)."""
    runner = web.AppRunner(app, **handler)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        await runner.cleanup()
