"""Prerequisites served alike, in process: the one evaluation, OFREP's answers, the SDK's book
and its OpenFeature provider agree over generated flag graphs with chains of depth 3."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from aiohttp import web
from openfeature.evaluation_context import EvaluationContext

from controller.adapters.ofrep.routes import OfrepRoutes
from controller.core.reading.views import FlagStates, FlagStateView
from controller.core.release import Environments
from controller.core.wire import FlagState, FlagStatus, Prerequisite, evaluate
from controller.core.wire.prerequisites import Variant
from controller.sdk.flags import FlagBook
from controller.sdk.openfeature import RolloutProvider
from tests.support.app_client import app_client

ENVIRONMENTS = Environments(names=("production",), default="production")
STATUSES = [FlagStatus.ROLLING_OUT] * 6 + [
    FlagStatus.COMPLETED,
    FlagStatus.PAUSED,
    FlagStatus.KILLED,
    FlagStatus.ROLLED_BACK,
    FlagStatus.INACTIVE,
]


def graph(seed: int, flags: int = 12) -> list[FlagStateView]:
    """``flags`` flag states, each requiring up to 3 earlier flags (so no cycle), the first
    four a chain of depth 3, and now and then an unknown parent."""
    rng = random.Random(seed)
    views = []
    for i in range(flags):
        parents = [f"f{i - 1}"] if 0 < i < 4 else rng.sample(range(i), k=min(i, rng.randint(0, 3)))
        named = [p if isinstance(p, str) else f"f{p}" for p in parents]
        if rng.random() < 0.05:
            named.append("ghost")
        variants: list[list[Variant]] = [["treatment"], ["control"], ["treatment", "control"]]
        views.append(
            FlagStateView(
                flag=f"f{i}",
                version=rng.randint(1, 50),
                status=rng.choice(STATUSES),
                percent=rng.choice([0.0, 10.0, 50.0, 90.0, 100.0]),
                salt=f"salt{i}",
                rollout_id=f"r{i}",
                stage=0,
                requires=[
                    Prerequisite(flag=p, variants=rng.choice(variants)) for p in named
                ] or None,
            )
        )  # fmt: skip
    return views


@asynccontextmanager
async def served(views: list[FlagStateView]) -> AsyncIterator[httpx.AsyncClient]:
    async def states() -> FlagStates:
        return FlagStates(views)

    app = web.Application()
    OfrepRoutes(states, body_timeout_seconds=5, environments=ENVIRONMENTS).add_to(app.router)
    async with app_client(app) as client:
        yield client


class _Source:
    """The provider's source over a book: what ``Flags`` gives it, without a transport."""

    def __init__(self, book: FlagBook) -> None:
        self.book, self.loaded = book, True

    def state(self, flag: str) -> FlagState | None:
        return self.book.state(flag)

    def on_change(self, listener: object) -> None:
        pass


async def test_every_evaluator_serves_the_same_over_generated_graphs() -> None:
    evaluations, disagreements, failed = 0, [], 0
    for seed in range(10):
        views = graph(seed)
        held = {v.flag: v for v in views}
        book = FlagBook(
            FlagState.model_validate({"type": "flag_state", "v": 1, "id": v.flag, "ts": 1,
                                      **v.served()})
            for v in views
        )  # fmt: skip
        provider = RolloutProvider(_Source(book), exposures="off", traces=False)  # type: ignore[arg-type]
        async with served(views) as client:
            for u in range(90):
                unit = f"u{seed}-{u}"
                body = {"context": {"targetingKey": unit}}
                answered = (await client.post("/ofrep/v1/evaluate/flags", json=body)).json()
                over_ofrep = {f["key"]: (f["variant"], f["reason"]) for f in answered["flags"]}
                for flag, state in held.items():
                    core = evaluate(flag, state, unit, states=held)
                    sdk = book.evaluate(flag, unit)
                    resolved = provider.resolve_string_details(
                        flag, "none", EvaluationContext(unit)
                    )
                    answers = {
                        (core.variant, core.reason.value),
                        (sdk.variant, sdk.reason.value),
                        over_ofrep[flag],
                        (resolved.variant, getattr(resolved.reason, "value", resolved.reason)),
                    }
                    evaluations += 1
                    failed += core.reason.value == "PREREQUISITE_FAILED"
                    if len(answers) != 1:
                        disagreements.append((seed, flag, unit, answers))
    assert disagreements == []
    assert evaluations >= 10_000
    assert 0.05 < failed / evaluations < 0.9  # the prerequisites decide a good share of them


async def test_an_unmet_prerequisite_over_ofrep_is_control_and_no_exposure() -> None:
    parent = FlagStateView(
        flag="parent", version=3, status=FlagStatus.KILLED, percent=100.0, salt="s",
        rollout_id="r1", stage=0,
    )  # fmt: skip
    child = FlagStateView(
        flag="child", version=5, status=FlagStatus.COMPLETED, percent=100.0, salt="s",
        rollout_id="r2", stage=4, requires=[Prerequisite(flag="parent", variants=["control"])],
    )  # fmt: skip
    async with served([parent, child]) as client:
        body = {"context": {"targetingKey": "u1"}}
        one = (await client.post("/ofrep/v1/evaluate/flags/child", json=body)).json()
    assert (one["variant"], one["value"], one["reason"]) == (
        "control",
        False,
        "PREREQUISITE_FAILED",
    )
    assert one["metadata"]["flag_version"] == 0
    assert "rollout_id" not in one["metadata"]
