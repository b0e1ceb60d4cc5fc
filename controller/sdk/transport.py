"""The app SDK's own transport: the only SDK module that imports aiokafka or httpx.

The SDK does not use the daemon's adapters, so that apps pull in neither
Redis nor the daemon's logging. Its Kafka clients share the adapters' error
translation and client lifecycle (:mod:`controller.kit.kafka_client`): failures
are :class:`~controller.core.common.errors.BrokerError`, whose ``retriable`` says
whether sending again may succeed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from controller.core.common import BrokerError, ControllerError
from controller.kit.deadlines import DeadlineExceeded, TooLarge, deadline, read_bounded
from controller.kit.kafka_client import ClientLifecycle, topic_partitions, translate, translated
from controller.kit.kafka_producer import KafkaProducer
from controller.kit.lifecycle import cancel
from controller.settings import KafkaSettings

log = logging.getLogger("controller.sdk.client")

HttpTransport: TypeAlias = httpx.AsyncBaseTransport
"""What :class:`~controller.sdk.poller.FlagPoller` accepts to replace the network (tests)."""
Item = tuple[bytes, bytes]
"""(key, value) of one message."""


# -- the flag-state topic ---------------------------------------------------------------


class TopicFollower(ClientLifecycle):
    """Every partition of one topic from its beginning, without a group.

    :meth:`start` raises LookupError when the topic does not exist, and a
    :class:`BrokerError` saying why when the broker cannot be used.
    """

    _context = "flag-state topic"

    def __init__(self, kafka: KafkaSettings, topic: str, *, what: str = _context) -> None:
        self._topic = topic
        self._context = what
        self._bootstrap = kafka.bootstrap_servers
        self._client = self._consumer = AIOKafkaConsumer(
            **kafka.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._end: dict[Any, int] = {}

    async def _on_started(self) -> None:
        partitions = await topic_partitions(self._consumer, self._topic)
        if not partitions:
            raise LookupError(f"the {self._context} {self._topic!r} does not exist")
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._end = dict(await self._consumer.end_offsets(tps))

    async def values(self, timeout_ms: int) -> list[bytes | None]:
        """The values that came within ``timeout_ms``; :class:`BrokerError` if fetching failed."""
        with translated():
            batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        return [record.value for records in batch.values() for record in records]

    async def items(self, timeout_ms: int) -> list[tuple[bytes | None, bytes | None]]:
        """The (key, value) pairs that came within ``timeout_ms``, as :meth:`values`."""
        with translated():
            batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        return [(record.key, record.value) for records in batch.values() for record in records]

    async def caught_up(self) -> bool:
        """Whether every partition has been read up to its end offset as of :meth:`start`."""
        for tp, end in self._end.items():
            if await self._consumer.position(tp) < end:
                return False
        return True


class TopicFeed:
    """A topic followed from its beginning in the background, each message handed on.

    What :class:`~controller.sdk.flags.FlagClient` and
    :class:`~controller.sdk.segments.SegmentFollower` both do with their topic:
    :meth:`start` reads it up to where it was (``caught_up`` is called once it
    has), then a task keeps handing each (key, value) to ``receive``; a failed
    fetch is logged and tried again a second later. :meth:`stop` ends both.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        what: str,
        poll_timeout_ms: int,
        receive: Callable[[bytes | None, bytes | None], None],
        caught_up: Callable[[], None],
    ) -> None:
        self._kafka, self._topic, self._what = kafka, topic, what
        self._poll_timeout_ms = poll_timeout_ms
        self._receive, self._caught_up = receive, caught_up
        self._follower: TopicFollower | None = None
        self._task: asyncio.Task[None] | None = None
        self._reached_end = False

    async def start(self) -> None:
        """Assign every partition of the topic, read from the beginning, follow it."""
        if self._follower is not None:
            return
        follower = TopicFollower(self._kafka, self._topic, what=self._what)
        await follower.start()
        self._follower = follower
        await self._check(follower)
        self._task = asyncio.create_task(self._follow(follower), name=f"follow-{self._topic}")

    async def stop(self) -> None:
        follower, self._follower = self._follower, None
        task, self._task = self._task, None
        await cancel(task)
        if follower is not None:
            await follower.stop()

    async def _follow(self, follower: TopicFollower) -> None:
        while True:
            try:
                items = await follower.items(self._poll_timeout_ms)
            except BrokerError as exc:
                log.warning("%s fetch failed: %s", self._what, exc)
                await asyncio.sleep(1.0)
                continue
            for key, value in items:
                self._receive(key, value)
            await self._check(follower)

    async def _check(self, follower: TopicFollower) -> None:
        if not self._reached_end and await follower.caught_up():
            self._reached_end = True
            self._caught_up()


# -- the events topic ---------------------------------------------------------------------


class Outcome:
    """How the broker answered one message."""

    SENT = "sent"
    RETRY = "retry"
    REJECTED = "rejected"


class EventProducer(KafkaProducer):
    """A producer of one topic that reports, per message, whether it went, may go, or never will.

    Idempotent where the broker allows it (:class:`~controller.kit.kafka_producer.KafkaProducer`):
    Kafka then drops the copies a retried send would otherwise write, so the
    client's own retries cannot double-count an event. A broker that refuses
    (an old Kafka, the embedded tansu) gets a plain producer, and one warning
    line says so. Once the broker refuses a batch, ``renew_needed`` says to send
    the next through a fresh producer.
    """

    _log = log
    consequence = "a send the client retries may write an event twice"

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topic: str,
        request_timeout_ms: int,
        idempotent: bool = True,
    ) -> None:
        self._topic = topic
        options = {**kafka.client_options(), "linger_ms": 20}
        options["request_timeout_ms"] = request_timeout_ms
        super().__init__(options, bootstrap=kafka.bootstrap_servers, idempotent=idempotent)
        self.renew_needed = False
        """Whether a refused batch spent this producer: the next send needs a fresh one."""

    async def send(self, items: list[Item]) -> list[str]:
        """Send ``items`` in order; an :class:`Outcome` for each, in the same order."""
        futures: list[asyncio.Future[Any]] = []
        for key, value in items:
            try:
                futures.append(await self.client.send(self._topic, key=key, value=value))
            except KafkaError as exc:
                log.warning("event_send_failed: %r", exc)
                break
        results = await asyncio.gather(*futures, return_exceptions=True)
        unsent = [Outcome.RETRY] * (len(items) - len(futures))
        outcomes = [_outcome(result) for result in results] + unsent
        # A batch the broker refused leaves a gap in an idempotent producer's sequence:
        # the broker would refuse every later batch of that partition as out of order.
        self.renew_needed = self.idempotent and Outcome.REJECTED in outcomes
        return outcomes


def _outcome(result: object) -> str:
    if not isinstance(result, BaseException):
        return Outcome.SENT
    return Outcome.RETRY if translate(result).retriable else Outcome.REJECTED


# -- the controller's /flags over HTTP ------------------------------------------------------


class PollFailed(ControllerError):
    """A poll got no usable answer; the message says why."""


class AnswerTooLarge(PollFailed):
    """The answer was larger than the poller accepts; reading it stopped at the limit."""


@dataclass(frozen=True, slots=True)
class FlagsAnswer:
    """The states ``/flags`` returned, or ``unchanged`` on a 304."""

    unchanged: bool
    items: list[Any]
    etag: str | None
    data: Any = None
    """The whole JSON answer (an object for ``/v1/segments``)."""


class FlagsEndpoint:
    """``GET /flags`` with ``If-None-Match``, so an unchanged answer costs a 304.

    Each poll has one deadline of ``timeout`` seconds for the whole exchange,
    and its answer is read up to ``max_bytes``: a controller (or anything in
    its place) dripping or flooding an answer costs one failed poll, never
    the app's memory or a poll that never ends.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        max_bytes: int,
        transport: HttpTransport | None,
        api_key: str | None = None,
    ) -> None:
        """``api_key``: the app's key (scope ``evaluate``), sent as ``Authorization: Bearer``
        to a controller that requires keys."""
        self.url = url
        self._timeout, self._max_bytes = timeout, max_bytes
        # Identity: a compressed answer could inflate far past its bound in one chunk.
        headers = {"Accept-Encoding": "identity"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, headers=headers)

    async def get(self, etag: str | None) -> FlagsAnswer:
        """The answer; :class:`PollFailed` on no answer in time, another status, or no JSON."""
        headers = {"If-None-Match": etag} if etag else {}
        try:
            async with (
                deadline(self._timeout, f"GET {self.url}"),
                self._http.stream("GET", self.url, headers=headers) as response,
            ):
                if response.status_code == 304:
                    return FlagsAnswer(True, [], etag)
                if response.status_code != 200:
                    raise PollFailed(f"HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                raw = await read_bounded(response.aiter_bytes(), self._max_bytes, declared=declared)
                etag = response.headers.get("ETag")
        except TooLarge as exc:
            raise AnswerTooLarge(str(exc)) from exc
        except (httpx.HTTPError, DeadlineExceeded) as exc:
            raise PollFailed(f"{type(exc).__name__}: {exc}") from exc
        try:
            items = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise PollFailed("the answer is not JSON") from exc
        return FlagsAnswer(False, items if isinstance(items, list) else [], etag, items)

    async def close(self) -> None:
        await self._http.aclose()
