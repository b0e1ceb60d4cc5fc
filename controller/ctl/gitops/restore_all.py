"""``rolloutctl restore --all-flags``: every flag back to the state after its last decision.

The manual path beside the controller's own rebuild (docs/operations.md, "When
Redis loses its data"): the decisions and commands topics are read once, from
their beginning, and every flag a decision left in a state is restored to its
last such decision as ``rolloutctl restore FLAG --to-decision ID`` restores one
(:func:`~controller.ctl.gitops.restore.run`), one flag after another: proposed
with ``--dry-run``, signed and sent with ``--yes``. A flag already so sends
nothing. A flag refused, or whose step is rejected, is told and the others go
on; the exit code is the worst of the flags'.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from controller.core.drafting import TopicHistory
from controller.core.trust import PublishedRecord
from controller.ctl.gitops import restore
from controller.ctl.operate import handlers
from controller.ctl.terminal import warn
from controller.ctl.usage import UsageError
from controller.settings import KafkaSettings, TopicSettings


async def read_records(
    kafka: KafkaSettings, topics: TopicSettings, max_records: int
) -> list[PublishedRecord]:
    """Every record of the decisions and commands topics, as they are now."""
    from controller.adapters.kafka import SpanReader  # noqa: PLC0415 - keep `--help` fast

    records: list[PublishedRecord] = []
    reader = SpanReader(
        kafka,
        {topics.decisions: "decision", topics.commands: "command"},
        since_ms=0,
        until_ms=time.time_ns() // 1_000_000 + 1,
        timeout_s=restore.START_TIMEOUT_S,
    )
    async with reader:
        async for batch in reader.batches():
            records += batch
            if len(records) > max_records:
                raise UsageError(f"more than --max-records {max_records:,} records to read")
    return records


def last_decisions(records: list[PublishedRecord], decisions: str) -> dict[str, str]:
    """Each flag's last decision that records the state it left it in, by flag."""
    flags = TopicHistory()
    for record in records:
        if record.topic == decisions:
            flags.take_decision(record.value)
    return {flag: flags.last[flag].decision_id for flag in flags.flags()}


def run(args: argparse.Namespace) -> int:
    """Restore every flag to its last decision; the worst of the flags' exit codes."""
    if args.flag is not None or args.to_decision is not None:
        raise UsageError("--all-flags restores every flag: name no FLAG and no --to-decision")
    settings, kafka = handlers.broker_of(args)
    records = asyncio.run(read_records(kafka, settings.topics, args.max_records))
    lasts = last_decisions(records, settings.topics.decisions)
    if not lasts:
        warn(f"no decision on {settings.topics.decisions} records a flag's state: nothing to do")
        return 0
    worst = 0
    for flag, decision_id in lasts.items():
        history = restore.History(flag, decision_id)
        for record in records:
            history.take(record)
        one = {"flag": flag, "to_decision": decision_id, "all_flags": False}
        each = argparse.Namespace(**{**vars(args), **one})
        worst = max(worst, restore.run(each, history))
    return worst
