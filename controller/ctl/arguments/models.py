"""The arguments of the commands that ask the model: which model, and by when.

``plan draft`` and ``rule draft`` name a model (``--config``, ``--model-url``, ``--model``);
they and ``report --narrative`` answer within ``--deadline`` of the command's start, and
ask a model known to be too small only with ``--allow-small-model``
(:mod:`controller.ctl.asking` keeps the deadline).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_DEADLINE = 30.0
"""Seconds from a command's start within which it answers, with the model or without it."""
DEFAULT_TIMEOUT = 120.0
"""How long ``rule draft`` waits for the model (``--timeout``)."""
SMALL_MODEL_MAX_BILLIONS = 1.0
"""The size, in billions of parameters, below which a model is known to be too small: the
core's figure as the help says it (a test keeps the two in step)."""


def seconds(text: str) -> float:
    """A deadline given on the command line: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a deadline is a positive number of seconds")
    return value


def add_deadline_arguments(
    sub: argparse.ArgumentParser, *names: str, without: str, scope: str = ""
) -> None:
    """``--deadline`` (also named ``names``) and ``--allow-small-model``: ``without`` says what
    the command prints when the model is not asked or does not answer in time, ``scope`` when
    the options apply."""
    sub.add_argument(
        "--deadline",
        *names,
        dest="deadline",
        type=seconds,
        default=DEFAULT_DEADLINE,
        metavar="SECONDS",
        help=f"{scope}answer within this many seconds of the command's start "
        f"({DEFAULT_DEADLINE:g}): the model gets what is left, and past it {without}, saying "
        "why in one line on stderr",
    )
    sub.add_argument(
        "--allow-small-model",
        action="store_true",
        help=f"{scope}ask the model even when it is known to be too small for the task (below "
        f"{SMALL_MODEL_MAX_BILLIONS:g} B parameters, as its name or the server's model list "
        f"says, e.g. the bundled SmolLM2-135M); otherwise it is not asked: {without} at once, "
        "saying why on stderr",
    )


def add_model_arguments(sub: argparse.ArgumentParser, *, timeout: bool = True) -> None:
    """Which model a draft asks (``plan draft``'s and ``rule draft``'s) and, with ``timeout``,
    how long it may take (``rule draft``'s ``--timeout``)."""
    sub.add_argument(
        "--config", type=Path, metavar="FILE", help="controller settings YAML (its llm section)"
    )
    sub.add_argument("--model-url", metavar="URL", help="model server up to /v1, overrides config")
    sub.add_argument("--model", metavar="NAME", help="model name, overrides config")
    if not timeout:
        return
    sub.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="how long the model may take to answer (120)",
    )
