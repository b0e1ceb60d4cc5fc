"""The book of app keys the HTTP routes read: loaded once, reloaded in the background when old,
kept when a reload fails."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from controller.adapters.redis.app_keys import AppKeyStore, Book
from controller.core.common.errors import StoreUnavailable
from controller.core.trust.app_keys import AppKey, Scope, digest
from controller.daemon.registries.app_keys import KeyBook


def key(name: str) -> AppKey:
    return AppKey(
        id=digest(name)[:16],
        name=name,
        scopes=frozenset({Scope.EVENTS}),
        secret_sha256=digest(name),
        created_ms=1,
        created_by="ana",
    )


class Store:
    """Answers the keys it holds now; fails while ``down``."""

    def __init__(self) -> None:
        self.keys = [key("a")]
        self.down = False
        self.loads = 0

    async def load(self) -> Book:
        self.loads += 1
        if self.down:
            raise StoreUnavailable("redis unreachable")
        return Book(self.loads, {k.id: k for k in self.keys})


async def test_the_book_is_reloaded_in_the_background_and_kept_when_redis_fails() -> None:
    store, now = Store(), [0.0]
    book = KeyBook(cast(AppKeyStore, store), max_age=1.0, clock=lambda: now[0])
    assert set(await book.get()) == {digest("a")}
    store.keys.append(key("b"))
    assert set(await book.get()) == {digest("a")}  # not old yet: no reload
    now[0] = 1.0
    assert set(await book.get()) == {digest("a")}  # old: served, and reloaded behind
    await asyncio.sleep(0)
    assert set(await book.get()) == {digest("a"), digest("b")}
    store.down, now[0] = True, 2.0
    await book.get()
    await asyncio.sleep(0)
    assert set(await book.get()) == {digest("a"), digest("b")}  # the keys held
    assert store.loads == 3


async def test_the_first_load_failing_is_a_store_error() -> None:
    store = Store()
    store.down = True
    with pytest.raises(StoreUnavailable):
        await KeyBook(cast(AppKeyStore, store)).get()


async def test_a_fresh_book_holds_a_key_stored_since_and_a_flood_shares_spaced_reads() -> None:
    # Given a book read at start, and a key stored since
    store = Store()
    book = KeyBook(cast(AppKeyStore, store), max_age=60.0, fresh_interval=0.05)
    await book.get()
    store.keys.append(key("new"))
    # When a request asks for a book read since it came
    # Then the new key is there, though the held book was not old
    assert digest("new") in await book.fresh()
    # And 200 requests at once with unknown keys share reads, one per interval
    loads = store.loads
    books = await asyncio.gather(*(book.fresh() for _ in range(200)))
    assert all(digest("new") in found for found in books)
    assert store.loads - loads <= 2
    # And a store error answers the book held
    store.down = True
    assert digest("new") in await book.fresh()
