"""The one retry policy: a bounded settings group, one back-off factory, no literal delays."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.core.common.errors import StoreUnavailable
from controller.kit.backoff import DEFAULT_RETRY, retry_backoff
from controller.process.retrying import Retry
from controller.settings import RetrySettings, load_settings

ROOT = Path(__file__).resolve().parents[3]


def test_the_defaults_are_a_tenth_of_a_second_doubling_to_five() -> None:
    assert (DEFAULT_RETRY.initial_seconds, DEFAULT_RETRY.max_seconds) == (0.1, 5.0)


@pytest.mark.parametrize(
    "fields",
    [
        {"initial_seconds": 0},
        {"initial_seconds": 61},
        {"max_seconds": 0},
        {"max_seconds": 601},
        {"initial_seconds": 2.0, "max_seconds": 1.0},
    ],
)
def test_the_policy_is_bounded(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        RetrySettings(**fields)


def test_the_environment_sets_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RC_RETRY__MAX_SECONDS", "0.5")
    assert load_settings().retry == RetrySettings(max_seconds=0.5)


async def test_the_backoff_doubles_from_the_first_delay_up_to_the_longest() -> None:
    backoff = retry_backoff(
        asyncio.Event(), RetrySettings(initial_seconds=0.001, max_seconds=0.003)
    )
    delays = []
    for _ in range(4):
        delays.append(backoff.delay)
        assert not await backoff.wait()
    assert delays == [0.001, 0.002, 0.003, 0.003]
    backoff.reset()
    assert backoff.delay == 0.001


async def test_retry_tries_again_until_the_call_succeeds() -> None:
    failures = [StoreUnavailable("down"), StoreUnavailable("still down")]
    outages: list[str] = []

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    retry = Retry(asyncio.Event(), RetrySettings(initial_seconds=0.001, max_seconds=0.001))
    assert await retry(call, "flush", on_outage=lambda: outages.append("out")) == "ok"
    assert (failures, outages) == ([], ["out"])


async def test_retry_gives_up_when_stopping_is_asked() -> None:
    stopping = asyncio.Event()

    async def call() -> str:
        stopping.set()
        raise StoreUnavailable("down")

    assert await Retry(stopping)(call, "flush") is None


def test_only_the_factory_builds_a_backoff() -> None:
    """Delays come from the retry policy: no module builds ``Backoff(...)`` with its own."""
    builders = []
    for path in sorted((ROOT / "controller").rglob("*.py")):
        if path == ROOT / "controller" / "kit" / "backoff.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
                name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                if name == "Backoff":
                    builders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert builders == []
