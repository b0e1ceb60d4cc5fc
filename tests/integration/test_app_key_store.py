"""The book of app keys in Redis, one node and a Cluster: a change is saved with its decision
once, a stale revision is a conflict, and a command decided before answers its first decision."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controller.adapters.redis.app_keys import AppKeyStore
from controller.adapters.redis.client import RedisClient, connect
from controller.core.app_keys import AppKey, Scope, digest
from controller.settings import RedisSettings
from tests.integration.test_store import drop_keys

pytestmark = [pytest.mark.integration]


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


@pytest.fixture(params=["node", "cluster"])
async def client(
    request: pytest.FixtureRequest, redis_namespace: str
) -> AsyncIterator[RedisClient]:
    url_fixture = "redis_url" if request.param == "node" else "redis_cluster_url"
    url = request.getfixturevalue(url_fixture)
    async with connect(RedisSettings(url=url)) as found:
        yield found
        await drop_keys(found, redis_namespace)


async def test_changes_are_saved_once_with_their_decision(
    client: RedisClient, redis_namespace: str
) -> None:
    store = AppKeyStore(client, settings=RedisSettings(key_prefix=redis_namespace))
    empty = await store.load()
    assert (empty.rev, empty.keys) == (0, {})

    made = await store.save(command_id="c1", rev=0, key=key("api"), decision=b"made")
    stale = await store.save(command_id="c2", rev=0, key=key("web"), decision=b"web")
    again = await store.save(command_id="c1", rev=1, key=key("api"), decision=b"other")
    refused = await store.save(command_id="c3", rev=1, key=None, decision=b"no")
    revoked = await store.save(
        command_id="c4", rev=2, key=key("api", revoked=True), decision=b"gone"
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
