"""The command line answers at once: building the parser loads none of any command's work.

``rolloutctl --help``, a command's ``--help`` and ``completion`` go through the arguments
(:mod:`controller.ctl.arguments`) alone: no pydantic model of the core, no client library.
``status`` loads what reading the controller's HTTP API takes (the standard library's HTTP
client, not httpx), not the broker client, the signing or the report. Each is run in a fresh
interpreter, which then names every module it loaded. The values the arguments write out for
the core (its actions, risk levels, audit types) are checked against the core's own.
"""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import orjson
import pytest

from controller.core.common import ENVIRONMENT_PATTERN
from controller.core.drafting import RISKS
from controller.core.reading import DEFAULT_EFFECT, SMALL_MODEL_MAX_BILLIONS
from controller.core.trust import AuditType
from controller.core.wire import CommandAction
from controller.ctl.arguments import audit, looking, models, plans, reports, steering

HEAVY = (
    "controller.core",
    "controller.adapters",
    "controller.settings",
    "controller.kit",
    "pydantic",
    "httpx",
    "aiokafka",
    "redis",
    "aiohttp",
    "cryptography",
    "structlog",
    "rich",
    "yaml",
    "msgspec",
)
"""What building the parser must not load: the core's models and every client library."""

PROBE = """
import sys, orjson
from controller.ctl.app import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
sys.stderr.write(orjson.dumps({"code": code, "modules": sorted(sys.modules)}).decode())
"""


def loaded_by(*argv: str) -> tuple[object, list[str]]:
    """The exit code of ``rolloutctl ARGV`` in a fresh interpreter, and every module it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True
    )
    seen = orjson.loads(done.stderr.splitlines()[-1])
    return seen["code"], seen["modules"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["status", "--help"],
        ["start", "--help"],
        ["audit", "check", "--help"],
        ["plan", "validate", "--help"],
        ["completion", "bash"],
    ],
    ids=" ".join,
)
def test_the_parser_loads_no_command_s_work(argv: list[str]) -> None:
    # When rolloutctl answers without running a command
    code, modules = loaded_by(*argv)

    # Then it answered, having loaded nothing heavy
    assert code in {0, None}
    heavy = [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == [], f"{' '.join(argv)} loaded {heavy[:12]}"


def test_a_command_still_loads_its_work() -> None:
    # When a command runs (a plan file that does not exist: the work reads it and fails)
    code, modules = loaded_by("plan", "validate", "/nonexistent/plan.yaml")

    # Then its work was loaded, and its error told with the usual exit code
    assert code == 78
    assert "controller.ctl.operate.handlers" in modules


def test_status_loads_no_client_library_signing_or_report() -> None:
    # When status asks a controller that does not answer
    code, modules = loaded_by("status", "my-flag", "--url", "http://127.0.0.1:9")

    # Then it failed as it says it does, having loaded its work and only that
    assert code == 1
    assert "controller.ctl.looking.status" in modules
    not_status = (
        "aiokafka",
        "redis",
        "httpx",
        "asyncio",
        "structlog",
        "controller.settings",
        "controller.core.machine",
        "controller.core.trust",
        "cryptography",
        "controller.ctl.operate",
        "controller.ctl.report",
    )
    assert [m for m in not_status if m in modules] == []


def test_status_s_own_process_leaves_the_collector_off_and_a_caller_s_on() -> None:
    # When status runs as its own process, and when a caller runs it in theirs
    probe = """
import gc, sys
from controller.ctl.app import main
sys.argv = ["rolloutctl", "status", "f", "--url", "http://127.0.0.1:9"]
main()
own = gc.isenabled()
gc.enable()
main(sys.argv[1:])
sys.stderr.write(f"{own} {gc.isenabled()}")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)

    # Then the collector ran no pass over what its work loaded; the caller's stays on
    assert done.stderr.splitlines()[-1] == "False True"


def test_the_arguments_name_what_the_core_names() -> None:
    assert list(steering.ACTIONS) == [a.value for a in CommandAction]
    assert f"{DEFAULT_EFFECT:.0%}" == looking.DEFAULT_EFFECT
    assert plans.RISKS == RISKS
    assert get_args(AuditType) == audit.AUDIT_TYPES
    assert reports.ENVIRONMENT_PATTERN == ENVIRONMENT_PATTERN
    assert models.SMALL_MODEL_MAX_BILLIONS == SMALL_MODEL_MAX_BILLIONS
