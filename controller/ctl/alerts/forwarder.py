"""The forwarding loop of ``rolloutctl alerts`` and its state file, the ledger of delivered ids.

See :mod:`controller.ctl.alerts.alerts` for the order of the steps and why a crash
anywhere loses no alert.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from pydantic import ValidationError

from controller.core.common import BrokerError, ConfigError
from controller.core.wire import Alert, summarize
from controller.ctl.alerts.webhook import Delivery, Webhook
from controller.integrations.slack import (
    LEDGER_CAPACITY,
    Ledger,
    decode_ledger,
    encode_ledger,
    slack_payload,
)
from controller.kit.backoff import retry_backoff
from controller.settings.retry import RetrySettings

if TYPE_CHECKING:
    from controller.adapters.kafka import GroupConsumer
    from controller.ports import Record

WEBHOOK_RETRY = RetrySettings(initial_seconds=0.5, max_seconds=30.0)
"""Kafka fetches and webhook posts back off longer than the daemon: a chat service limits rates."""
FETCH_TIMEOUT_MS = 500

log = structlog.get_logger("controller.ctl.alerts.alerts")


class Forwarder:
    """Reads alerts, delivers each once, and records progress in the ledger, then Kafka."""

    def __init__(
        self,
        *,
        consumer: GroupConsumer,
        webhook: Webhook,
        ledger: Ledger,
        state: Path,
        stopping: asyncio.Event,
        console_url: str | None = None,
    ) -> None:
        self._consumer = consumer
        self._console_url = console_url
        self._webhook = webhook
        self._ledger = ledger
        self._state = state
        self._stopping = stopping
        self.counts: Counter[str] = Counter()

    async def run(self) -> None:
        """Forward until stopping is asked; every alert handled by then is committed."""
        backoff = retry_backoff(self._stopping, WEBHOOK_RETRY)
        while not self._stopping.is_set():
            try:
                records = await self._consumer.fetch(timeout_ms=FETCH_TIMEOUT_MS, max_records=100)
            except BrokerError as exc:  # the client reconnects by itself; fetch again later
                log.warning("fetch_failed", error=str(exc), delay_s=backoff.delay)
                await backoff.wait()
                continue
            backoff.reset()
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
            delivery = await self._webhook.post(slack_payload(alert, console_url=self._console_url))
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
        try:
            await self._consumer.commit_through(record)
        except BrokerError as exc:
            # The ledger holds the id already: reading the record again skips it.
            log.warning("commit_failed", error=str(exc), offset=record.offset)


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
