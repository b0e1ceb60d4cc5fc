"""Unleash's admin API: the flag backend that serves a rollout through ``flexibleRollout`` (#14).

One feature per rollout, in one project and environment. The controller owns
one strategy there: the ``flexibleRollout`` whose ``groupId`` is the feature
name (stable, so a unit keeps its bucket as the percent grows). Its
parameters are strings: ``rollout`` (the stage's whole percent),
``stickiness``, ``groupId``, and two of the controller's own, ``rcFlag`` and
``rcFlagVersion``, which the app's exposure helper reads so that each exposure
carries the flag version the SDK actually served. A ``PUT`` replaces a whole
strategy, so every write sends all of it.

Everything Unleash answers is bounded (``max_response_bytes``) and parsed
defensively: a reply that is not what the API documents reads as "no
strategy", which the sync then writes or reports, never a crash. Connection
failures, timeouts, 5xx, 429 and refused tokens are retriable
(:class:`BackendUnavailable`): the sync backs off and alerts once.
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import quote

import httpx
import orjson

from controller.core.errors import ControllerError
from controller.core.messages import FLAG_PARAMETER, VERSION_PARAMETER
from controller.core.serving import Serving, Target
from controller.settings import UnleashSettings

STRATEGY = "flexibleRollout"
_RETRIABLE_STATUSES = frozenset({401, 403, 408, 425, 429})


class BackendUnavailable(ControllerError):
    """Unleash did not answer, or answered that it cannot serve now; the cause is named."""

    retriable = True


class UnleashAdmin:
    """The admin API of one Unleash server; use it with ``async with``."""

    def __init__(
        self, settings: UnleashSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if settings.url is None:
            raise ControllerError("unleash.url is not set")
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._max_bytes = settings.max_response_bytes
        self._create = settings.create_features
        self._client = httpx.AsyncClient(
            base_url=settings.url.rstrip("/"),
            timeout=settings.request_timeout_seconds,
            headers={"Authorization": token, "Content-Type": "application/json"},
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    # -- the port ------------------------------------------------------------------

    async def read(self, target: Target) -> Serving:
        """What the feature's environment serves; ``exists=False`` if there is no feature."""
        status, body = await self._call("GET", _feature_path(target))
        if status == httpx.codes.NOT_FOUND:
            return Serving(enabled=False, exists=False)
        _check(status, "read the feature", body)
        return parse_feature(body, target)

    async def write(self, target: Target, want: Serving, actual: Serving, *, flag: str) -> None:
        """Make the environment serve ``want``; each call only does what ``actual`` lacks."""
        base = _feature_path(target)
        env = f"{base}/environments/{quote(target.environment, safe='')}"
        if not want.enabled:
            if actual.enabled:
                await self._post(f"{env}/off", None, "turn the environment off")
            return
        if not actual.exists:
            await self._create_feature(target)
        body = _strategy_body(target, want, flag)
        if actual.strategy_id is None:
            await self._post(f"{env}/strategies", body, "create the strategy")
        elif (actual.percent, actual.stickiness, actual.version) != (
            want.percent,
            want.stickiness,
            want.version,
        ):
            sid = quote(actual.strategy_id, safe="")
            status, answer = await self._call("PUT", f"{env}/strategies/{sid}", body)
            _check(status, "update the strategy", answer)
        if not actual.enabled:
            await self._post(f"{env}/on", None, "turn the environment on")

    # -- calls -----------------------------------------------------------------------

    async def _create_feature(self, target: Target) -> None:
        if not self._create:
            raise ControllerError(
                f"feature {target.feature} does not exist in project {target.project}"
                " and unleash.create_features is off"
            )
        path = f"/api/admin/projects/{quote(target.project, safe='')}/features"
        status, body = await self._call(
            "POST", path, {"name": target.feature, "type": "release", "impressionData": False}
        )
        if status != httpx.codes.CONFLICT:  # created meanwhile: as good
            _check(status, "create the feature", body)

    async def _post(self, path: str, body: dict[str, Any] | None, what: str) -> None:
        status, answer = await self._call("POST", path, body)
        _check(status, what, answer)

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """One request: the status and the JSON answer (None if empty or not JSON)."""
        content = orjson.dumps(body) if body is not None else None
        try:
            async with self._client.stream(method, path, content=content) as response:
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > self._max_bytes:
                        raise ControllerError(
                            f"Unleash answered {method} {path} with over {self._max_bytes} bytes"
                        )
                status = response.status_code
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"Unleash unreachable: {type(exc).__name__}: {exc}") from exc
        try:
            return status, orjson.loads(bytes(raw)) if raw else None
        except orjson.JSONDecodeError:
            return status, None


def _feature_path(target: Target) -> str:
    project, feature = quote(target.project, safe=""), quote(target.feature, safe="")
    return f"/api/admin/projects/{project}/features/{feature}"


def _strategy_body(target: Target, want: Serving, flag: str) -> dict[str, Any]:
    """The whole strategy (a PUT replaces it): every parameter a string."""
    return {
        "name": STRATEGY,
        "constraints": [],
        "parameters": {
            "rollout": str(want.percent),
            "stickiness": want.stickiness or target.stickiness,
            "groupId": target.feature,
            FLAG_PARAMETER: flag,
            VERSION_PARAMETER: str(want.version),
        },
    }


def _check(status: int, what: str, body: Any) -> None:
    if 200 <= status < 300:
        return
    message = body.get("message") if isinstance(body, dict) else None
    detail = f"Unleash refused to {what}: HTTP {status}" + (
        f" ({str(message)[:300]})" if message else ""
    )
    retriable = status >= 500 or status in _RETRIABLE_STATUSES
    raise BackendUnavailable(detail) if retriable else ControllerError(detail)


def parse_feature(body: Any, target: Target) -> Serving:
    """The environment's state and the controller's strategy in a feature document.

    Whatever does not have the documented shape counts as absent.
    """
    environments = body.get("environments") if isinstance(body, dict) else None
    env = next(
        (
            e
            for e in (environments if isinstance(environments, list) else [])[:100]
            if isinstance(e, dict) and e.get("name") == target.environment
        ),
        None,
    )
    if env is None:
        return Serving(enabled=False)
    enabled = env.get("enabled") is True
    strategies = env.get("strategies")
    for strategy in (strategies if isinstance(strategies, list) else [])[:1000]:
        if not isinstance(strategy, dict):
            continue
        parameters = strategy.get("parameters")
        if (
            strategy.get("name") == STRATEGY
            and isinstance(parameters, dict)
            and parameters.get("groupId") == target.feature
        ):
            return Serving(
                enabled=enabled,
                percent=_whole(parameters.get("rollout"), 0, 100),
                stickiness=_text(parameters.get("stickiness")),
                version=_whole(parameters.get(VERSION_PARAMETER), 0, 2**53),
                strategy_id=_text(strategy.get("id")),
            )
    return Serving(enabled=enabled)


def _whole(value: Any, low: int, high: int) -> int | None:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not text.isdigit() or len(text) > 16:
        return None
    number = int(text)
    return number if low <= number <= high else None


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) and value else None
