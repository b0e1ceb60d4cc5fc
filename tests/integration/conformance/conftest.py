"""The daemon the conformance suites run against, and the suites' listed differences.

One daemon for the package: the real ``rollout-controller run`` on the
session's broker and Redis, its key namespace and topics its own, serving
OFREP without app keys over OpenFeature's Gherkin flag set
(:mod:`.flagset`), with an operator token (:data:`OPERATOR_TOKEN`) as production runs, so
the operator's routes of our own OpenAPI document are guarded as it says. The Gherkin
scenarios :mod:`.differences` lists are marked
``xfail(strict=True)`` (a scenario listed that passes fails the run) or left
out of the collection, as that module says.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from _pytest.nodeid import coerce_node_id
from aiokafka.admin import AIOKafkaAdminClient

from controller.adapters.redis.client import RedisClient, connect
from controller.adapters.redis.segments import SegmentStore
from controller.core.rules.text import parse as parse_rule
from controller.ports import StoredSegment
from controller.settings import RedisSettings
from tests.integration.conformance.differences import Difference, marks_of
from tests.integration.conformance.flagset import suite_rollouts
from tests.integration.http.test_http import wait_status
from tests.support.backing.services import free_port
from tests.support.clients.ofrep import store
from tests.support.controller_process import ControllerProcess, controller_env
from tests.support.waiting import eventually

OPERATOR_TOKEN = "conformance-operator-token"


@pytest.fixture(scope="package")
async def conformance_daemon(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The daemon's base URL, once its OFREP answers every flag of the suite's set."""
    prefix = f"rctest:{uuid.uuid4().hex[:8]}"
    events = f"t-conformance-{uuid.uuid4().hex[:8]}"
    rollouts = suite_rollouts()
    async with connect(RedisSettings(url=redis_url)) as client:
        await store(client, prefix, rollouts)
        await _segment(client, prefix)
    port = free_port()
    env = controller_env(
        bootstrap=kafka_bootstrap, redis_url=redis_url, prefix=prefix, events=events
    )
    env |= {
        "RC_HTTP__PORT": str(port),
        "RC_HTTP__REQUIRE_APP_KEYS": "false",  # keys: tests/scenarios/operators/test_app_keys.py
        "RC_KAFKA__EVENTS_PARTITIONS": "1",
        "RC_HTTP__WEBHOOK_TOKEN": OPERATOR_TOKEN,
        # schemathesis reads /rollouts* hundreds of times a second: at the default rate
        # nearly every answer would be a 429 (which is checked all the same).
        "RC_HTTP__READS_PER_SECOND": "100000",
    }
    log = tmp_path_factory.mktemp("conformance") / "controller.log"
    base = f"http://127.0.0.1:{port}"
    try:
        with ControllerProcess(env=env, log_path=log):
            await wait_status(f"{base}/readyz", 200)
            await _serving(base, {r.flag for r in rollouts}, log)
            yield base
    finally:
        await _forget(redis_url, prefix)
        await _drop_topics(kafka_bootstrap, events)


SEGMENT = "beta-testers"
"""A rule segment the daemon serves, so ``GET /v1/segments/{name}`` has one to answer."""


async def _segment(client: RedisClient, prefix: str) -> None:
    rule = parse_rule('country in ["NL", "BE"]').model_dump(mode="json", exclude_none=True)
    record = {"name": SEGMENT, "version": 1, "rule": rule}
    segments = SegmentStore(client, settings=RedisSettings(key_prefix=prefix))
    assert await segments.put(SEGMENT, 0, StoredSegment(record))


async def _serving(base: str, flags: set[str], log: Path) -> None:
    """Wait until a bulk evaluation answers every one of ``flags``."""
    async with httpx.AsyncClient(timeout=10) as client:

        async def listed() -> bool:
            answer = await client.post(
                f"{base}/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u"}}
            )
            got = {flag["key"] for flag in answer.json()["flags"]}
            assert got == flags, (sorted(flags - got), _tail(log))
            return True

        await eventually(listed, timeout=60, what="the suite's flags served over OFREP")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


async def _forget(redis_url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _drop_topics(bootstrap: str, events: str) -> None:
    """The topics the daemon made for ``events`` (best effort: a leftover topic harms none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    with contextlib.suppress(Exception):
        await admin.start()
        try:
            made = [t for t in await admin.list_topics() if t.startswith(events)]
            if made:
                await admin.delete_topics(made)
        finally:
            await admin.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each listed Gherkin scenario as its difference says; leave out those not run. Name
    each schemathesis test by its operation (:func:`_named_by_operation`)."""
    _named_by_operation(items)
    kept, left_out = [], []
    for item in items:
        difference = marks_of(item)
        if difference is None:
            kept.append(item)
        elif difference.run:
            item.add_marker(_xfail(difference))
            kept.append(item)
        else:
            left_out.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def _xfail(difference: Difference) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=difference.why)


EXAMPLE_TAGS = ("booleans", "strings", "numbers", "objects", "transaction", "hooks")
"""The tags the vendored suites put on their examples, which pytest-bdd makes marks of."""


def pytest_configure(config: pytest.Config) -> None:
    for tag in EXAMPLE_TAGS:
        config.addinivalue_line("markers", f"{tag}: a tag of OpenFeature's Gherkin examples")


def pytest_bdd_apply_tag(tag: str, function: object) -> bool:
    """The suites' tags (``@booleans``, ``@spec-1.4.7``) are their labels, not our markers."""
    return True


def _named_by_operation(items: list[pytest.Item]) -> None:
    """Each of schemathesis's tests named by its operation: its items share one node id (the
    function's, ``[POST /path]`` in their names alone), and pytest-xdist runs one item per
    node id, so under ``-n`` all but one operation of each document went untested, silently."""
    for item in items:
        name, brackets, operation = item.name.partition("[")
        if brackets and not item.nodeid.endswith("]") and item.nodeid.endswith("::" + name):
            # pytest offers no public way to rename a node: its id is kept in _id.
            item._id = coerce_node_id(f"{item.nodeid}[{operation}")
