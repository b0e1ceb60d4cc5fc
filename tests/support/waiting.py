"""Waiting in tests for a condition to hold, never for a length of time.

:func:`eventually` asks ``check`` again and again until it holds, and
:func:`eventually_sync` is its twin for plain (not asyncio) tests. A check
*holds* when it returns a truthy value without raising :class:`AssertionError`;
the value is returned, so a wait reads what it waited for::

    row = await eventually(lambda: store.row(flag), timeout=30, what="the row stored")

A check may assert instead of returning a boolean, so the failure explains
itself; the last :class:`AssertionError` (or the last falsy value) is reported
with ``what`` when ``timeout`` runs out. ``timeout`` is a bound on a failing
test, not a claim about how fast anything is: a passing test ends as soon as
the condition holds. Checks are asked at first every 10 ms, then less often,
up to every ``most`` seconds, so a quick condition is seen at once and a slow
one is not asked in a busy loop.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

FIRST = 0.01
"""The first pause between two asks, in seconds; each next one is half as long again."""


@overload
async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float, what: str, most: float = ...
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T], *, timeout: float, what: str, most: float = ...
) -> T: ...


async def eventually(
    check: Callable[[], object],
    *,
    timeout: float,
    what: str,
    most: float = 0.5,
) -> object:
    """``check()``'s first value that holds; fails the test naming ``what`` after ``timeout`` s.

    ``check`` is a plain or a coroutine function. An exception other than
    :class:`AssertionError` propagates at once: it is a broken test, not a
    condition that does not hold yet.
    """
    give_up = time.monotonic() + timeout
    pause, last = FIRST, "it never held"
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last = f"last value: {value!r}"
        except AssertionError as exc:
            last = f"last failure: {exc}"
        if time.monotonic() >= give_up:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; {last}")
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, most)


def eventually_sync(check: Callable[[], T], *, timeout: float, what: str, most: float = 0.5) -> T:
    """:func:`eventually` for a test or fixture that runs no event loop."""
    give_up = time.monotonic() + timeout
    pause, last = FIRST, "it never held"
    while True:
        try:
            value = check()
            if value:
                return value
            last = f"last value: {value!r}"
        except AssertionError as exc:
            last = f"last failure: {exc}"
        if time.monotonic() >= give_up:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; {last}")
        time.sleep(pause)
        pause = min(pause * 1.5, most)
