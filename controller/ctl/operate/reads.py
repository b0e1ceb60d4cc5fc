"""``rolloutctl status`` and ``rolloutctl watch``: looking, without changing anything.

``status`` reads the controller's HTTP API into its view models
(:mod:`controller.core.reading.views`) and prints the table or one rollout;
``watch`` follows the decisions and alerts topics and prints each message
as it is published.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncGenerator

import orjson

from controller.adapters import http_client
from controller.core.reading import RolloutList, RolloutStatus
from controller.ctl.exits import EXIT_FAILURE, EXIT_NO_DECISION
from controller.ctl.operate import plan_power, steering, views
from controller.ctl.operate.handlers import broker_of
from controller.ctl.report import diagnosis
from controller.ctl.terminal import env_url, print_json, warn
from controller.process import stop_on_signals
from controller.settings import KafkaSettings


def status(args: argparse.Namespace) -> int:
    """The status table, or one rollout in detail, from the controller's HTTP API."""
    base = env_url(args.url)
    path = f"/rollouts/{args.flag}" if args.flag else "/rollouts"
    try:
        answer = http_client.get(base + path, timeout_s=10, headers=diagnosis.token_headers())
    except http_client.Unreachable as exc:
        raise diagnosis.unreachable(base, exc) from exc
    if answer.status == 404 and args.flag:
        warn(f"no rollout for flag {args.flag!r}")
        return EXIT_FAILURE
    if answer.status != 200:
        raise diagnosis.refused(base, path, answer)
    body = answer.json()
    if args.json:
        print_json(body)  # as served, by whichever version of the controller
    elif args.flag:
        status = diagnosis.served(RolloutStatus, body, base + path, "RolloutStatus")
        effect = plan_power.share(args.effect, "--effect")
        print(views.status_detail(status, effect=effect))
    else:
        listing = diagnosis.served(RolloutList, body, base + path, "RolloutList")
        print(views.status_table(listing.rollouts))
    return 0


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
