"""The arguments of ``rolloutctl ingest``: how held events partitions resume."""

from __future__ import annotations

import argparse

from controller.ctl.options import broker_options, output_options, signing_options

Subparsers = argparse._SubParsersAction


def add_ingest(commands: Subparsers[argparse.ArgumentParser]) -> None:
    ingest = commands.add_parser(
        "ingest",
        help="choose how held events partitions resume (a broker that lost its data)",
        description="Events partitions whose log no longer holds the offset the controller "
        "stored are held until you choose: `reread` counts them from their earliest offset "
        "(the topic was made again: all of it is new), `accept-gap` from where their log "
        "ended when the gap was found (the log was cut short: what it lost stays uncounted). "
        "Exit 0 when applied, 3 with the reason when rejected, 4 if no decision came in time.",
    )
    verbs = ingest.add_subparsers(dest="ingest_command", required=True, metavar="CHOICE")
    signed = [signing_options(), broker_options(), output_options()]
    for verb, text in (
        ("reread", "count the held partitions from their earliest offset"),
        ("accept-gap", "count the held partitions from where their log ended"),
    ):
        sub = verbs.add_parser(verb, parents=signed, help=text, description=text + ".")
        sub.add_argument(
            "--partition",
            type=int,
            action="append",
            default=[],
            metavar="N",
            help="a held partition (repeat; default: every held one)",
        )
        sub.add_argument(
            "--topic",
            dest="held_topic",  # not `topic`: that one names where `send` writes a command
            metavar="NAME",
            help="the topic whose partitions are held, when it is the Collector's "
            "(otlp.spans_topic, otlp.logs_topic); default: the events topic",
        )
        sub.add_argument(
            "--timeout", type=float, default=30.0, metavar="SECONDS", help="wait this long (30)"
        )
