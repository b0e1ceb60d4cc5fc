"""``rolloutctl ingest``: the operator's choice for events partitions the controller holds.

A broker that came back without its data leaves events partitions whose log
no longer holds what was counted; the controller holds them and alerts
(``events_log_gap``). ``reread`` counts them from their earliest offset (the
topic is new), ``accept-gap`` from where their log ended when the gap was
found (the log was cut short). The command is signed, sent, and answered by
the controller's decision (docs/architecture.md, "A broker that lost its data").
"""

from __future__ import annotations

import argparse

from controller.core.machine import IngestCommand
from controller.core.trust import signing
from controller.core.wire import IngestEvidence, JsonObject
from controller.ctl.exits import EXIT_NO_DECISION, EXIT_REJECTED
from controller.ctl.looking import views
from controller.ctl.operate.commands import contract_model, new_message, read_private_key
from controller.ctl.operate.handlers import actor_of, key_id_of, key_path_of, send_signed
from controller.ctl.terminal import print_json, warn

RECORD_KEY = b"ingest"
"""The Kafka key of every ingest command: one partition, so they apply in order."""
VERBS = {"reread": "reread", "accept-gap": "accept_gap"}


def run(args: argparse.Namespace) -> int:
    """Sign, send and wait for the decision on one choice."""
    command = _signed(args)
    answered = send_signed(args, command, key=RECORD_KEY)
    if answered is None:
        warn(f"sent ingest {command.action} (command {command.id}), but no decision came")
        return EXIT_NO_DECISION
    decision = answered.decision
    if args.json:
        print_json(answered.published)
    else:
        said = decision.evidence
        partitions = said.partitions if isinstance(said, IngestEvidence) else None
        result = f"events partitions {partitions}" if partitions else ""
        print(views.outcome_line(decision, what=f"ingest {command.action}", result=result))
    return 0 if decision.outcome == "applied" else EXIT_REJECTED


def command_of(
    choice: str,
    *,
    partitions: list[int],
    actor: str,
    key_id: str,
    reason: str = "",
    topic: str | None = None,
) -> IngestCommand:
    """An unsigned ingest command, as the contract's model."""
    fields: JsonObject = {"type": "ingest", **new_message(), "action": choice}
    fields["partitions"] = [*sorted(set(partitions))]
    fields |= {"actor": actor, "reason": reason, "key_id": key_id}
    if topic is not None:
        fields["topic"] = topic
    return contract_model(IngestCommand, fields)


def _signed(args: argparse.Namespace) -> IngestCommand:
    key_id = key_id_of(args.key_id)
    command = command_of(
        VERBS[args.ingest_command],
        partitions=args.partition,
        actor=actor_of(args.actor),
        key_id=key_id,
        reason=args.reason,
        topic=args.held_topic,
    )
    return signing.sign_command(command, read_private_key(key_path_of(args.key, key_id)))
