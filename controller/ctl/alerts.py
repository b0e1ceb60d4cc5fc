"""Forward every alert on ``rollout.alerts`` to a Slack-compatible incoming webhook.

``rolloutctl alerts`` (or ``python -m controller.ctl.alerts``) reads the alerts
topic in a consumer group and POSTs each alert, as Slack ``text`` plus
``blocks``, to the webhook. Each message, in order per partition:

1. is decoded as an :class:`Alert`; anything else is logged with the reason,
   counted and skipped (its offset committed);
2. is skipped if its ``id`` is in the ledger of delivered ids, because the
   controller's outbox may publish an alert twice after a crash;
3. is POSTed until the receiver answers 2xx, retrying connection errors,
   timeouts, 429 and 5xx with back-off (honouring ``Retry-After``) for as long
   as the process runs; any other answer is a permanent refusal, logged with
   the receiver's reason and counted, and the stream moves on;
4. has its id added to the ledger (the last 10,000 ids), which is written to
   the state file atomically (temporary file, fsync, rename);
5. has its offset committed (manual commits only).

A crash before step 3 ends sends the alert after the restart: nothing is
lost. A crash between steps 4 and 5 reads it again and skips it as a
duplicate. One window remains: a crash after the receiver answered 2xx and
before the ledger write of step 4 sends that one alert a second time. An
incoming webhook takes no idempotency key and cannot be asked what it has
received, so nothing on this side can tell "delivered, then crashed" from
"crashed before delivering"; writing the ledger before the POST would only
turn that duplicate into a lost alert. At-least-once, with the duplicate
window one message wide, is the best a non-idempotent receiver allows.

SIGTERM or SIGINT: the POST in flight finishes (bounded by its timeout), the
ledger is written, the offset committed, and the process exits 0. An alert
still waiting for a retry is left uncommitted and sent after the next start.

Exit codes: 0 stopped by a signal, 1 failure (broker, state file I/O),
2 usage, 78 bad configuration or an unreadable ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
import structlog
from pydantic import ValidationError

from controller.backoff import Backoff, sleep_or_stop
from controller.core.decoding import summarize
from controller.core.errors import BrokerError, ConfigError
from controller.core.messages import Alert
from controller.ctl.commands import UsageError, run_guarded
from controller.integrations.slack import (
    LEDGER_CAPACITY,
    Ledger,
    classify_status,
    decode_ledger,
    encode_ledger,
    is_webhook_url,
    mask_webhook,
    retry_after_seconds,
    slack_payload,
)
from controller.logs import configure

if TYPE_CHECKING:
    import httpx
    from aiokafka import AIOKafkaConsumer

    from controller.adapters.kafka import Record
    from controller.settings import KafkaSettings, LogSettings

PROG = "rolloutctl alerts"
ENV_WEBHOOK = "ROLLOUTCTL_SLACK_WEBHOOK"
DEFAULT_GROUP = "rolloutctl-alerts"
DEFAULT_STATE = "~/.local/state/rolloutctl/alerts-ledger.json"
POST_TIMEOUT_S = 10.0
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
MAX_RETRY_AFTER_S = 600.0
"""A longer ``Retry-After`` is cut to this, so a wrong header cannot park alerts for days."""
FETCH_TIMEOUT_MS = 500
_COUNTED = ("delivered", "duplicate", "refused", "invalid")

log = structlog.get_logger("controller.ctl.alerts")


# -- delivery ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one alert's POST ended: delivered, refused (permanent) or abandoned (stopping)."""

    outcome: Literal["delivered", "refused", "abandoned"]
    status: int | None
    attempts: int
    reason: str = ""


class Webhook:
    """POSTs payloads to the incoming webhook, retrying what may succeed later."""

    def __init__(
        self, *, client: httpx.AsyncClient, url: str, stopping: asyncio.Event, backoff: Backoff
    ) -> None:
        self._client = client
        self._url = url
        self._stopping = stopping
        self._backoff = backoff

    async def post(self, payload: dict[str, Any]) -> Delivery:
        """POST until 2xx or a permanent refusal; ``abandoned`` once stopping is asked."""
        self._backoff.reset()
        attempts = 0
        while True:
            attempts += 1
            status, retry_after, reason = await self._attempt(orjson.dumps(payload))
            verdict = "retry" if status is None else classify_status(status)
            if verdict != "retry":
                return Delivery(verdict, status, attempts, reason if verdict == "refused" else "")
            delay = self._backoff.delay if retry_after is None else retry_after
            log.warning(
                "webhook_retrying", status=status, reason=reason, attempts=attempts, delay_s=delay
            )
            if await self._wait(retry_after):
                return Delivery("abandoned", status, attempts, reason)

    async def _attempt(self, body: bytes) -> tuple[int | None, float | None, str]:
        """One POST: its status (None if no answer came), Retry-After and the reason."""
        import httpx  # noqa: PLC0415 - keep `rolloutctl --help` fast

        headers = {"Content-Type": "application/json"}
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.TransportError as exc:
            # Never echo the URL: its path is the webhook's secret.
            detail = str(exc).replace(self._url, mask_webhook(self._url))
            return None, None, f"{type(exc).__name__}: {detail}"[:300]
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return response.status_code, retry_after, response.text.strip()[:300]

    async def _wait(self, retry_after: float | None) -> bool:
        if retry_after is None:
            return await self._backoff.wait()
        return await sleep_or_stop(min(retry_after, MAX_RETRY_AFTER_S), self._stopping)


# -- the forwarding loop ----------------------------------------------------------------


class Forwarder:
    """Reads alerts, delivers each once, and records progress in the ledger, then Kafka."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        webhook: Webhook,
        ledger: Ledger,
        state: Path,
        stopping: asyncio.Event,
    ) -> None:
        self._consumer = consumer
        self._webhook = webhook
        self._ledger = ledger
        self._state = state
        self._stopping = stopping
        self.counts: Counter[str] = Counter()

    async def run(self) -> None:
        """Forward until stopping is asked; every alert handled by then is committed."""
        from aiokafka.errors import KafkaError  # noqa: PLC0415

        backoff = Backoff(initial=RETRY_INITIAL_S, maximum=RETRY_MAX_S, stopping=self._stopping)
        while not self._stopping.is_set():
            try:
                batch = await self._consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=100)
            except KafkaError as exc:  # aiokafka reconnects by itself; fetch again later
                log.warning("fetch_failed", error=repr(exc), delay_s=backoff.delay)
                await backoff.wait()
                continue
            backoff.reset()
            for records in batch.values():
                for record in records:
                    if self._stopping.is_set() or not await self._handle(record):
                        return

    async def _handle(self, record: Record) -> bool:
        """Handle one record; False if it was left uncommitted because stopping was asked."""
        alert = self._decode(record)
        if alert is not None and alert.id in self._ledger:
            self.counts["duplicate"] += 1
            log.info("alert_duplicate_skipped", alert_id=alert.id, flag=alert.flag)
        elif alert is not None:
            delivery = await self._webhook.post(slack_payload(alert))
            if delivery.outcome == "abandoned":
                return False
            await self._record(alert, delivery)
        await self._commit(record)
        return True

    def _decode(self, record: Record) -> Alert | None:
        try:
            return Alert.model_validate_json(record.value or b"")
        except ValidationError as exc:
            reason = summarize(exc)
        self.counts["invalid"] += 1
        where = {"partition": record.partition, "offset": record.offset}
        log.error("alert_invalid_skipped", reason=reason, **where)
        return None

    async def _record(self, alert: Alert, delivery: Delivery) -> None:
        self.counts[delivery.outcome] += 1
        fields: dict[str, object] = {"alert_id": alert.id, "kind": alert.kind, "flag": alert.flag}
        fields |= {"status": delivery.status, "attempts": delivery.attempts}
        if delivery.outcome == "refused":
            # Retrying cannot help; the receiver's reason tells a person what to fix.
            log.error("alert_refused", reason=delivery.reason, **fields)
            return
        self._ledger.add(alert.id)
        await asyncio.to_thread(save_ledger, self._state, self._ledger)
        log.info("alert_delivered", **fields)

    async def _commit(self, record: Record) -> None:
        from aiokafka import TopicPartition  # noqa: PLC0415
        from aiokafka.errors import KafkaError  # noqa: PLC0415

        try:
            await self._consumer.commit(
                {TopicPartition(record.topic, record.partition): record.offset + 1}
            )
        except KafkaError as exc:
            # The ledger holds the id already: reading the record again skips it.
            log.warning("commit_failed", error=repr(exc), offset=record.offset)


# -- the state file ---------------------------------------------------------------------


def load_ledger(path: Path, capacity: int = LEDGER_CAPACITY) -> Ledger:
    """The ledger in ``path``, empty if the file does not exist yet.

    Raises :class:`ConfigError` if the file cannot be read or holds no ledger.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Ledger(capacity=capacity)
    except OSError as exc:
        raise ConfigError(f"cannot read state file {path}: {exc.strerror}") from exc
    try:
        return decode_ledger(data, capacity=capacity)
    except ValueError as exc:
        raise ConfigError(f"state file {path} holds no ledger ({exc}); move it away") from exc


def save_ledger(path: Path, ledger: Ledger) -> None:
    """Replace ``path`` with ``ledger`` atomically: a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as out:
        out.write(encode_ledger(ledger))
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # makes the rename itself durable
    finally:
        os.close(directory)


# -- wiring and the command line --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asks for, validated."""

    webhook: str
    kafka: KafkaSettings
    topic: str
    group: str
    state: Path
    start_from: Literal["earliest", "latest"]


async def forward(options: Options) -> int:
    """Forward alerts until SIGTERM/SIGINT; return the exit code."""
    ledger = await asyncio.to_thread(load_ledger, options.state)
    stopping = asyncio.Event()
    with _stop_on_signals(stopping):
        consumer = await _start_consumer(options)
        try:
            counts = await _forward(consumer, ledger, options, stopping)
        finally:
            await consumer.stop()
    log.info("stopped", **{k: counts[k] for k in _COUNTED})
    return 0


async def _forward(
    consumer: AIOKafkaConsumer, ledger: Ledger, options: Options, stopping: asyncio.Event
) -> Counter[str]:
    import httpx  # noqa: PLC0415 - keep `rolloutctl --help` fast

    backoff = Backoff(initial=RETRY_INITIAL_S, maximum=RETRY_MAX_S, stopping=stopping)
    async with httpx.AsyncClient(timeout=POST_TIMEOUT_S) as client:
        webhook = Webhook(client=client, url=options.webhook, stopping=stopping, backoff=backoff)
        forwarder = Forwarder(
            consumer=consumer,
            webhook=webhook,
            ledger=ledger,
            state=options.state,
            stopping=stopping,
        )
        _log_start(options, ledger)
        await forwarder.run()
    return forwarder.counts


@contextlib.contextmanager
def _stop_on_signals(stopping: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _start_consumer(options: Options) -> AIOKafkaConsumer:
    from aiokafka import AIOKafkaConsumer  # noqa: PLC0415
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    consumer = AIOKafkaConsumer(
        options.topic,
        **options.kafka.client_options() | {"client_id": "rolloutctl-alerts"},
        group_id=options.group,
        session_timeout_ms=options.kafka.session_timeout_ms,
        heartbeat_interval_ms=options.kafka.heartbeat_interval_ms,
        enable_auto_commit=False,
        auto_offset_reset=options.start_from,
    )
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        where = options.kafka.bootstrap_servers
        raise BrokerError(f"cannot consume {options.topic} at {where}: {exc!r}") from exc
    return consumer


def _log_start(options: Options, ledger: Ledger) -> None:
    log.info(
        "forwarding",
        topic=options.topic,
        group=options.group,
        webhook=mask_webhook(options.webhook),
        state=str(options.state),
        remembered_ids=len(ledger),
        start_from=options.start_from,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rolloutctl alerts``."""
    parser.add_argument(
        "--slack-webhook",
        metavar="URL",
        help=f"incoming webhook URL (required; default: ${ENV_WEBHOOK}, which keeps it "
        "out of the process list)",
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="controller settings YAML (Kafka, topics)"
    )
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="broker list, overrides --config")
    parser.add_argument("--topic", metavar="NAME", help="alerts topic, overrides --config")
    parser.add_argument(
        "--group",
        default=DEFAULT_GROUP,
        metavar="ID",
        help=f"consumer group (default: {DEFAULT_GROUP})",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        default=Path(DEFAULT_STATE).expanduser(),
        help=f"ledger of delivered alert ids (default: {DEFAULT_STATE})",
    )
    parser.add_argument(
        "--from",
        dest="start_from",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a new group starts reading (default: earliest)",
    )


def options_from_args(args: argparse.Namespace) -> Options:
    """Validated options; :class:`UsageError` or :class:`ConfigError` naming the problem."""
    from controller.settings import load_settings  # noqa: PLC0415

    webhook = args.slack_webhook or os.environ.get(ENV_WEBHOOK)
    if not webhook:
        raise UsageError(f"no webhook: pass --slack-webhook or set {ENV_WEBHOOK}")
    if not is_webhook_url(webhook):
        # The message leaves the value out: it may be a secret with a typo.
        raise UsageError("--slack-webhook must be an http:// or https:// URL")
    settings = load_settings(args.config)
    _configure_logging(settings.log)
    kafka = settings.kafka
    if args.bootstrap:
        kafka = kafka.model_copy(update={"bootstrap_servers": args.bootstrap})
    topic = args.topic or settings.topics.alerts
    return Options(webhook, kafka, topic, args.group, args.state, args.start_from)


def _configure_logging(settings: LogSettings) -> None:
    """One line per event on stderr; stdout stays free for a caller's pipes."""
    configure(settings, stream=sys.stderr)
    # httpx logs each request with its URL at INFO; the URL is a secret.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    """Run the forwarder the parsed arguments describe; returns the exit code."""
    return run_guarded(lambda: asyncio.run(forward(options_from_args(args))))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m controller.ctl.alerts``: the same as ``rolloutctl alerts``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Forward every alert on the alerts topic to a Slack-compatible incoming "
        "webhook, in order per flag, deduplicated by alert id. Stops on SIGTERM/SIGINT.",
        epilog="Exit codes: 0 stopped by a signal, 1 failure, 2 usage, 78 bad configuration.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
