"""Prerequisites served alike through OpenFeature's published OFREP providers.

Generated flag graphs (``tests/support/prerequisite_graphs.py``: chains of
depth 3, unknown parents, killed, paused, rolled back and inactive parents)
are written to real Redis as rollouts whose plans require other flags; the
daemon's HTTP server answers OFREP from the store over real sockets. Python's
``openfeature-provider-ofrep`` and Node's ``@openfeature/ofrep-provider``
(server) ask for each flag and unit, the web provider
(``@openfeature/ofrep-web-provider``, on Node) for every flag of a unit at
once; each answer's variant and reason must be what the one evaluation
(``controller.core.wire.evaluate``) gives over the states the server serves.

Python's provider turns a reason it does not know into an error
(``docs/clients.md``, *Prerequisites*): where a prerequisite is not met it
answers the caller's default with reason ``ERROR`` and ``GENERAL``, and that
is what is asserted of it.

    python -m pytest -s tests/integration/ofrep/test_ofrep_prerequisite_providers.py  # counts
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

from controller.adapters.redis.client import connect
from controller.core.reading.views import FlagStateView
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.wire import FlagStatus, evaluate
from controller.settings import RedisSettings
from tests.support.clients.ofrep import flag_rollout, ofrep_server, store
from tests.support.prerequisite_graphs import GHOST, graph

pytestmark = [pytest.mark.integration]

SCRIPT = Path(__file__).resolve().parents[2] / "node" / "ofrep_prerequisites.mjs"
SEEDS = range(10)
PYTHON_UNITS, SERVER_UNITS, WEB_UNITS = 20, 30, 40
"""Units each provider evaluates every flag for (10 graphs of 12 flags: 120 flags)."""
PHASES = {
    FlagStatus.ROLLING_OUT: Phase.RUNNING,
    FlagStatus.PAUSED: Phase.PAUSED,
    FlagStatus.COMPLETED: Phase.COMPLETED,
    FlagStatus.ROLLED_BACK: Phase.ROLLED_BACK,
    FlagStatus.KILLED: Phase.KILLED,
    FlagStatus.INACTIVE: Phase.ABORTED,
}
PYTHON_UNMET = (None, "ERROR", "GENERAL")
"""What Python's provider answers where a prerequisite is not met (see the module's docstring)."""

Answer = tuple[str | None, str | None, str | None]
"""An answer's variant, reason and error code."""


def stored(view: FlagStateView) -> Rollout:
    """The rollout whose state is ``view``'s status and prerequisites (a running or paused
    rollout serves at least 1%: a stage cannot serve 0%)."""
    return flag_rollout(
        view.flag,
        view.percent or 1.0,
        phase=PHASES[view.status],
        version=view.version,
        requires=view.requires,
    )


@pytest.fixture
async def served(
    redis_url: str, redis_namespace: str
) -> AsyncIterator[tuple[str, list[FlagStateView]]]:
    """The OFREP server over the stored graphs, and the graphs as generated."""
    generated = [view for seed in SEEDS for view in graph(seed, prefix=f"g{seed}.f")]
    async with connect(RedisSettings(url=redis_url)) as client:
        states = await store(client, redis_namespace, [stored(view) for view in generated])
        async with ofrep_server(states) as base:
            yield base, generated


async def served_states(base: str, generated: list[FlagStateView]) -> dict[str, FlagStateView]:
    """The states ``GET /flags`` serves, by flag: the generated graphs, each flag's status
    and prerequisites as generated."""
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{base}/flags", timeout=30)
    held = {view.flag: view for view in map(FlagStateView.model_validate, answer.json())}
    shape = {v.flag: (v.status, v.requires) for v in generated}
    assert {flag: (v.status, v.requires) for flag, v in held.items()} == shape
    return held


def the_graphs_cover_every_kind_of_parent(held: dict[str, FlagStateView]) -> None:
    for seed in SEEDS:  # f3 requires f2 requires f1 requires f0
        chain = [f"g{seed}.f{i}" for i in range(4)]
        needs = [{p.flag for p in held[flag].requires or ()} for flag in chain[1:]]
        assert all(below in n for below, n in zip(chain, needs, strict=False)), chain
    parents = {p.flag for view in held.values() for p in view.requires or ()}
    kinds = {held[p].status if p in held else GHOST for p in parents}
    assert {GHOST, FlagStatus.KILLED, FlagStatus.PAUSED, FlagStatus.ROLLED_BACK} <= kinds, kinds


def python_answers(base: str, flags: list[str]) -> dict[str, list[Answer]]:
    """Python's published provider, through OpenFeature's client: each unit's answers."""
    api.set_provider(OFREPProvider(base, timeout=30), "prerequisites")
    client = api.get_client("prerequisites")
    out: dict[str, list[Answer]] = {}
    try:
        for i in range(PYTHON_UNITS):
            unit = f"python-{i}"
            got = [client.get_boolean_details(f, False, EvaluationContext(unit)) for f in flags]
            failed = {
                (d.value, d.error_message, len(d.flag_metadata)) for d in got if not d.variant
            }
            assert failed <= {(False, "'PREREQUISITE_FAILED'", 0)}  # the caller's default, bare
            out[unit] = [(d.variant, d.reason, d.error_code) for d in got]
    finally:
        api.clear_providers()
    return out


def node_answers(node: str, js_client: Path, base: str, flags: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(SCRIPT), base, str(SERVER_UNITS), str(WEB_UNITS), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env={"OFREP_JS_HOME": str(js_client), "PATH": str(Path(node).parent)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers


async def test_the_published_providers_serve_what_the_evaluation_does_over_generated_graphs(
    served: tuple[str, list[FlagStateView]], node: str, js_client: Path
) -> None:
    base, generated = served
    held = await served_states(base, generated)
    the_graphs_cover_every_kind_of_parent(held)
    flags = sorted(held)
    started = time.monotonic()
    python, from_node = await asyncio.gather(
        asyncio.to_thread(python_answers, base, flags),
        asyncio.to_thread(node_answers, node, js_client, base, flags),
    )
    took = time.monotonic() - started
    by_provider = {"python": python, "node server": from_node["server"], "web": from_node["web"]}
    units = {"python": PYTHON_UNITS, "node server": SERVER_UNITS, "web": WEB_UNITS}

    counts: Counter[str] = Counter()
    disagreements = []
    for provider, answered in by_provider.items():
        assert len(answered) == units[provider], (provider, sorted(answered)[:5])
        for unit, answers in answered.items():
            for flag, got in zip(flags, answers, strict=True):
                core = evaluate(flag, held[flag], unit, states=held)
                expected: Answer = (core.variant, core.reason.value, None)
                unmet = core.reason.value == "PREREQUISITE_FAILED"
                if unmet and provider == "python":
                    expected = PYTHON_UNMET
                counts[provider] += 1
                counts["unmet"] += unmet
                if tuple(got) != expected:
                    disagreements.append((provider, flag, unit, tuple(got), expected))
    evaluations = sum(counts[p] for p in by_provider)
    print(
        f"\n{evaluations} evaluations ({', '.join(f'{p} {counts[p]}' for p in by_provider)}),"
        f" {counts['unmet']} with a prerequisite not met, {len(disagreements)} disagreements,"
        f" {took:.1f} s"
    )
    assert not disagreements, (len(disagreements), disagreements[:10])
    assert evaluations >= 10_000
    assert 0.05 < counts["unmet"] / evaluations < 0.9  # the prerequisites decide a good share
