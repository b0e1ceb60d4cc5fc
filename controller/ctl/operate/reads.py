"""``rolloutctl watch``: following what the controller publishes, without changing anything.

``watch`` follows the decisions and alerts topics and prints each message as it is
published (``status``, which reads the HTTP API, is :mod:`controller.ctl.looking.status`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncGenerator

import orjson

from controller.ctl.exits import EXIT_NO_DECISION
from controller.ctl.looking import views
from controller.ctl.operate import steering
from controller.ctl.operate.handlers import broker_of
from controller.ctl.terminal import warn
from controller.process import stop_on_signals
from controller.settings import KafkaSettings


def watch(args: argparse.Namespace) -> int:
    """Print decisions and alerts as they are published, until Ctrl-C, --max or --for."""
    settings, kafka = broker_of(args)
    topics = [settings.topics.decisions, settings.topics.alerts]
    try:
        shown = asyncio.run(_watch(args, kafka, topics))
    except KeyboardInterrupt:
        return 0
    return 0 if args.max is None or shown >= args.max else EXIT_NO_DECISION


async def _watch(args: argparse.Namespace, kafka: KafkaSettings, topics: list[str]) -> int:
    stop = asyncio.Event()
    if args.seconds is not None:
        asyncio.get_running_loop().call_later(args.seconds, stop.set)
    if not args.json:
        warn(f"watching {', '.join(topics)}{' for ' + args.flag if args.flag else ''}")
    follow = steering.follow(kafka, topics, from_beginning=args.from_beginning, stop=stop)
    with stop_on_signals(stop, (signal.SIGTERM,)):
        return await _show(args, follow)


async def _show(args: argparse.Namespace, follow: AsyncGenerator[steering.Received]) -> int:
    """Print the decisions ``follow`` yields (of ``--flag`` only), up to ``--max``."""
    shown = 0
    async with contextlib.aclosing(follow) as messages:
        async for message, published in messages:
            if args.flag and message.flag != args.flag:
                continue
            print(orjson.dumps(published).decode() if args.json else views.decision_line(message))
            sys.stdout.flush()
            shown += 1
            if args.max is not None and shown >= args.max:
                break
    return shown
