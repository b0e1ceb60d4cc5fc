"""The Redis connection: one node or a Redis Cluster, and the errors of both, translated.

``redis://`` (``rediss://`` for TLS) is one node; ``redis+cluster://host:port[,host:port]``
(``rediss+cluster://``) or ``redis.cluster: true`` is a Redis Cluster, reached
through any of the nodes listed; ``redis+sentinel://host:port[,host:port]/<service>``
is the master that Redis Sentinel names for ``<service>``. Every key the
stores write carries a hash tag (a partition's keys share one, a flag's keys
share one), so each script and each multi-key command touches one slot,
which is what a cluster requires.

A plain client pointed at a cluster gets ``MOVED`` replies; redis-py raises
those with nothing but ``<slot> <host:port>`` as the message, so they are
translated here into a sentence that says what to change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
import redis
import redis.asyncio as aioredis
import structlog
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import Sentinel

from controller.core.common import (
    ControllerError,
    FencedError,
    LostWrites,
    StoreError,
    StoreUnavailable,
)
from controller.settings import RedisSettings

log = structlog.get_logger("controller.adapters.redis")
_LIBRARY = Path(redis.__file__).resolve().parent

RedisClient = aioredis.Redis | RedisCluster
"""What the stores talk to: one node or a cluster; both run the same commands and scripts."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
_UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    OSError,
)
_CLIENT_OPTIONS: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}


def is_cluster(settings: RedisSettings) -> bool:
    """Whether ``settings`` ask for a Redis Cluster (the URL scheme or ``cluster: true``)."""
    return settings.cluster or urlsplit(settings.url).scheme in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` nodes of a ``redis+cluster://a:1,b:2`` URL, or the sentinels of a
    ``redis+sentinel://`` one (port 6379 when left out)."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    nodes = []
    for item in (part.strip() for part in netloc.split(",")):
        host, colon, port = item.rpartition(":")
        if not colon:
            host, port = item, "6379"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise StoreError(f"redis url: {item!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def _cluster(settings: RedisSettings, password: str | None) -> RedisCluster:
    parts = urlsplit(settings.url)
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, url_password = userinfo.partition(":")
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in cluster_nodes(settings.url)],
        username=unquote(user) or None,
        password=password or unquote(url_password) or None,
        ssl=parts.scheme.startswith("rediss"),
        **_CLIENT_OPTIONS,
    )


def _sentinel(settings: RedisSettings, password: str | None) -> tuple[aioredis.Redis, Sentinel]:
    """The master of ``redis+sentinel://s1:26379[,s2:26379]/<service>[/<db>]``, found (and
    found again after a failover) through the sentinels; and the sentinels, to close."""
    parts = urlsplit(settings.url)
    path = [p for p in parts.path.split("/") if p]
    if not path or (len(path) > 1 and not path[1].isdigit()):
        raise StoreError("redis url: use redis+sentinel://host:port[,host:port]/<service>[/<db>]")
    user, _, url_password = parts.netloc.rpartition("@")[0].partition(":")
    nodes = cluster_nodes(settings.url)
    sentinel = Sentinel(nodes, sentinel_kwargs=dict(_CLIENT_OPTIONS))  # type: ignore[no-untyped-call]
    master = sentinel.master_for(
        unquote(path[0]),
        db=int(path[1]) if len(path) > 1 else 0,
        username=unquote(user) or None,
        password=password or unquote(url_password) or None,
        ssl=parts.scheme.startswith("rediss"),
        **_CLIENT_OPTIONS,
    )
    return master, sentinel


_PYTHON_PACKING = AbstractConnection.pack_command


def _packed_by_hiredis(connection: AbstractConnection, *args: Any) -> list[bytes]:
    """A command in the Redis protocol, packed by hiredis's C packer: what redis-py's own
    asyncio packer does in Python (the synchronous client already packs with hiredis),
    one tenth of its time for a script call naming hundreds of keys. A name of several
    words (``SCRIPT LOAD``) is split as redis-py splits it; an argument hiredis cannot
    pack (a bool, None, a bytearray) goes to redis-py's packer, which packs or refuses it
    as before."""
    first = args[0]
    if isinstance(first, str):
        args = (*first.encode().split(), *args[1:])
    elif isinstance(first, bytes) and b" " in first:
        args = (*first.split(), *args[1:])
    try:
        return [hiredis.pack_command(args)]
    except TypeError:
        return _PYTHON_PACKING(connection, *args)


def pack_with_hiredis() -> None:
    """Have every asyncio connection (one node, a cluster's, a sentinel's) pack commands
    with :func:`_packed_by_hiredis`; done once, before the first client is made."""
    if AbstractConnection.pack_command is _PYTHON_PACKING:
        AbstractConnection.pack_command = _packed_by_hiredis  # type: ignore[method-assign,assignment]


def client_for(settings: RedisSettings) -> RedisClient:
    """A client for ``settings``; nothing is connected until the first command."""
    pack_with_hiredis()
    password = settings.password.get_secret_value() if settings.password else None
    if is_cluster(settings):
        return _cluster(settings, password)
    return aioredis.Redis.from_url(
        settings.url, password=password, health_check_interval=10, **_CLIENT_OPTIONS
    )


@asynccontextmanager
async def connect(settings: RedisSettings) -> AsyncIterator[RedisClient]:
    """A client for ``settings`` (one node, a cluster, or a master behind sentinels), closed
    on exit."""
    sentinel = None
    pack_with_hiredis()
    if urlsplit(settings.url).scheme in SENTINEL_SCHEMES:
        password = settings.password.get_secret_value() if settings.password else None
        client: RedisClient
        client, sentinel = _sentinel(settings, password)
    else:
        client = client_for(settings)
    try:
        yield client
    finally:
        await client.aclose()
        for node in sentinel.sentinels if sentinel is not None else []:
            await node.aclose()


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Translate redis-py errors (of one node or of a cluster) into the controller's tree."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"redis unreachable: {_describe(exc)}") from exc
    except (redis_errors.MovedError, redis_errors.AskError) as exc:
        raise StoreError(
            f"redis answered MOVED/ASK ({exc}): this is a Redis Cluster; point at it with "
            "redis+cluster://host:port[,host:port] or set redis.cluster: true"
        ) from exc
    except redis_errors.RedisClusterException as exc:
        # Not a RedisError: raised before a command is sent (no node reachable,
        # keys in several slots, slots not covered).
        if "cannot be connected" in str(exc) or "reachable" in str(exc):
            raise StoreUnavailable(f"redis cluster unreachable: {exc}") from exc
        raise StoreError(f"redis cluster error: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise StoreError(f"redis error: {_describe(exc)}") from exc
    except ControllerError:
        raise
    except Exception as exc:
        if not _from_client_library(exc):
            raise  # a defect of ours: let it be seen, not retried
        # redis-py leaks other errors when a connection breaks mid-command (a
        # cluster connection closed under a failover raised AttributeError on
        # its writer): the command may still succeed on a fresh connection.
        log.warning("redis_client_error", error=f"{type(exc).__name__}: {exc}"[:500])
        raise StoreUnavailable(
            f"redis unreachable: the client failed: {type(exc).__name__}: {exc}"[:500]
        ) from exc


def _from_client_library(exc: BaseException) -> bool:
    """Whether ``exc`` came out of redis-py: a frame of its traceback is in the package."""
    frame = exc.__traceback__
    while frame is not None:
        if Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(_LIBRARY):
            return True
        frame = frame.tb_next
    return False


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def flush_conflict(
    partition: int, code: int, stored: str, epoch: int, expected: int | None
) -> FencedError | LostWrites:
    """Why a flush was refused: another owner, or writes Redis acknowledged and lost.

    Epochs only grow and a flush writes the offset and the aggregates together,
    so a stored epoch below this owner's (or none at all) means the claim was
    lost, and a stored offset behind this owner's, at its epoch, means flushes
    were lost; a newer epoch or an offset ahead is another owner's work.
    """
    ours = f"this owner holds epoch {epoch}, expected offset {expected}"
    if code == -1:
        if not stored.isdigit() or int(stored) < epoch:
            return LostWrites(
                f"partition {partition}: redis lost acknowledged writes: the stored epoch is"
                f" {stored} ({ours})",
                stored_offset=None,
            )
        return FencedError(f"partition {partition}: flush refused, epoch is {stored} ({ours})")
    offset = int(stored) if stored.lstrip("-").isdigit() else None
    if offset is not None and expected is not None and offset < expected:
        return LostWrites(
            f"partition {partition}: redis lost acknowledged writes: the stored offset is"
            f" {offset} ({ours})",
            stored_offset=None if offset < 0 else offset,
        )
    return FencedError(f"partition {partition}: flush refused, stored offset is {stored} ({ours})")


def as_text(value: Any) -> str:
    """A Redis reply's bytes as text (anything else as its str)."""
    return value.decode() if isinstance(value, bytes) else str(value)
