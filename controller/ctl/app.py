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
(``keygen``, ``sign``, ``send``, ``verify``). The audience and app-key
subcommands' arguments are in :mod:`controller.ctl.operate.targeting_args`.

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
from collections.abc import Sequence
from pathlib import Path

from controller import __version__
from controller.core.reading import DEFAULT_EFFECT
from controller.core.wire import CommandAction
from controller.ctl import command_args, completion
from controller.ctl.agent import serving
from controller.ctl.operate import ingest, pipelines, plan_power, plan_queries, targeting_args
from controller.ctl.options import add_url, broker_options, output_options
from controller.ctl.terminal import (
    ENV_ACTOR,
    ENV_KEY,
    ENV_KEY_ID,
    ENV_URL,
    PROG,
    run_guarded,
)

Subparsers = argparse._SubParsersAction


def build_parser() -> argparse.ArgumentParser:
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
    for action in CommandAction:
        command_args.add_action(commands, action)
    _add_status(commands)
    _add_watch(commands)
    _add_report(commands)
    _add_plan(commands)
    targeting_args.add_rule(commands)
    _add_alerts(commands)
    _add_audit(commands)
    targeting_args.add_segment(commands)
    targeting_args.add_audience(commands)
    command_args.add_keygen(commands)
    targeting_args.add_app_key(commands)
    ingest.add_parser(commands)
    pipelines.add_parser(commands)
    serving.add_parser(commands)
    from controller.ctl.gitops import arguments as gitops_arguments  # noqa: PLC0415

    gitops_arguments.add_parsers(commands)
    gitops_arguments.add_restore(commands)
    command_args.add_raw(commands)
    completion.add_parser(commands)
    return parser


# -- parsers --------------------------------------------------------------------------------


def _add_status(commands: Subparsers[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "status",
        parents=[output_options()],
        help="show every rollout, or one in detail",
        description="Ask the controller's HTTP API for each rollout's phase, stage, percent, "
        "time in stage, per-arm counts and the gate's current view (guardrail bounds, SRM). "
        "With FLAG, show that rollout in detail, with the smallest regression its running "
        "stage detects with 80% power by its minimum and how much longer it needs for --effect.",
    )
    sub.add_argument("flag", nargs="?", metavar="FLAG", help="one flag, in detail")
    sub.add_argument(
        "--effect",
        metavar="SHARE",
        default=f"{DEFAULT_EFFECT:.0%}",
        help="with FLAG: the regression the running stage's remaining time is given for"
        " (default %(default)s)",
    )
    add_url(sub)


def _add_watch(commands: Subparsers[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "watch",
        parents=[broker_options(), output_options()],
        help="follow decisions and alerts live",
        description="Print each decision and alert the controller publishes, as it happens, "
        "until Ctrl-C (or --max / --for).",
    )
    sub.add_argument("flag", nargs="?", metavar="FLAG", help="only this flag")
    sub.add_argument("--from-beginning", action="store_true", help="replay what is on the topics")
    sub.add_argument("--max", type=int, metavar="N", help="stop after N messages")
    sub.add_argument("--for", dest="seconds", type=float, metavar="SECONDS", help="stop after this")


def _add_report(commands: Subparsers[argparse.ArgumentParser]) -> None:
    from controller.ctl.report import reporting  # noqa: PLC0415 - keep `--help` fast

    sub = commands.add_parser(
        "report",
        help="write a canary report of a rollout, or a holdout's report (Markdown, HTML or JSON)",
        description="Report FLAG's current rollout: each stage's duration, units and events "
        "per arm, each guardrail's result and the sample-ratio check, as the gate decided "
        "them, and every decision with who made it. Reads the controller's HTTP API and the "
        "decisions topic. Markdown goes to stdout; --html FILE writes one page that loads "
        "nothing from anywhere.",
    )
    reporting.add_arguments(sub)


def _add_plan(commands: Subparsers[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser("plan", help="work with rollout plans")
    verbs = plan.add_subparsers(dest="plan_command", required=True, metavar="VERB")
    validate = verbs.add_parser(
        "validate",
        parents=[output_options()],
        help="check plan files",
        description="Parse each plan as the controller would; print its stages, or the "
        "errors naming each offending field (exit 78). With --traffic or --from-flag, also "
        "print the smallest regression each stage detects with 80% power.",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    plan_queries.add_arguments(validate)
    plan_power.add_arguments(validate)
    from controller.ctl.drafting import drafting  # noqa: PLC0415 - keep `--help` fast

    draft = verbs.add_parser(
        "draft",
        help="have the configured model draft a plan, for review",
        description="Ask the configured model (the llm settings: config file, LLM_BASE_URL) "
        "for a plan for the change, validate it and print it as commented YAML. Without a "
        "model, when it is known to be too small to draft a plan (below 1 B parameters: it "
        "is not asked), when it gives no plan within --deadline (30 s), or when its plan is "
        "invalid or unsafe, print the built-in template for the risk level and say why in "
        "one line on stderr. Nothing is started.",
    )
    drafting.add_arguments(draft)


def _add_alerts(commands: Subparsers[argparse.ArgumentParser]) -> None:
    from controller.ctl.alerts import alerts as forwarding  # noqa: PLC0415 - keep `--help` fast

    sub = commands.add_parser(
        "alerts",
        help="forward alerts to a Slack-compatible webhook",
        description="Consume the alerts topic and post each alert to a Slack-compatible "
        "incoming webhook, retrying while it is down. Delivered alert ids are kept in a "
        "state file, so a restart or a republished alert does not post twice (the one "
        "exception: a crash between the receiver's answer and that file's write).",
    )
    forwarding.add_arguments(sub)


def _add_audit(commands: Subparsers[argparse.ArgumentParser]) -> None:
    from controller.ctl.report import audit_export  # noqa: PLC0415 - keep `--help` fast

    audit_export.add_parser(commands)


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
    from controller.ctl.operate import (  # noqa: PLC0415 - keep `--help` fast
        handlers,
        proposals,
        reads,
    )

    if args.command in {a.value for a in CommandAction}:
        return handlers.steer(args)
    if args.command == "alerts":
        from controller.ctl.alerts import alerts as forwarding  # noqa: PLC0415

        return forwarding.run(args)
    if args.command == "app-key":
        from controller.ctl.operate import app_keys  # noqa: PLC0415

        return app_keys.run(args)
    if args.command == "report":
        from controller.ctl.report import reporting  # noqa: PLC0415

        return reporting.run(args, whole_process=whole_process)
    if args.command == "plan" and args.plan_command == "draft":
        from controller.ctl.drafting import drafting  # noqa: PLC0415

        return drafting.run(args, whole_process=whole_process)
    handler = {
        "status": reads.status,
        "watch": reads.watch,
        "plan": handlers.validate_plans,
        "keygen": handlers.keygen,
        "sign": proposals.run,
        "send": proposals.run,
        "verify": handlers.verify,
        "ingest": ingest.run,
        "pipeline": pipelines.run,
        "mcp": serving.run,
        "segment": handlers.segment,
        "audience": handlers.audience_test,
        "rule": _draft_rule,
        "completion": _print_completion,
        "audit": _audit_export,
        "validate": _gitops,
        "diff": _gitops,
        "apply": _gitops,
        "restore": _restore,
    }[args.command]
    return handler(args)


def _audit_export(args: argparse.Namespace) -> int:
    from controller.ctl.report import audit_export  # noqa: PLC0415 - keep `--help` fast

    return audit_export.run(args)


def _gitops(args: argparse.Namespace) -> int:
    from controller.ctl.gitops import running  # noqa: PLC0415 - keep `--help` fast

    run = {"validate": running.validate, "diff": running.diff, "apply": running.apply}
    return run[args.command](args)


def _restore(args: argparse.Namespace) -> int:
    from controller.ctl.gitops import restore  # noqa: PLC0415 - keep `--help` fast

    return restore.run(args)


def _print_completion(args: argparse.Namespace) -> int:
    print(completion.script(args.shell, build_parser()), end="")
    return 0


def _draft_rule(args: argparse.Namespace) -> int:
    if args.rings:
        from controller.ctl.drafting import rings as ring_drafting  # noqa: PLC0415 - keep `--help` fast

        return ring_drafting.run(args)
    from controller.ctl.drafting import rules as rule_drafting  # noqa: PLC0415 - keep `--help` fast

    return rule_drafting.run(args)


if __name__ == "__main__":
    sys.exit(main())
