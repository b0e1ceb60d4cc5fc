"""Forward every alert on ``rollout.alerts`` to a Slack-compatible incoming webhook.

``rolloutctl alerts`` (or ``python -m controller.ctl.alerts.alerts``) reads the alerts
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
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from controller.ctl.alerts.forwarder import (
    WEBHOOK_RETRY,
    Forwarder,
    load_ledger,
    save_ledger,
)
from controller.ctl.alerts.webhook import Webhook
from controller.ctl.arguments import ENV_WEBHOOK
from controller.ctl.arguments import alerts as alert_arguments
from controller.ctl.terminal import run_guarded
from controller.ctl.usage import UsageError
from controller.integrations.slack import Ledger, is_webhook_url, mask_webhook
from controller.kit.backoff import retry_backoff
from controller.process import configure, stop_on_signals
from controller.settings import KafkaSettings, LogSettings

if TYPE_CHECKING:
    from controller.adapters.kafka import GroupConsumer

__all__ = ["ENV_WEBHOOK", "Options", "load_ledger", "main", "run", "save_ledger"]

PROG = "rolloutctl alerts"
POST_TIMEOUT_S = 10.0
_COUNTED = ("delivered", "duplicate", "refused", "invalid")

log = structlog.get_logger("controller.ctl.alerts.alerts")


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
    console_url: str | None = None
    """The console's public base URL (``http.console_url``): alerts link to the flag's page."""


async def forward(options: Options) -> int:
    """Forward alerts until SIGTERM/SIGINT; return the exit code."""
    ledger = await asyncio.to_thread(load_ledger, options.state)
    stopping = asyncio.Event()
    with stop_on_signals(stopping):
        consumer = await _start_consumer(options)
        try:
            counts = await _forward(consumer, ledger, options, stopping)
        finally:
            await consumer.stop()
    log.info("stopped", **{k: counts[k] for k in _COUNTED})
    return 0


async def _forward(
    consumer: GroupConsumer, ledger: Ledger, options: Options, stopping: asyncio.Event
) -> Counter[str]:
    from controller.adapters.http_client import JsonPoster  # noqa: PLC0415 - keep `--help` fast

    backoff = retry_backoff(stopping, WEBHOOK_RETRY)
    async with JsonPoster(timeout_s=POST_TIMEOUT_S) as client:
        webhook = Webhook(client=client, url=options.webhook, stopping=stopping, backoff=backoff)
        forwarder = Forwarder(
            consumer=consumer,
            webhook=webhook,
            ledger=ledger,
            state=options.state,
            stopping=stopping,
            console_url=options.console_url,
        )
        _log_start(options, ledger)
        await forwarder.run()
    return forwarder.counts


async def _start_consumer(options: Options) -> GroupConsumer:
    from controller.adapters.kafka import GroupConsumer  # noqa: PLC0415 - keep `--help` fast

    consumer = GroupConsumer(
        options.kafka,
        topic=options.topic,
        group=options.group,
        start_from=options.start_from,
        client_id="rolloutctl-alerts",
    )
    await consumer.start()
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
    return Options(
        webhook,
        kafka,
        topic,
        args.group,
        args.state,
        args.start_from,
        settings.http.console_url,
    )


def _configure_logging(settings: LogSettings) -> None:
    """One line per event on stderr; stdout stays free for a caller's pipes."""
    configure(settings, stream=sys.stderr)
    # httpx logs each request with its URL at INFO; the URL is a secret.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    """Run the forwarder the parsed arguments describe; returns the exit code."""
    return run_guarded(lambda: asyncio.run(forward(options_from_args(args))))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m controller.ctl.alerts.alerts``: the same as ``rolloutctl alerts``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Forward every alert on the alerts topic to a Slack-compatible incoming "
        "webhook, in order per flag, deduplicated by alert id. Stops on SIGTERM/SIGINT.",
        epilog="Exit codes: 0 stopped by a signal, 1 failure, 2 usage, 78 bad configuration.",
    )
    alert_arguments.add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
