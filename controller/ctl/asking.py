"""Asking the model from a command someone waits for: ``plan draft``, ``report --narrative``.

A person waits at the terminal, so such a command bounds its wait for the model:

* a model known to be too small for the task (below
  :data:`~controller.core.reading.advisor_text.SMALL_MODEL_MAX_BILLIONS` billion parameters, as
  its name says, ``smollm2-135m-instruct``, or when the name states no size as
  the server's model list does, llama.cpp's ``n_params``) is not asked: the
  command says so at once and prints what it prints without a model;
  ``--allow-small-model`` asks it anyway;
* the command has one deadline (``--deadline``, :data:`DEFAULT_DEADLINE` s,
  counted from its start): the model is given what is left of it, and past it
  the command prints what it prints without a model and says why.

The exchange is :func:`controller.adapters.llm.constrained_completion`'s,
bounded in size as ever; the deadline, not the advisor's ``llm.timeout_seconds``
and ``llm.budget_seconds``, bounds it in time (their bound is set just past
the deadline, so that the deadline is what ends it, and says so).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

from controller.adapters.llm import constrained_completion
from controller.adapters.llm_models import served_billions
from controller.core.reading import SMALL_MODEL_MAX_BILLIONS, model_billions
from controller.core.rollouts import Unavailable, untrusted
from controller.ctl.arguments import DEFAULT_DEADLINE
from controller.settings import LlmSettings

LIST_SECONDS = 2.0
"""The most a look at the server's model list (for the model's size) may take."""
MAX_START_SECONDS = 600.0
"""A process older than this when it starts its work is not timed from its start."""
FINISH_SECONDS = 0.5
"""Kept back from the model for what follows it: reading its reply, printing, exiting."""
PAST_DEADLINE = 1.0
"""How far past the deadline the exchange's own bound is set, so the deadline ends it first."""


@dataclass(frozen=True, slots=True)
class TooSmall:
    """The model was not asked: ``cause`` says how small it is (safe to print)."""

    cause: str


@dataclass(frozen=True, slots=True)
class Asking:
    """The model a command asks, its deadline from ``started`` (monotonic), and whether a
    model too small for the task is asked anyway."""

    llm: LlmSettings
    seconds: float = DEFAULT_DEADLINE
    allow_small: bool = False
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        """Seconds left before the deadline (negative past it)."""
        return self.seconds - (time.monotonic() - self.started)

    def late(self, *, asked: bool = True) -> str:
        """Why there is no answer once the deadline has passed (``asked``: with the model asked)."""
        what = "no answer within" if asked else "not asked: no time left of"
        return f"{what} the {self.seconds:g} s deadline (--deadline SECONDS to change it)"


def process_started() -> float:
    """When this process started, on :func:`time.monotonic`'s clock; now where unknown.

    ``rolloutctl`` counts its deadline from here, so that it holds for the
    command as a person times it, Python's start-up included. Read from Linux's
    ``/proc`` (the start in clock ticks since boot, and the time since boot).
    """
    now = time.monotonic()
    try:
        with open("/proc/self/stat", encoding="ascii") as stat, open("/proc/uptime") as up:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
            age = float(up.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - age if 0 <= age < MAX_START_SECONDS else now


def command_started(*, whole_process: bool) -> float:
    """When the command started: its process's start when the process is the command's
    own (``rolloutctl`` run from a shell), else now (a caller's process running it)."""
    return process_started() if whole_process else time.monotonic()


async def size_problem(asking: Asking, task: str) -> str | None:
    """Why the model is not asked to ``task`` (it is too small), or None to ask it."""
    if asking.allow_small:
        return None
    model = asking.llm.model
    size, source = model_billions(model), "its name says"
    if size is None:
        listing = max(0.1, min(LIST_SECONDS, asking.left()))
        size, source = await served_billions(asking.llm, seconds=listing), "its server lists"
    if size is None or size >= SMALL_MODEL_MAX_BILLIONS:
        return None
    return (
        f"the model {untrusted(model, 100)} is too small to {task} ({source} {size:.3g} B "
        f"parameters, below {SMALL_MODEL_MAX_BILLIONS:g} B), so it was not asked; "
        "--allow-small-model asks it anyway"
    )


async def ask(
    asking: Asking,
    task: str,
    messages: list[dict[str, str]],
    schema: dict[str, Any],
    *,
    name: str,
) -> str | Unavailable | TooSmall:
    """The model's reply to ``task`` within the deadline; or why there is none."""
    small = await size_problem(asking, task)
    if small is not None:
        return TooSmall(small)
    left = asking.left() - FINISH_SECONDS
    if left <= 0:
        return Unavailable(asking.late(asked=False))
    bound = left + PAST_DEADLINE  # the exchange's own bound, past the deadline: not the first
    llm = asking.llm.model_copy(update={"budget_seconds": bound, "timeout_seconds": bound})
    try:
        async with asyncio.timeout(left):
            return await constrained_completion(llm, messages, schema, name=name)
    except TimeoutError:
        return Unavailable(asking.late())
