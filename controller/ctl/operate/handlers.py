"""What each ``rolloutctl`` subcommand does, once its arguments are parsed (``status`` and
``watch``, which only look, are :mod:`controller.ctl.operate.reads`').

Imported only when a command runs, so ``rolloutctl --help`` stays fast.
Output goes to stdout (``--json`` for scripts); progress and errors go to
stderr; the return value is the exit code documented in
:mod:`controller.ctl.app`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from controller.core.common import ConfigError
from controller.core.rollouts import DEFAULT_PLAN, Finding, Plan, errors, lint, load_plan
from controller.core.stats import StagePreview
from controller.core.trust import signing
from controller.core.wire import (
    Command,
    CommandAction,
    SignedCommand,
    sent_object,
)
from controller.ctl.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_NO_DECISION, EXIT_REJECTED
from controller.ctl.looking import diagnosis, views
from controller.ctl.operate import plan_power, steering
from controller.ctl.operate.commands import (
    KEY_ID_PATTERN,
    config_snippet,
    default_key_dir,
    encode_command,
    read_private_key,
    send_command,
    signed_model,
    verify_command,
    write_private_key,
)
from controller.ctl.operate.file_kinds import hint_for
from controller.ctl.operate.plan_queries import query_findings
from controller.ctl.terminal import (
    ENV_ACTOR,
    ENV_KEY,
    ENV_KEY_ID,
    env_url,
    os_reason,
    print_json,
    warn,
)
from controller.ctl.usage import UsageError
from controller.settings import KafkaSettings, Settings, load_settings

# -- steering: sign, send, await the decision -------------------------------------------


def steer(args: argparse.Namespace) -> int:
    """An action command: sign it, send it, wait for the decision (unless --no-wait)."""
    command = command_from_args(args)
    if args.no_wait:
        settings, kafka = broker_of(args)
        topic = settings.topics.commands
        value, key = encode_command(command), command.flag.encode()
        asyncio.run(send_command(value, key=key, kafka=kafka, topic=topic, timeout_s=args.timeout))
        return _report_sent(args, command)
    answered = send_signed(args, command)
    if answered is None:
        sent = (
            f"sent {command.action.value} {command.flag} (id {command.id}), but no decision "
            f"came within {args.timeout:g}s"
        )
        reason = diagnosis.not_ready_reason(env_url(None))
        why = "is the controller running?"
        if reason is not None:
            why = f"the controller is up but not ready: {reason};"
        warn(f"{sent}: {why} `rolloutctl watch` shows the decision when it comes")
        return EXIT_NO_DECISION
    return shown(args, answered)


def shown(args: argparse.Namespace, answered: steering.Answered) -> int:
    """The decision a sent command got, printed (as published with ``--json``); its exit."""
    if args.json:
        print_json(answered.published)
    else:
        print(views.outcome_line(answered.decision))
    return EXIT_REJECTED if answered.decision.outcome == "rejected" else 0


def audience_test(args: argparse.Namespace) -> int:
    """``rolloutctl audience test``."""
    from controller.ctl.operate import audience  # noqa: PLC0415

    return audience.test(args)


def segment(args: argparse.Namespace) -> int:
    """``rolloutctl segment put|delete|list|show``."""
    from controller.ctl.operate import segments  # noqa: PLC0415

    if args.verb == "list":
        return segments.listing(args)
    if args.verb == "show":
        return segments.show(args)
    key_id = key_id_of(args.key_id)
    private_key = read_private_key(key_path_of(args.key, key_id))
    action, rule, ids = "delete", None, None
    if args.verb == "put":
        if (args.rule is None) == (args.ids_file is None):
            raise UsageError("segment put takes --rule TEXT or --ids-file FILE, one of them")
        action, rule = "put", args.rule
        ids = segments.read_ids(args.ids_file) if args.ids_file else None
    unsigned = segments.commands_for(
        args.name,
        actor=actor_of(args.actor),
        key_id=key_id,
        reason=args.reason,
        action=action,
        rule=rule,
        ids=ids,
    )
    commands = [signing.sign_command(command, private_key) for command in unsigned]
    settings, kafka = broker_of(args)
    return segments.change(args, commands, kafka=kafka, topics=settings.topics)


def _report_sent(args: argparse.Namespace, command: Command) -> int:
    action, flag = command.action.value, command.flag
    if args.json:
        print_json({"id": command.id, "action": action, "flag": flag})
    else:
        print(f"sent: {action} {flag} (id {command.id})")
    return 0


def broker_of(args: argparse.Namespace) -> tuple[Settings, KafkaSettings]:
    settings = load_settings(args.config)
    kafka = settings.kafka
    if args.bootstrap:
        kafka = kafka.model_copy(update={"bootstrap_servers": args.bootstrap})
    return settings, kafka


def command_from_args(args: argparse.Namespace) -> Command:
    """The signed command the arguments describe."""
    key_id = key_id_of(args.key_id)
    return signed_model(
        args.action,
        args.flag,
        private_key=read_private_key(key_path_of(args.key, key_id)),
        key_id=key_id,
        actor=actor_of(args.actor),
        reason=args.reason,
        plan=_plan(args.action, getattr(args, "plan", None)),
        to_end=getattr(args, "to_end", False),
        at=getattr(args, "at", None),
        environment=getattr(args, "environment", None),
    )


def key_id_of(given: str | None) -> str:
    """The operator key's id: ``--key-id``, else the environment's."""
    key_id = given or os.environ.get(ENV_KEY_ID)
    if not key_id:
        raise UsageError(f"no key id: pass --key-id or set {ENV_KEY_ID}")
    return key_id


def key_path_of(given: Path | None, key_id: str) -> Path:
    if given is not None:
        return given
    if env := os.environ.get(ENV_KEY):
        return Path(env).expanduser()
    if KEY_ID_PATTERN.match(key_id):
        return default_key_dir() / f"{key_id}.key"
    raise UsageError(f"no key file: pass --key or set {ENV_KEY}")


def actor_of(given: str | None) -> str:
    if given:
        return given
    if env := os.environ.get(ENV_ACTOR):
        return env
    try:
        return getpass.getuser()
    except (OSError, KeyError) as exc:
        raise UsageError(f"no actor: pass --actor or set {ENV_ACTOR}") from exc


def _plan(action: str, path: Path | None) -> Plan | None:
    if action != CommandAction.START:
        if path is not None:
            raise UsageError(f"--plan goes with start, not {action}")
        return None
    if path is None:
        warn("no --plan given; using the default plan (1% -> 5% -> 25% -> 50% -> 100%)")
        return DEFAULT_PLAN
    plan = _read_plan(path)
    findings = lint(plan, datetime.now(UTC))
    if wrong := errors(findings):
        # The controller refuses it too; saying so here spares a signed command.
        raise ConfigError(f"plan {path} cannot work: " + "; ".join(map(str, wrong)))
    for finding in findings:
        warn(f"plan {path}: {finding}")
    return plan


def _read_plan(path: Path) -> Plan:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read plan {path}: {os_reason(exc)}") from exc
    return load_plan(text, source=f"plan {path}", name=path.name)


# -- plans, keys, raw commands ----------------------------------------------------------------


def validate_plans(args: argparse.Namespace) -> int:
    """Parse and lint each plan file; print its stages and findings, or every error.

    Exit 78 if any file does not parse or has a finding of severity error
    (a plan that cannot work); warnings are printed and leave the exit at 0.
    """
    failed = 0
    assumed = plan_power.traffic_of(args)
    for path in args.files:
        try:
            plan = _read_plan(path)
        except ConfigError as exc:
            failed += 1
            hint = hint_for(path, "plan")
            _plan_result(args, path, error=f"{hint}" if hint else str(exc))
            continue
        power = None if assumed is None else plan_power.previews(plan, assumed)
        findings = lint(plan, datetime.now(UTC)) + query_findings(plan, args)
        findings += plan_power.max_findings(power or [], args)
        findings.sort(key=lambda f: f.severity != "error")
        failed += bool(errors(findings))
        _plan_result(args, path, plan=plan, findings=findings, power=_power(power, assumed))
    return EXIT_CONFIG if failed else 0


@dataclass(frozen=True, slots=True)
class _Power:
    """A plan's power preview and the traffic it is for."""

    stages: list[StagePreview]
    assumed: plan_power.Assumed


def _power(stages: list[StagePreview] | None, assumed: plan_power.Assumed | None) -> _Power | None:
    return None if stages is None or assumed is None else _Power(stages, assumed)


def _plan_result(
    args: argparse.Namespace,
    path: Path,
    *,
    plan: Plan | None = None,
    error: str = "",
    findings: list[Finding] | None = None,
    power: _Power | None = None,
) -> None:
    findings = findings or []
    wrong = errors(findings)
    if args.json:
        error = error or "; ".join(map(str, wrong))
        print_json(
            {
                "file": str(path),
                "valid": plan is not None and not wrong,
                "error": error or None,
                "findings": [f.as_dict() for f in findings],
                "plan": None if plan is None else plan.model_dump(mode="json"),
                "power": None
                if power is None
                else plan_power.as_json(power.stages, power.assumed, plan),
            }
        )
        return
    if plan is None:
        print(f"{path}: invalid: {error}")
        return
    ladder = " -> ".join(f"{s.percent:g}%" for s in plan.stages)
    guardrails = ", ".join(g.key for g in plan.guardrails) or "none"
    said = f"invalid: plan {plan.name!r} cannot work" if wrong else f"valid plan {plan.name!r}"
    print(f"{path}: {said}: {ladder}; guardrails: {guardrails}")
    for finding in findings:
        print(f"  {finding}")
    if power is not None:
        print(f"  smallest regression detected with 80% power, {power.assumed.line(plan)}:")
        for line in [
            *map(plan_power.stage_line, power.stages),
            *plan_power.new_failure_lines(power.stages),
            *plan_power.limit_lines(plan, power.assumed),
        ]:
            print(f"    {line}")


def keygen(args: argparse.Namespace) -> int:
    key_id, out = args.key_id, args.out or default_key_dir()
    if not KEY_ID_PATTERN.match(key_id):
        raise UsageError(f"key id {key_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    path = out / f"{key_id}.key"
    key, public = signing.generate_key()
    write_private_key(path, key, force=args.force)
    warn(f"wrote the private key to {path} (mode 0600); keep it secret")
    print(f"public key: {public}")
    print(
        "\nadd to the controller config (YAML), then reload its keys with "
        "`kill -HUP <controller pid>` (no restart):\n"
    )
    print(config_snippet(key_id, public), end="")
    return 0


def produce(args: argparse.Namespace, command: SignedCommand | Mapping[str, object]) -> int:
    """Send a signed ``command`` without waiting; print its id. A model is sent as
    :func:`~controller.core.wire.sent_object` gives it, a JSON object (``send --file``) as
    it is: each the object its signature covers."""
    sent = sent_object(command) if isinstance(command, SignedCommand) else command
    settings, kafka = broker_of(args)
    topic = args.topic or settings.topics.commands
    value, key = encode_command(sent), str(sent["flag"]).encode()
    partition, offset = asyncio.run(
        send_command(value, key=key, kafka=kafka, topic=topic, timeout_s=args.timeout)
    )
    warn(f"sent {sent['action']} {sent['flag']} to {topic}[{partition}]@{offset}")
    print(sent["id"])
    return 0


def verify(args: argparse.Namespace) -> int:
    try:
        signing.load_public_key(args.public_key)
    except ValueError as exc:
        raise UsageError(f"--public-key: {exc}") from exc
    try:
        command = orjson.loads(sys.stdin.read())
    except orjson.JSONDecodeError:
        command = None
    if not isinstance(command, dict):
        print("invalid: stdin does not hold a JSON object")
        return EXIT_FAILURE
    problem = verify_command(command, args.public_key)
    print("valid" if problem is None else f"invalid: {problem}")
    return 0 if problem is None else EXIT_FAILURE


def send_signed(
    args: argparse.Namespace,
    command: SignedCommand | Mapping[str, object],
    *,
    key: bytes | None = None,
    topic: str | None = None,
) -> steering.Answered | None:
    """Send a signed command and wait for its decision; None when none came in time.

    A model is sent as :func:`~controller.core.wire.sent_object` gives it, the object its
    signature covers; a JSON object (``send --file``) as it is. It is encoded once, here.
    ``key`` is the record's key for a command about no flag (the flag's otherwise);
    ``topic``: where it goes (``send --topic``), else the configured commands topic.
    """
    sent = sent_object(command) if isinstance(command, SignedCommand) else command
    value = encode_command(sent)
    record_key = key if key is not None else str(sent["flag"]).encode()
    settings, kafka = broker_of(args)
    topic = topic or settings.topics.commands

    async def send() -> tuple[int, int]:
        return await send_command(
            value, key=record_key, kafka=kafka, topic=topic, timeout_s=args.timeout
        )

    return asyncio.run(
        steering.send_and_await(
            str(sent["id"]),
            send=send,
            kafka=kafka,
            decisions=settings.topics.decisions,
            timeout_s=args.timeout,
        )
    )
