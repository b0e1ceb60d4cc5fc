"""The OTLP/HTTP join journal on a real Redis, one node or a cluster: what a restart reads."""

from __future__ import annotations

from controller.adapters.redis import JoinJournal, RedisClient
from controller.adapters.redis.join_journal import PAGE
from controller.settings import RedisSettings


async def test_entries_read_back_in_order_and_the_key_expires_after_two_windows(
    store_client: RedisClient, redis_namespace: str
) -> None:
    settings = RedisSettings(key_prefix=redis_namespace)
    journal = JoinJournal(store_client, settings=settings, window_ms=30_000)
    assert await journal.recent() == []
    # more than a page of them, read a page at a time
    entries = [b"first", b"\x00\xffsecond", b"third" * 1000]
    entries += [f"export {i}".encode() for i in range(2 * PAGE)]
    for entry in entries:
        await journal.append(entry)
    assert await journal.recent() == entries
    ttl = await store_client.pttl(f"{redis_namespace}:otlp:journal")
    assert 30_000 < ttl <= 60_000
    # another instance, or the next process, reads the same journal
    again = JoinJournal(store_client, settings=settings, window_ms=30_000)
    assert await again.recent() == entries
