"""``rolloutctl``: the operator's command line.

Steer rollouts (``start``, ``pause``, ``resume``, ``promote``, ``rollback``,
``abort``, ``kill``, ``approve``): each signs a command with the operator's
key, produces it to the commands topic and waits for the controller's
decision, printing the reason when it is rejected. Look at them (``status``,
``watch``, ``report``), check a plan (``plan validate``) or have the model draft one for
review (``plan draft``), forward alerts to Slack
(``alerts``), export what the controller published as CloudEvents (``audit
export``), manage segments (``segment``), ask which arm a context gets
(``audience test``), have the model draft a rule (``rule draft``), make and
revoke the API keys of apps (``app-key``), start a flag's release pipeline and see it
(``pipeline``), keep desired state in files (``validate``, ``diff`` and ``apply
-f DIR``: :mod:`controller.ctl.gitops`), and manage keys and raw commands
(``keygen``, ``sign``, ``send``, ``verify``).

Each command's arguments are in :mod:`controller.ctl.arguments`, which loads none of the
core; its work is imported when it runs, so ``--help`` answers at once.

Exit codes: 0 done (or applied), 1 failure (broker or controller unreachable,
invalid signature; ``diff`` and ``apply``: something differs or was held), 2 usage,
3 the controller rejected the command, 4 no decision within ``--timeout`` (the
command was sent and may still apply), 5 ``diff`` could not read the controller,
78 bad configuration, plan or key.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from controller import __version__
from controller.ctl import completion
from controller.ctl.arguments import (
    agent,
    alerts,
    audit,
    gitops,
    ingest,
    looking,
    pipelines,
    plans,
    reports,
    steering,
    targeting,
)
from controller.ctl.terminal import (
    ENV_ACTOR,
    ENV_KEY,
    ENV_KEY_ID,
    ENV_URL,
    PROG,
    run_guarded,
)

Handler = Callable[[argparse.Namespace], int]


class Runner(Protocol):
    """Runs a command: imports its work, then calls it."""

    def __call__(self, args: argparse.Namespace, *, whole_process: bool) -> int: ...


def build_parser() -> argparse.ArgumentParser:
    """Every command's arguments (:mod:`controller.ctl.arguments`): none of their work."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate rollouts: steer them with signed commands, watch what the "
        "controller decides, check plans, forward alerts, and keep plans, rollouts, "
        "pipelines, segments and app keys in files (validate, diff, apply -f DIR).",
        epilog=f"Defaults come from {ENV_ACTOR}, {ENV_KEY}, {ENV_KEY_ID} and {ENV_URL}. "
        "Exit codes: 0 ok, 1 failure (diff: something differs), 2 usage, 3 rejected by the "
        "controller, 4 no decision in time, 5 diff could not read the controller, "
        "78 bad configuration, plan or key.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    steering.add_actions(commands)
    looking.add_status(commands)
    looking.add_watch(commands)
    reports.add_report(commands)
    plans.add_plan(commands)
    targeting.add_rule(commands)
    alerts.add_alerts(commands)
    audit.add_audit(commands)
    targeting.add_segment(commands)
    targeting.add_audience(commands)
    steering.add_keygen(commands)
    targeting.add_app_key(commands)
    ingest.add_ingest(commands)
    pipelines.add_pipeline(commands)
    agent.add_mcp(commands)
    gitops.add_parsers(commands)
    gitops.add_restore(commands)
    steering.add_raw(commands)
    completion.add_parser(commands)
    return parser


# -- running --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    # aiokafka logs each failed connection attempt; the one-line error says it.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    # The command's own process (no argv given) times its deadlines from the process's start.
    whole = argv is None
    # Parsing is guarded too: `rolloutctl --help | head -1` must end quietly.
    code = run_guarded(lambda: _dispatch(build_parser().parse_args(argv), whole_process=whole))
    if whole:
        # The process ends now: the collector's last pass over every imported module's
        # objects frees nothing the exit does not, and takes a second or more on a busy
        # machine, past a deadline that had been kept.
        gc.freeze()
    return code


def _dispatch(args: argparse.Namespace, *, whole_process: bool = False) -> int:
    """Run the parsed command. Its work is imported by its runner, a wing at a time, never
    when the parser is built: ``--help`` and completion load none of it."""
    drafting = args.command == "plan" and args.plan_command == "draft"
    runner = _draft if drafting else _RUNNERS.get(args.command, _operate)
    return runner(args, whole_process=whole_process)


def _completion(args: argparse.Namespace, *, whole_process: bool) -> int:
    print(completion.script(args.shell, build_parser()), end="")
    return 0


def _status(args: argparse.Namespace, *, whole_process: bool) -> int:
    if whole_process:
        # Status reads one bounded answer, prints it and ends: the collector's passes over
        # the models its work defines as it loads (a tenth of its start) free nothing.
        gc.disable()
    from controller.ctl.looking import status  # noqa: PLC0415 - the work, now

    return status.status(args)


def _alerts(args: argparse.Namespace, *, whole_process: bool) -> int:
    from controller.ctl.alerts import alerts as forwarding  # noqa: PLC0415 - the work, now

    return forwarding.run(args)


def _mcp(args: argparse.Namespace, *, whole_process: bool) -> int:
    from controller.ctl.agent import serving  # noqa: PLC0415 - the work, now

    return serving.run(args)


def _operate(args: argparse.Namespace, *, whole_process: bool) -> int:
    from controller.ctl.operate import (  # noqa: PLC0415 - the work, now
        app_keys,
        handlers,
        ingest,
        pipelines,
        proposals,
        reads,
    )

    if args.command in steering.ACTIONS:
        return handlers.steer(args)
    handler: dict[str, Handler] = {
        "watch": reads.watch,
        "plan": handlers.validate_plans,
        "keygen": handlers.keygen,
        "sign": proposals.run,
        "send": proposals.run,
        "verify": handlers.verify,
        "ingest": ingest.run,
        "pipeline": pipelines.run,
        "segment": handlers.segment,
        "audience": handlers.audience_test,
        "app-key": app_keys.run,
    }
    return handler[args.command](args)


def _report(args: argparse.Namespace, *, whole_process: bool) -> int:
    from controller.ctl.report import audit_export, reporting  # noqa: PLC0415 - the work, now

    if args.command == "audit":
        return audit_export.run(args)
    return reporting.run(args, whole_process=whole_process)


def _draft(args: argparse.Namespace, *, whole_process: bool) -> int:
    from controller.ctl.drafting import drafting, rings, rules  # noqa: PLC0415 - the work, now

    if args.command == "plan":
        return drafting.run(args, whole_process=whole_process)
    return rings.run(args) if args.rings else rules.run(args)


def _gitops(args: argparse.Namespace, *, whole_process: bool) -> int:
    from controller.ctl.gitops import restore, running  # noqa: PLC0415 - the work, now

    run: dict[str, Handler] = {
        "validate": running.validate,
        "diff": running.diff,
        "apply": running.apply,
        "restore": restore.run,
    }
    return run[args.command](args)


_RUNNERS: dict[str, Runner] = {
    "completion": _completion,
    "status": _status,
    "report": _report,
    "audit": _report,
    "rule": _draft,
    "validate": _gitops,
    "diff": _gitops,
    "apply": _gitops,
    "restore": _gitops,
    "alerts": _alerts,
    "mcp": _mcp,
}
"""The commands not run by :func:`_operate`, each by the runner that loads its wing."""


if __name__ == "__main__":
    sys.exit(main())
