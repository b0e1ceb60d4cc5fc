"""``GET /pipelines/{flag}``: the operator's token, a flag's own key, 404 without a run."""

from __future__ import annotations

from aiohttp import web

from controller.adapters.http.pipeline_routes import PipelineRoutes
from controller.core.reading import PipelineRun
from tests.support.app_client import app_client
from tests.unit.ctl.test_pipeline_cli import VIEW

TOKEN = "t0ken"


async def test_the_pipeline_read_wants_the_token_and_a_flags_own_key() -> None:
    asked: list[str] = []

    async def status(flag: str) -> PipelineRun | None:
        asked.append(flag)
        return PipelineRun.model_validate(VIEW) if flag == "checkout" else None

    app = web.Application()
    PipelineRoutes(status, token=TOKEN).add_to(app.router)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with app_client(app) as http:
        assert (await http.get("/pipelines/checkout")).status_code == 401
        found = await http.get("/pipelines/checkout", headers=bearer)
        assert (found.status_code, found.json()) == (200, VIEW)
        assert (await http.get("/pipelines/search", headers=bearer)).status_code == 404
        for bad in ("checkout@staging", "%3Cb%3E", "x" * 129):
            refused = await http.get(f"/pipelines/{bad}", headers=bearer)
            assert refused.status_code == 400
            assert refused.json()["error"].startswith("flag: ")
    assert asked == ["checkout", "search"]  # nothing else reached the store
