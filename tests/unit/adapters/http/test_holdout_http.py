"""``GET /holdouts/{name}``: the operator's token, a holdout's name, an environment, alpha."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiohttp import web

from controller.adapters.http.holdout_routes import HoldoutRoutes
from controller.core.holdouts import HoldoutReport, holdout_report
from controller.core.wire import Holdout
from tests.support.app_client import app_client

TOKEN = "t0ken"
SINCE = datetime(2026, 10, 1, tzinfo=UTC)
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("path", "status", "asked"),
    [
        ("/holdouts/q4", 200, ("q4", None, 0.05, None)),
        ("/holdouts/q4?environment=staging&alpha=0.01", 200, ("q4", "staging", 0.01, None)),
        ("/holdouts/q4?since=2026-10-01T02:00:00%2B02:00", 200, ("q4", None, 0.05, SINCE)),
        ("/holdouts/other", 404, ("other", None, 0.05, None)),
        ("/holdouts/q4?since=2026-10-01", 400, None),
        ("/holdouts/q4?since=yesterday", 400, None),
        ("/holdouts/q4?since=0001-01-01T00:00:00%2B05:00", 400, None),
        ("/holdouts/Q4", 400, None),
        ("/holdouts/%3Cb%3E", 400, None),
        ("/holdouts/q4?environment=Prod%20uction", 400, None),
        ("/holdouts/q4?alpha=0.5", 400, None),
        ("/holdouts/q4?alpha=nan", 400, None),
        ("/holdouts/q4?alpha=-0.1", 400, None),
        ("/holdouts/q4?alpha=5e-324", 400, None),
        ("/holdouts/q4?alpha=lots", 400, None),
    ],
)
async def test_the_holdout_read_checks_what_it_is_asked_before_reading(
    path: str, status: int, asked: tuple[str, str | None, float, datetime | None] | None
) -> None:
    seen: list[tuple[str, str | None, float, datetime | None]] = []

    async def report(
        name: str, environment: str | None, alpha: float, since: datetime | None
    ) -> HoldoutReport | None:
        seen.append((name, environment, alpha, since))
        if name != "q4":
            return None
        return holdout_report(Holdout(name="q4", percent=2), [], alpha=alpha)

    app = web.Application()
    HoldoutRoutes(report, token=TOKEN).add_to(app.router)
    async with app_client(app) as http:
        assert (await http.get(path)).status_code == 401  # the token first, always
        answer = await http.get(path, headers=BEARER)
    assert answer.status_code == status, answer.text
    assert seen == ([asked] if asked else [])
    if status == 200:
        assert HoldoutReport.model_validate(answer.json()).holdout == "q4"
    else:
        assert answer.json()["error"]
