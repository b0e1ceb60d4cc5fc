"""``GET /pipelines/{flag}``: a flag's newest release pipeline run, as ``rolloutctl pipeline
status`` shows it (each environment's state, what gates the next step, who still has to
approve: :func:`controller.core.reading.pipeline_view`). The operator's read: it wants the
webhook token wherever one is set, as ``/rollouts`` does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from controller.adapters.http.read_routes import error, same
from controller.core.reading import PipelineRun, flag_problem
from controller.core.trust import bearer

PipelineStatus = Callable[[str], Awaitable[PipelineRun | None]]


class PipelineRoutes:
    """The pipeline status route over ``status`` (None when the flag has no run)."""

    def __init__(self, status: PipelineStatus, *, token: str | None) -> None:
        self._status, self._token = status, token

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/pipelines/{flag}", self._one)

    async def _one(self, request: web.Request) -> web.Response:
        given = bearer(request.headers.get("Authorization")) or ""
        if self._token is not None and not same(given, self._token):
            return error(401, "the operator token is required (Authorization: Bearer)")
        flag = request.match_info["flag"]
        if (problem := flag_problem(flag)) is not None:
            return error(400, problem)
        found = await self._status(flag)
        if found is None:
            return error(404, f"no pipeline run for flag {flag!r}")
        body = orjson.dumps(found.model_dump(mode="json"))
        return web.Response(body=body, content_type="application/json")
