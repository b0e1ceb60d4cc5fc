"""Prerequisites served alike, in process: the one evaluation, OFREP's answers, the SDK's book
and its OpenFeature provider agree over generated flag graphs with chains of depth 3."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from aiohttp import web
from openfeature.evaluation_context import EvaluationContext

from controller.adapters.ofrep.routes import OfrepRoutes
from controller.core.reading.views import FlagStates, FlagStateView
from controller.core.release import Environments
from controller.core.wire import FlagState, FlagStatus, Prerequisite, evaluate
from controller.sdk.flags import FlagBook
from controller.sdk.openfeature import RolloutProvider
from tests.support.app_client import app_client
from tests.support.prerequisite_graphs import graph

ENVIRONMENTS = Environments(names=("production",), default="production")


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
