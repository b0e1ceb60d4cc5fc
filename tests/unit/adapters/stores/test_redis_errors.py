"""Errors out of redis-py become the controller's store errors, unexpected ones included."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.connection import Connection

from controller.adapters.redis.client import translated
from controller.core.common.errors import StoreUnavailable
from controller.kit.backoff import Backoff
from controller.process.retrying import retrying


class _ClosedWriter:
    """A stream writer whose transport went away under a failover, as redis-py 8.1 met it."""

    def writelines(self, _data: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'writelines'")

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


async def _leaky_send() -> None:
    """A command sent on a connection whose writer broke: redis-py lets AttributeError out."""
    connection = Connection(socket_timeout=None)
    connection._reader = object()  # type: ignore[assignment]
    connection._writer = _ClosedWriter()  # type: ignore[assignment]
    await connection.send_packed_command(b"*1\r\n$4\r\nPING\r\n", check_health=False)


async def test_an_unexpected_error_inside_the_client_is_a_retriable_store_error() -> None:
    with pytest.raises(AttributeError):
        await _leaky_send()  # the leak itself, untranslated
    with pytest.raises(StoreUnavailable) as caught:
        async with translated():
            await _leaky_send()
    assert caught.value.retriable
    assert "AttributeError" in str(caught.value)


async def test_a_defect_outside_the_client_is_not_hidden() -> None:
    with pytest.raises(AttributeError):
        async with translated():
            None.missing  # type: ignore[attr-defined]  # noqa: B018


async def test_the_call_is_retried_until_it_succeeds() -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        async with translated():
            if calls < 3:
                await _leaky_send()
        return "ok"

    backoff = Backoff(initial=0.001, maximum=0.001, stopping=asyncio.Event())
    assert await retrying(call, what="flush", backoff=backoff) == "ok"
    assert calls == 3
