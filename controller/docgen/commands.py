"""The command-line page: the ``--help`` of every command, from the parsers themselves."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from controller import cli
from controller.ctl import app
from controller.docgen.markdown import page

WIDTH = 100  # the help as an 100-column terminal shows it, whatever runs the generator

INTRO = (
    "The `--help` of `rolloutctl` (operators: steer, read, draft) and of `rollout-controller` "
    "(the daemon and its tooling), and of each of their commands, as the programs print it."
)


def commands_page() -> str:
    body: list[str] = []
    for parser in (app.build_parser(), cli.build_parser()):
        for name, command in walk(parser):
            body += [f"## `{name}`", "", "```text", help_text(command).rstrip(), "```", ""]
    return page("Command line", INTRO, body)


def walk(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser, then each of its commands and theirs, depth first, by their ``prog``."""
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for command in action.choices.values():
                if id(command) not in seen:  # an alias names the same parser again
                    seen.add(id(command))
                    yield from walk(command)


def help_text(parser: argparse.ArgumentParser) -> str:
    """``--help`` at a fixed width, so the page does not depend on the terminal."""
    original = parser.formatter_class

    def fixed_width(prog: str) -> argparse.HelpFormatter:
        return original(prog, width=WIDTH)  # type: ignore[call-arg]

    parser.formatter_class = fixed_width
    try:
        return parser.format_help()
    finally:
        parser.formatter_class = original
