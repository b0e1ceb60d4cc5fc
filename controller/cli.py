"""The ``rollout-controller`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from controller import __version__
from controller.core.common import ConfigError, ControllerError

EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG
EXIT_DRIFT = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollout-controller",
        description=(
            "Progressive delivery for feature flags: folds exposure and outcome events "
            "from Kafka into treatment/control aggregates in Redis, exactly once."
        ),
        epilog="Settings come from RC_<GROUP>__<FIELD> environment variables, "
        "KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and LLM_BASE_URL, over --config (YAML), over the "
        "defaults. See ops/controller.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_config_command(commands)
    _add_schemas(commands)
    _add_signing_key(commands)
    _add_demo(commands)
    _add_dev(commands)
    return parser


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run the daemon until SIGTERM",
        description="Run the controller: ingest events into Redis aggregates, gate the "
        "rollouts, apply signed commands and serve the HTTP API and console. SIGTERM or "
        "Ctrl-C drains and stops it (exit 0; 3 when the drain outlasted "
        "shutdown_grace_seconds); SIGHUP reloads the operator keys from --config.",
    )
    _add_config(run)
    # For tests of the whole daemon only: its clock is the wall clock plus the
    # offset in this file (controller/dev/clock.py).
    run.add_argument("--clock-file", type=Path, help=argparse.SUPPRESS)


def _add_config_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser(
        "config",
        help="inspect settings",
        description="Inspect the settings the daemon would run with.",
    )
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="VERB")
    show = config_commands.add_parser(
        "show",
        help="print the effective settings, secrets masked",
        description="Load the settings as `run` would (--config, then RC_* variables, "
        "KAFKA_BOOTSTRAP_SERVERS, REDIS_URL) and print them as JSON, secrets masked. "
        "Exit 78 when they are invalid, naming each offending setting (and each bad window "
        "in engine.windows_file).",
    )
    _add_config(show)


def _add_schemas(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schemas = commands.add_parser(
        "schemas",
        help="JSON Schema and AsyncAPI files of the contracts",
        description="The JSON Schema of every message on the topics and the AsyncAPI "
        "document that ties them to the topics, generated from the models.",
    )
    schema_commands = schemas.add_subparsers(dest="schemas_command", required=True, metavar="VERB")
    export = schema_commands.add_parser(
        "export",
        help="write the schema files",
        description="Write the schema files to --out and print each path; with --check, "
        "write nothing and exit 1 naming each file that differs from the models.",
    )
    export.add_argument("--out", type=Path, default=Path("schemas"), help="directory (schemas/)")
    export.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files differ"
    )


def _add_signing_key(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = commands.add_parser(
        "signing-key",
        help="make an Ed25519 key to sign flag states with; print its public key for apps",
    )
    key.add_argument("--key-id", default="controller", help="the key's id (default: controller)")
    key.add_argument(
        "--out", type=Path, help="write the private key to this new file (mode 600), not stdout"
    )


def _add_dev(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = commands.add_parser(
        "dev",
        help="keep the whole product running for your own flags: dev up, dev status, dev down, "
        "dev kafka-tool",
        description="`dev up` starts the embedded broker, Redis and model server and the "
        "controller in the background, makes an operator key and prints the `export` lines "
        'for rolloutctl, the app SDK and examples/app.py (eval "$(rollout-controller dev '
        'up)"); `dev down` stops them; `dev status` says which run. Config, key, logs and '
        "state live in --dir. `dev kafka-tool` runs Apache Kafka's own commands.",
    )
    verbs = dev.add_subparsers(dest="dev_command", required=True, metavar="VERB")
    up = verbs.add_parser(
        "up",
        help="start everything and print the exports (again, if it is up)",
        description="Start the broker, Redis, the model (unless --no-model) and the "
        "controller, leave them running and print the exports. Exit 0 once the controller "
        "is ready; 1 if something did not start (nothing is left running then).",
    )
    up.add_argument("--no-model", action="store_true", help="run without the model advisor")
    up.add_argument(
        "--broker",
        choices=("embedded", "kafka"),
        default="embedded",
        help="the embedded tansu broker (default, in memory), or Apache Kafka from "
        "`make kafka` (needs Java 17; a fresh node, its data in DIR/kafka)",
    )
    up.add_argument(
        "--port", type=int, metavar="PORT", help="the controller's HTTP port (8000 if free)"
    )
    down = verbs.add_parser("down", help="stop everything `dev up` started")
    status = verbs.add_parser("status", help="which processes run (exit 1 if any is gone)")
    _add_kafka_tool(verbs)
    for verb in (up, down, status):
        verb.add_argument(
            "--dir",
            type=Path,
            default=Path(".rollout-dev"),
            metavar="DIR",
            help="where the config, key, logs and state live (.rollout-dev)",
        )


def _add_kafka_tool(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tool = verbs.add_parser(
        "kafka-tool",
        help="run one of Apache Kafka's own commands (consumer-groups, delete-records, ...)",
        description="Run Apache Kafka's command NAME, as its bin/kafka-NAME.sh script would, "
        "from the jars `make kafka` installed (Java 17): consumer-groups, delete-records, "
        "dump-log, get-offsets, topics, console-consumer, console-producer, log-dirs, "
        "configs. NAME may be the script's own name (kafka-consumer-groups.sh). Every "
        "argument after NAME is the command's; `dev kafka-tool NAME --help` shows them.",
        epilog="Example: rollout-controller dev kafka-tool consumer-groups "
        "--bootstrap-server 127.0.0.1:9092 --describe --group rollout-controller. "
        "Exit code: the command's; 1 when Java or the jars are missing or NAME is unknown.",
    )
    tool.add_argument("tool", metavar="NAME", help="the command, e.g. consumer-groups")
    tool.add_argument("tool_args", nargs=argparse.REMAINDER, metavar="ARG")


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="the whole product on this machine: services, controller, rollouts, apps",
        description="Start an embedded Kafka-compatible broker, Redis and a small local model "
        "(or use KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and LLM_BASE_URL), run the controller, "
        "put a staff and a beta segment and start signed rollouts of a few flags in rings "
        "(staff, beta, Thailand 25%, everyone 50%, 100%) with stages of seconds, and serve "
        "them from simulated apps whose users carry a country, a plan and a user id. The "
        "first flag's treatment fails 4x as often and is rolled back inside its first ring; "
        "the others reach 100%. The model's advice "
        "is asked at every stage gate and shown (advisory mode: it never blocks).",
        epilog="Exit code 0 when every healthy flag completed and the faulty one was rolled "
        "back, 1 otherwise, 2 for bad options, 130 when interrupted. Another model server: "
        "set LLM_BASE_URL and RC_LLM__MODEL (the response format is detected).",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="hard cap on the whole run, start-up included (default: 300); the run ends as "
        "soon as every flag has finished, so the cap only stops a stuck one",
    )
    demo.add_argument(
        "--flags",
        type=int,
        default=2,
        metavar="N",
        help="how many flags, 1 to 5: the first one turns faulty, the others stay healthy "
        "(default: 2)",
    )
    demo.add_argument("--no-llm", action="store_true", help="run without the model advisor")
    demo.add_argument(
        "--plain",
        action="store_true",
        help="plain log lines instead of the live view (automatic when stdout is not a terminal)",
    )
    demo.add_argument(
        "--log",
        type=Path,
        metavar="FILE",
        help="decision log: every decision and alert, one JSON object per line "
        "(default: a new temporary file)",
    )


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML settings file (see ops/controller.yaml)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        handlers: dict[str, Callable[[], int]] = {
            "run": lambda: _run(args.config, args.clock_file),
            "config": lambda: _show_config(args.config),
            "demo": lambda: _demo(args),
            "dev": lambda: _dev(args),
            "signing-key": lambda: _signing_key(args.key_id, args.out),
        }
        handler = handlers.get(args.command, lambda: _schemas(args.out, check=args.check))
        return handler()
    except ConfigError as exc:
        print(f"rollout-controller: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ControllerError as exc:
        print(f"rollout-controller: {exc}", file=sys.stderr)
        return 1


def _run(config: Path | None, clock_file: Path | None = None) -> int:
    from controller.daemon.running import wiring  # noqa: PLC0415
    from controller.dev.clock import FileClock  # noqa: PLC0415
    from controller.process import favour_the_loop, logs  # noqa: PLC0415 - keep `--help` fast
    from controller.settings import load_settings  # noqa: PLC0415

    settings = load_settings(config)
    logs.configure(settings.log)
    favour_the_loop()
    clock = FileClock(clock_file) if clock_file is not None else None
    return asyncio.run(wiring.run(settings, reread=lambda: load_settings(config), clock=clock))


def _show_config(config: Path | None) -> int:
    from controller.daemon.rollouts import read_windows_file  # noqa: PLC0415
    from controller.settings import load_settings  # noqa: PLC0415

    settings = load_settings(config)
    read_windows_file(settings.engine.windows_file)  # a bad one is named, as `run` would
    print(json.dumps(settings.masked(), indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from controller.demo.options import DemoOptions  # noqa: PLC0415 - keep `--help` fast
    from controller.demo.run import run_demo  # noqa: PLC0415

    try:
        options = DemoOptions(
            duration=args.duration,
            flags=args.flags,
            llm=not args.no_llm,
            plain=args.plain,
            log=args.log,
        )
    except ValueError as exc:
        print(f"rollout-controller demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_demo(options)


def _signing_key(key_id: str, out: Path | None) -> int:
    """Print ``{"key_id", "public_key", "private_key"}`` (no private key with ``out``)."""
    from controller.core.trust import signing  # noqa: PLC0415

    key, public = signing.generate_key()
    printed = {"key_id": key_id, "public_key": public}
    private = signing.private_key_text(key)
    if out is None:
        printed["private_key"] = private
    else:
        try:  # a new file, readable by its owner only: never overwrites a key
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(private + "\n")
        except OSError as exc:
            raise ConfigError(f"cannot write the key to {out}: {exc}") from exc
        printed["private_key_file"] = str(out)
    print(json.dumps(printed, indent=2))
    return 0


def _dev(args: argparse.Namespace) -> int:
    from controller.demo import devstack  # noqa: PLC0415 - keep `--help` fast
    from controller.dev.processes import ServiceUnavailable  # noqa: PLC0415

    if args.dev_command == "down":
        return devstack.down(args.dir)
    if args.dev_command == "status":
        return devstack.status(args.dir)
    if args.dev_command == "kafka-tool":
        return _kafka_tool(args.tool, args.tool_args)
    options = devstack.DevOptions(
        directory=args.dir, model=not args.no_model, port=args.port, broker=args.broker
    )
    try:
        return devstack.up(options)
    except (ServiceUnavailable, RuntimeError, OSError) as exc:
        print(f"rollout-controller dev up: {exc}", file=sys.stderr)
        if isinstance(exc, ServiceUnavailable) and options.model:
            print("the model is optional: `rollout-controller dev up --no-model`", file=sys.stderr)
        return 1


def _kafka_tool(name: str, tool_args: list[str]) -> int:
    from controller.dev.kafka_tools import run_tool  # noqa: PLC0415 - keep `--help` fast
    from controller.dev.processes import ServiceUnavailable  # noqa: PLC0415

    try:
        return run_tool(name, tool_args).returncode
    except (ServiceUnavailable, ValueError) as exc:
        print(f"rollout-controller dev kafka-tool: {exc}", file=sys.stderr)
        return 1


def _schemas(out: Path, *, check: bool) -> int:
    from controller import contracts  # noqa: PLC0415

    if check:
        stale = contracts.drift(out)
        for name in stale:
            print(f"out of date: {out / name}", file=sys.stderr)
        if stale:
            print("run `rollout-controller schemas export` to regenerate", file=sys.stderr)
        return EXIT_DRIFT if stale else 0
    for path in contracts.export(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
