"""The book of app keys in Redis, one node and a Cluster: a change is saved with its decision
once, a stale revision is a conflict, and a command decided before answers its first decision."""

from __future__ import annotations

import pytest

from controller.adapters.redis.app_keys import AppKeyStore
from controller.adapters.redis.client import RedisClient
from controller.core.trust.app_keys import AppKey, Scope, digest
from controller.settings import RedisSettings

pytestmark = [pytest.mark.integration]

KEEP_MS = 600_000
AT = {"now_ms": 1_000_000, "keep_ms": KEEP_MS}


def key(name: str, *, revoked: bool = False) -> AppKey:
    return AppKey(
        id=digest(name)[:16],
        name=name,
        scopes=frozenset({Scope.EVENTS}),
        secret_sha256=digest("secret-" + name),
        created_ms=1,
        created_by="ana",
        revoked_ms=2 if revoked else None,
        revoked_by="ana" if revoked else None,
    )


@pytest.fixture
def client(store_client: RedisClient) -> RedisClient:
    """The single Redis node, then the Redis Cluster (``store_client``)."""
    return store_client


async def test_changes_are_saved_once_with_their_decision(
    client: RedisClient, redis_namespace: str
) -> None:
    store = AppKeyStore(client, settings=RedisSettings(key_prefix=redis_namespace))
    empty = await store.load()
    assert (empty.rev, empty.keys) == (0, {})

    made = await store.save(command_id="c1", rev=0, key=key("api"), decision=b"made", **AT)
    stale = await store.save(command_id="c2", rev=0, key=key("web"), decision=b"web", **AT)
    again = await store.save(command_id="c1", rev=1, key=key("api"), decision=b"other", **AT)
    refused = await store.save(command_id="c3", rev=1, key=None, decision=b"no", **AT)
    revoked = await store.save(
        command_id="c4", rev=2, key=key("api", revoked=True), decision=b"gone", **AT
    )
    book = await store.load()

    assert (made.outcome, made.decision) == ("saved", b"made")
    assert stale.outcome == "conflict"
    assert (again.outcome, again.decision) == ("done", b"made")
    assert refused.outcome == "saved"
    assert revoked.outcome == "saved"
    assert book.rev == 3
    assert list(book.keys) == [key("api").id]
    assert not book.keys[key("api").id].live


async def test_decided_ids_are_remembered_within_the_window_and_then_forgotten(
    client: RedisClient, redis_namespace: str
) -> None:
    store = AppKeyStore(client, settings=RedisSettings(key_prefix=redis_namespace))
    done = f"{{{redis_namespace}:app-keys}}:done"
    start = 10_000_000
    rev = 0
    for n in range(200):  # one command a second over 200 s: a window of 100 s keeps 100
        saved = await store.save(
            command_id=f"c{n}",
            rev=rev,
            key=None,
            decision=f"d{n}".encode(),
            now_ms=start + n * 1000,
            keep_ms=100_000,
        )
        assert saved.outcome == "saved", n
        rev += 1
        assert await client.hlen(done) <= 101
    assert await client.hlen(done) == 101
    # A replay inside the window answers its first decision and changes nothing.
    replay = await store.save(
        command_id="c150",
        rev=rev,
        key=None,
        decision=b"again",
        now_ms=start + 200_000,
        keep_ms=100_000,
    )
    assert (replay.outcome, replay.decision) == ("done", b"d150")
    assert (await store.load()).rev == rev
    # One forgotten: older than the window, which the daemon refuses as stale before this.
    assert not await client.hexists(done, "c0")
