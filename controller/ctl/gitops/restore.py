"""``rolloutctl restore FLAG --to-decision ID``: bring a flag back to the state after a decision.

The decision is read from the decisions topic: the state it left the flag in
(``phase_after``, ``stage``, ``rollout_id``). The plan that rollout was started
with is the ``plan`` of the start command its start decision names (the commands
topic); each segment that plan names is as the last segment decision up to the
one restored to says (a rule in full; an id list only by its digest). The flag
and its segments now are read from the controller's HTTP API. The pure
:func:`~controller.core.drafting.plan_restore` makes the steps; they are printed
as a proposal (what changes, from → to) and, with ``--yes``, each is signed and
sent like any command, its decision awaited before the next is sent: a step
rejected (a precondition, ``expect_stage``, that no longer holds; a role the key
lacks) stops the restore there. Where the state cannot be brought back the
restore is refused with the reason and nothing is sent.

Exit codes: 0 restored (or already so, or a proposal printed), 1 refused or the
broker unreadable, 2 usage, 3 a step rejected, 4 no decision in time.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.core.drafting import (
    FlagNow,
    FlagThen,
    RestorePlan,
    RestoreRefusal,
    RestoreStep,
    SegmentState,
    plan_restore,
    segments_of,
    stage_shown,
)
from controller.core.rollouts import Plan
from controller.core.rules import AudienceRule, to_text
from controller.core.trust import AuditEvent, PublishedRecord, audit_event, signing
from controller.core.wire import Decision, JsonObject, SegmentEvidence
from controller.ctl.exits import EXIT_FAILURE, EXIT_NO_DECISION, EXIT_REJECTED
from controller.ctl.looking import diagnosis, views
from controller.ctl.operate import (
    handlers,
    read_private_key,
    segments,
    signed_model,
    steering,
)
from controller.ctl.terminal import env_url, print_json, warn
from controller.ctl.usage import UsageError
from controller.settings import KafkaSettings, TopicSettings

START_TIMEOUT_S = 30.0


@dataclass(slots=True)
class History:
    """What the topics say about one flag: the decision restored to, start commands'
    plans, and segment decisions."""

    flag: str
    decision_id: str
    target: Decision | None = None
    target_ms: int = 0
    starts: dict[str, str] = field(default_factory=dict)
    """Each rollout's start command id, by rollout id."""
    plans: dict[str, JsonObject] = field(default_factory=dict)
    """Each start command's plan, by command id."""
    segment_decisions: list[tuple[int, SegmentEvidence]] = field(default_factory=list)
    other_flag: str | None = None
    """The flag a decision of that id was published for, when it is another flag's."""

    def take(self, record: PublishedRecord) -> None:
        """Keep what the record says of the flag, its rollouts or segments."""
        event = audit_event(record)
        if not isinstance(event, AuditEvent):
            return
        data = event.data
        if record.kind == "command":
            start = data.get("flag") == self.flag and data.get("action") == "start"
            if start and isinstance(plan := data.get("plan"), dict):
                self.plans[str(data.get("id"))] = plan
            return
        if data.get("id") == self.decision_id and data.get("flag") == self.flag:
            self.target, self.target_ms = _decision(data), record.timestamp_ms
        elif data.get("id") == self.decision_id:
            self.other_flag = str(data.get("flag") or "")
        if data.get("kind") == "segment" and data.get("outcome") == "applied":
            decision = _decision(data)
            if decision is not None and isinstance(decision.evidence, SegmentEvidence):
                self.segment_decisions.append((record.timestamp_ms, decision.evidence))
        started = data.get("action") == "start" and data.get("outcome") == "applied"
        if started and data.get("flag") == self.flag and isinstance(data.get("rollout_id"), str):
            self.starts[str(data["rollout_id"])] = str(data.get("command_id"))

    def not_found(self, topic: str) -> str:
        """Why the decision restored to was not found: another flag's, or not on ``topic``."""
        if self.other_flag is not None:
            whose = f"flag {self.other_flag}" if self.other_flag else "no flag"
            return (
                f"decision {self.decision_id} belongs to {whose}, not to {self.flag}:"
                f" name a decision of {self.flag}"
            )
        return f"decision {self.decision_id} of flag {self.flag} is not on {topic}"

    def plan_of(self, rollout_id: object) -> Plan | None:
        """The plan ``rollout_id`` was started with, where its start command is still read."""
        plan = self.plans.get(self.starts.get(str(rollout_id), ""))
        try:
            return None if plan is None else Plan.model_validate(plan)
        except ValueError:
            return None

    def segment_then(self, name: str) -> SegmentState:
        """The segment as the last decision up to the one restored to left it."""
        last: SegmentEvidence | None = None
        for at_ms, evidence in self.segment_decisions:
            if at_ms <= self.target_ms and evidence.segment == name:
                last = evidence
        if last is None:
            return SegmentState(exists=False, known=False)
        if last.deleted:
            return SegmentState(exists=False)
        return SegmentState(True, last.rule, last.sha256)


def _decision(data: JsonObject) -> Decision | None:
    try:
        return Decision.model_validate(data)
    except ValueError:
        return None


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


async def read_history(
    kafka: KafkaSettings, topics: TopicSettings, flag: str, decision_id: str, max_records: int
) -> History:
    """The flag's history from the decisions and commands topics, as they are now."""
    from controller.adapters.kafka import SpanReader  # noqa: PLC0415 - keep `--help` fast

    history, read = History(flag, decision_id), 0
    until_ms = time.time_ns() // 1_000_000 + 1
    reader = SpanReader(
        kafka,
        {topics.decisions: "decision", topics.commands: "command"},
        since_ms=0,
        until_ms=until_ms,
        timeout_s=START_TIMEOUT_S,
    )
    async with reader:
        async for batch in reader.batches():
            read += len(batch)
            if read > max_records:
                raise UsageError(f"more than --max-records {max_records:,} records to read")
            for record in batch:
                history.take(record)
    return history


def flag_now(base: str, flag: str, history: History) -> FlagNow:
    """The flag's rollout as the controller serves it (``GET /rollouts/{flag}``)."""
    body = diagnosis.get_json(base, f"/rollouts/{flag}", timeout_s=30, missing_ok=True)
    if not isinstance(body, dict):
        return FlagNow(exists=False)
    rollout_id = _text(body, "rollout_id")
    stage = body.get("stage")
    return FlagNow(
        True,
        rollout_id,
        _text(body, "phase"),
        stage if isinstance(stage, int) else None,
        history.plan_of(rollout_id),
    )


def segment_now(base: str, name: str) -> SegmentState:
    """The segment as the controller serves it now (``GET /v1/segments/{name}``)."""
    body = diagnosis.get_json(base, f"/v1/segments/{name}", timeout_s=30, missing_ok=True)
    if not isinstance(body, dict):
        return SegmentState(exists=False)
    rule = body.get("rule")
    return SegmentState(True, rule if isinstance(rule, dict) else None, _text(body, "sha256"))


def proposal(
    args: argparse.Namespace, read: History | None = None
) -> tuple[RestorePlan | RestoreRefusal, Decision | None]:
    """The restore's steps, or why there are none, and the decision restored to; ``read``:
    the flag's history, read already (``--all-flags`` reads the topics once)."""
    settings, kafka = handlers.broker_of(args)
    history = read or asyncio.run(
        read_history(kafka, settings.topics, args.flag, args.to_decision, args.max_records)
    )
    target = history.target
    if target is None:
        return RestoreRefusal(history.not_found(settings.topics.decisions)), None
    then = FlagThen(
        args.to_decision,
        target.rollout_id,
        target.phase_after,
        target.stage,
        history.plan_of(target.rollout_id),
    )
    base = env_url(args.url)
    plan = then.plan
    used = segments_of(plan) if plan is not None else []
    segment_states = {n: (history.segment_then(n), segment_now(base, n)) for n in used}
    return plan_restore(then, flag_now(base, args.flag, history), segment_states), target


def run(args: argparse.Namespace, read: History | None = None) -> int:
    """Propose the restore; with ``--yes`` sign and send it; returns the exit code."""
    if getattr(args, "all_flags", False):
        from controller.ctl.gitops import restore_all  # noqa: PLC0415 - reads every flag

        return restore_all.run(args)
    if args.flag is None or args.to_decision is None:
        raise UsageError("restore needs FLAG and --to-decision ID, or --all-flags")
    result, target = proposal(args, read)
    if isinstance(result, RestoreRefusal):
        warn(f"cannot restore {args.flag} to decision {args.to_decision}: {result.reason}")
        return EXIT_FAILURE
    assert target is not None  # a plan is made from a decision found
    _show(args, result, target)
    if not result.steps:
        return 0
    if not args.yes:
        warn("nothing sent" + ("" if args.dry_run else ": pass --yes to sign and send these"))
        return 0
    return _send(args, result)


def _show(args: argparse.Namespace, result: RestorePlan, target: Decision) -> None:
    steps = [
        {"kind": s.kind, "action": s.action, "change": s.change, "segment": s.segment}
        for s in result.steps
    ]
    if args.json:
        print_json({"flag": args.flag, "decision": args.to_decision, "steps": steps})
        return
    state = f"{target.phase_after} at {stage_shown(target.stage)}"
    print(f"restore {args.flag} to decision {args.to_decision} ({state}):")
    if not result.steps:
        print("  already so: nothing to send")
    for n, step in enumerate(result.steps, 1):
        what = f"segment {step.action}" if step.kind == "segment_command" else step.action
        print(f"  {n}. {what}: {step.change}")


@dataclass(frozen=True, slots=True)
class _Signer:
    key_id: str
    private_key: Ed25519PrivateKey
    actor: str
    reason: str
    kafka: KafkaSettings
    topics: TopicSettings


def _send(args: argparse.Namespace, result: RestorePlan) -> int:
    key_id = handlers.key_id_of(args.key_id)
    settings, kafka = handlers.broker_of(args)
    signer = _Signer(
        key_id,
        read_private_key(handlers.key_path_of(args.key, key_id)),
        handlers.actor_of(args.actor),
        args.reason or f"restore to decision {args.to_decision}",
        kafka,
        settings.topics,
    )
    new_rollout: str | None = None
    for step in result.steps:
        if step.kind == "segment_command":
            code = _send_segment(args, step, signer)
        else:
            # A step on the rollout the start before it made is held to that rollout.
            expect_rollout_id = new_rollout if step.new_rollout else step.expect_rollout_id
            command = signed_model(
                step.action,
                args.flag,
                private_key=signer.private_key,
                key_id=signer.key_id,
                actor=signer.actor,
                reason=signer.reason,
                plan=step.plan,
                to_end=step.to_end,
                expect_rollout_id=expect_rollout_id,
                expect_stage=step.expect_stage,
            )
            answered = handlers.send_signed(args, command)
            code = _told(args, answered, f"{step.action} {args.flag}")
            if step.action == "start" and answered is not None:
                new_rollout = answered.decision.rollout_id
        if code != 0:
            return code
    return 0


def _send_segment(args: argparse.Namespace, step: RestoreStep, signer: _Signer) -> int:
    name = str(step.segment)
    # The rule as published, in the text form a segment command is made from.
    rule = None if step.rule is None else to_text(AudienceRule.model_validate(step.rule))
    unsigned = segments.commands_for(
        name,
        action=step.action,
        actor=signer.actor,
        key_id=signer.key_id,
        reason=signer.reason,
        rule=rule,
    )
    commands = [signing.sign_command(c, signer.private_key) for c in unsigned]

    async def sending() -> tuple[int, int]:
        return await segments.send(
            commands, kafka=signer.kafka, topic=signer.topics.commands, timeout_s=args.timeout
        )

    answered = asyncio.run(
        steering.send_and_await(
            commands[-1].id,
            send=sending,
            kafka=signer.kafka,
            decisions=signer.topics.decisions,
            timeout_s=args.timeout,
        )
    )
    return _told(args, answered, f"segment {step.action} {name}")


def _told(args: argparse.Namespace, answered: steering.Answered | None, what: str) -> int:
    if answered is None:
        warn(f"sent {what}, but no decision came within {args.timeout:g}s: restore stopped")
        return EXIT_NO_DECISION
    if args.json:
        print_json(answered.published)
    else:
        print(views.outcome_line(answered.decision))
    if answered.decision.outcome == "rejected":
        warn(f"{what} rejected: restore stopped there")
        return EXIT_REJECTED
    return 0
