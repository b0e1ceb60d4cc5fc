"""``rolloutctl pipeline``: start a flag's release pipeline, and see where it stands.

``pipeline start FLAG --pipeline FILE`` signs a ``pipeline`` command carrying
the pipeline (YAML: environments in order, their plans, overrides and gates),
sends it and waits for the controller's decision: the first environment's
start, or the refusal naming the field. ``pipeline status FLAG`` reads
``GET /pipelines/{flag}``: each environment's state, what gates the next step,
and who still has to approve. A step's approval is ``rolloutctl approve FLAG
--environment ENV`` (docs/rollouts.md, "Release pipelines").
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from pydantic import ValidationError

from controller.core.common import ConfigError, load_document
from controller.core.reading import PipelineRun, pipeline_text
from controller.core.release import Pipeline, PipelineCommand
from controller.core.rollouts import errors, lint
from controller.core.trust import signing
from controller.core.wire import JsonObject, summarize
from controller.ctl.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_NO_DECISION, EXIT_REJECTED
from controller.ctl.looking import diagnosis, views
from controller.ctl.operate.commands import contract_model, new_message, read_private_key
from controller.ctl.operate.file_kinds import hint_for
from controller.ctl.operate.handlers import actor_of, key_id_of, key_path_of, send_signed
from controller.ctl.terminal import env_url, print_json, warn


def run(args: argparse.Namespace) -> int:
    if args.pipeline_command == "validate":
        return validate(args)
    return _status(args) if args.pipeline_command == "status" else _start(args)


def validate(args: argparse.Namespace) -> int:
    """Check each pipeline file offline; exit 78 when any is invalid."""
    failed = 0
    for path in args.files:
        try:
            pipeline = read_pipeline(path)
        except ConfigError as exc:
            failed += 1
            _validated(args, path, error=hint_for(path, "pipeline") or str(exc))
            continue
        _validated(args, path, pipeline=pipeline)
    return EXIT_CONFIG if failed else 0


def read_pipeline(path: Path) -> Pipeline:
    """The pipeline in ``path``, each step's plan able to work; :class:`ConfigError` naming
    the field otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    data = load_document(text, source=str(path), name=path.name)
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid pipeline {path}: {summarize(exc)}") from exc
    now = datetime.now(UTC)
    wrong = [
        f"steps.{i}: plan {pipeline.plan_name(env)!r}: {finding}"
        for i, env in enumerate(pipeline.environments)
        for finding in errors(lint(pipeline.plan_for(env), now))
    ]
    if wrong:
        raise ConfigError(f"pipeline {path} cannot work: " + "; ".join(wrong))
    return pipeline


def _validated(
    args: argparse.Namespace, path: Path, *, pipeline: Pipeline | None = None, error: str = ""
) -> None:
    if args.json:
        shown = None if pipeline is None else pipeline.model_dump(mode="json")
        print_json(
            {"file": str(path), "valid": pipeline is not None}
            | {"error": error or None}
            | {"pipeline": shown}
        )
    elif pipeline is None:
        print(f"{path}: invalid: {error}")
    else:
        steps = " -> ".join(pipeline.environments)
        print(f"{path}: valid pipeline {pipeline.name!r}: {steps}")


def _start(args: argparse.Namespace) -> int:
    command = _signed(args)
    answered = send_signed(args, command)
    if answered is None:
        warn(f"sent pipeline start {args.flag} (command {command.id}), but no decision came")
        return EXIT_NO_DECISION
    decision = answered.decision
    if args.json:
        print_json(answered.published)
    else:
        print(
            views.outcome_line(decision, what=f"pipeline start {args.flag}", result=decision.reason)
        )
    return 0 if decision.outcome == "applied" else EXIT_REJECTED


def command_of(
    flag: str,
    pipeline: JsonObject,
    *,
    actor: str,
    key_id: str,
    reason: str = "",
    applied: str | None = None,
) -> PipelineCommand:
    """An unsigned pipeline command, as the contract's model; ``applied``: the desired
    rollout's digest (``rolloutctl apply``)."""
    fields: JsonObject = {"type": "pipeline", **new_message(), "action": "start", "flag": flag}
    fields |= {"pipeline": pipeline, "actor": actor, "reason": reason, "key_id": key_id}
    if applied is not None:
        fields["applied"] = applied
    return contract_model(PipelineCommand, fields)


def _signed(args: argparse.Namespace) -> PipelineCommand:
    key_id = key_id_of(args.key_id)
    try:
        text = args.pipeline.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {args.pipeline}: {exc.strerror}") from exc
    data = load_document(text, source=str(args.pipeline), name=args.pipeline.name)
    if not isinstance(data, dict):
        raise ConfigError(f"{args.pipeline}: a pipeline is a mapping")
    command = command_of(
        args.flag, data, actor=actor_of(args.actor), key_id=key_id, reason=args.reason
    )
    return signing.sign_command(command, read_private_key(key_path_of(args.key, key_id)))


def _status(args: argparse.Namespace) -> int:
    base, path = env_url(args.url), f"/pipelines/{quote(args.flag, safe='')}"
    answer = diagnosis.fetch(base, path, timeout_s=10)
    if answer.status == 404:
        warn(f"no pipeline run for flag {args.flag!r}")
        return EXIT_FAILURE
    if answer.status != 200:
        raise diagnosis.refused(base, path, answer)
    run = diagnosis.read_answer(PipelineRun, answer, base + path, "pipeline run")
    if args.json:
        print_json(run.model_dump(mode="json"))
    else:
        print(status_text(run))
    return 0


def status_text(run: PipelineRun) -> str:
    """The run as lines (:func:`controller.core.reading.pipeline_text`)."""
    return pipeline_text(run)
