"""``GET /holdouts/{name}``: a holdout against everyone else, per flag and over every flag
together (:func:`controller.core.holdouts.holdout_report`), as ``rolloutctl report --holdout``
shows it. Query: ``environment`` (the default one when absent), ``alpha`` (the report's
false-regression rate, 0.05 when absent) and ``since`` (only the rollouts started then or
later). The operator's read: it wants the webhook token wherever one is set, as
``/rollouts`` does."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Literal

import orjson
from aiohttp import web

from controller.adapters.http.read_routes import error, same
from controller.core.common import ENVIRONMENT_PATTERN
from controller.core.holdouts import DEFAULT_ALPHA, MIN_ALPHA, HoldoutReport
from controller.core.trust import bearer
from controller.core.wire import HOLDOUT_NAME_PATTERN

HoldoutSource = Callable[[str, str | None, float, datetime | None], Awaitable[HoldoutReport | None]]


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
        asked = _asked(name, request.query)
        if isinstance(asked, str):
            return error(400, asked)
        found = await self._report(name, *asked)
        if found is None:
            where = f" in {asked[0]}" if asked[0] else ""
            return error(404, f"no rollout{where} names holdout {name!r}")
        body = orjson.dumps(found.model_dump(mode="json"))
        return web.Response(body=body, content_type="application/json")


def _asked(name: str, query: Mapping[str, str]) -> tuple[str | None, float, datetime | None] | str:
    """The environment, alpha and since asked for; or why the request is malformed."""
    if not re.fullmatch(HOLDOUT_NAME_PATTERN, name):
        return "a holdout's name is lower case letters, digits, '.', '_' and '-'"
    environment = query.get("environment")
    if environment is not None and not re.fullmatch(ENVIRONMENT_PATTERN, environment):
        return f"{environment[:40]!r} is no environment name"
    alpha = _alpha(query.get("alpha"))
    if alpha is None:
        return "alpha is a number from 0.000001 to below 0.5"
    since = _since(query.get("since"))
    if since is False:
        return "since is an RFC 3339 time with an offset (2026-10-01T00:00:00Z)"
    return environment, alpha, since


def _alpha(text: str | None) -> float | None:
    if text is None:
        return DEFAULT_ALPHA
    try:
        value = float(text[:32])
    except ValueError:
        return None
    return value if math.isfinite(value) and MIN_ALPHA <= value < 0.5 else None


def _since(text: str | None) -> datetime | Literal[False] | None:
    """The instant asked for, None when none was, False when it is no instant with an offset."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text[:64])
        return False if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # not an instant, or one past year 1 or 9999 in UTC
        return False
