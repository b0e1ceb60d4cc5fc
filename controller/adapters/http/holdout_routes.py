"""``GET /holdouts/{name}``: a holdout against everyone else, per flag and over every flag
together (:func:`controller.core.holdouts.holdout_report`), as ``rolloutctl report --holdout``
shows it. Query: ``environment`` (the default one when absent) and ``alpha`` (the report's
false-regression rate, 0.05 when absent). The operator's read: it wants the webhook token
wherever one is set, as ``/rollouts`` does."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from controller.adapters.http.read_routes import error, same
from controller.core.common import ENVIRONMENT_PATTERN
from controller.core.holdouts import DEFAULT_ALPHA, HoldoutReport
from controller.core.trust import bearer
from controller.core.wire import HOLDOUT_NAME_PATTERN

HoldoutSource = Callable[[str, str | None, float], Awaitable[HoldoutReport | None]]


class HoldoutRoutes:
    """The holdout report route over ``report`` (None where no rollout names the holdout)."""

    def __init__(self, report: HoldoutSource, *, token: str | None) -> None:
        self._report, self._token = report, token

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/holdouts/{name}", self._one)

    async def _one(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization")
        if self._token is not None and not same(bearer(given) or "", self._token):
            return error(401, "the operator token is required (Authorization: Bearer)")
        name = request.match_info["name"]
        if not re.fullmatch(HOLDOUT_NAME_PATTERN, name):
            return error(400, "a holdout's name is lower case letters, digits, '.', '_' and '-'")
        environment = request.query.get("environment")
        if environment is not None and not re.fullmatch(ENVIRONMENT_PATTERN, environment):
            return error(400, f"{environment[:40]!r} is no environment name")
        alpha = _alpha(request.query.get("alpha"))
        if alpha is None:
            return error(400, "alpha is a number above 0 and below 0.5")
        found = await self._report(name, environment, alpha)
        if found is None:
            where = f" in {environment}" if environment else ""
            return error(404, f"no rollout{where} names holdout {name!r}")
        body = orjson.dumps(found.model_dump(mode="json"))
        return web.Response(body=body, content_type="application/json")


def _alpha(text: str | None) -> float | None:
    if text is None:
        return DEFAULT_ALPHA
    try:
        value = float(text[:32])
    except ValueError:
        return None
    return value if math.isfinite(value) and 0.0 < value < 0.5 else None
