"""Unleash's admin API: the flag backend that serves a rollout through ``flexibleRollout``.

One feature per rollout, in one project and environment. The controller owns
one strategy there: the ``flexibleRollout`` whose ``groupId`` is the feature
name (stable, so a unit keeps its bucket as the percent grows). Its
parameters are strings: ``rollout`` (the stage's whole percent),
``stickiness``, ``groupId``, and two of the controller's own, ``rcFlag`` and
``rcFlagVersion``, which the app's exposure helper reads so that each exposure
carries the flag version the SDK actually served. A ``PUT`` replaces a whole
strategy, so every write sends all of it. The plan's prerequisites are the
feature's dependencies (``.../features/{name}/dependencies``), written before
the strategy and before the environment is turned on, so the feature is never
served without them.

Every request has one deadline (``request_timeout_seconds``) from its first
byte sent to the last byte read: a server dripping its answer a byte at a
time fails the call within it instead of holding the sync. Answers are
bounded (``max_response_bytes``) and parsed at this edge with bounded
pydantic models (:mod:`controller.adapters.unleash.answers`); an answer
that is not the JSON the API documents (a login proxy's HTML page with
status 200, a wrong shape) is no answer at all and raises
:class:`BackendUnavailable`, never a reading of "nothing served"
that the sync would take for a person's change. What the environment would
serve is worked out by :func:`controller.core.serving.reads.would_serve`.
Connection failures, deadlines, 5xx, 429 and refused tokens are retriable
(:class:`BackendUnavailable`): the sync backs off and alerts once.
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import quote

import httpx
import orjson

from controller.adapters.unleash.answers import (
    BackendUnavailable,
    Unreadable,
    parse_environments,
    parse_feature,
)
from controller.core.common import (
    FLAG_PARAMETER,
    RING_PARAMETER,
    TARGETING_PARAMETER,
    VERSION_PARAMETER,
    ControllerError,
)
from controller.core.serving import STRATEGY, Serving, Spec, Target
from controller.kit.deadlines import DeadlineExceeded, TooLarge, deadline, read_bounded
from controller.settings import UnleashSettings

_RETRIABLE_STATUSES = frozenset({401, 403, 408, 425, 429})
# -- the client ---------------------------------------------------------------------------


class UnleashAdmin:
    """The admin API of one Unleash server; use it with ``async with``."""

    def __init__(
        self, settings: UnleashSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if settings.url is None:
            raise ControllerError("unleash.url is not set")
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._max_bytes = settings.max_response_bytes
        self._deadline = settings.request_timeout_seconds
        self._create = settings.create_features
        self._client = httpx.AsyncClient(
            base_url=settings.url.rstrip("/"),
            timeout=settings.request_timeout_seconds,
            # Identity: a compressed answer could inflate far past its bound in one chunk.
            headers={
                "Authorization": token,
                "Content-Type": "application/json",
                "Accept-Encoding": "identity",
            },
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    # -- the port ------------------------------------------------------------------

    async def read(self, target: Target) -> Serving:
        """What the feature's environment serves; ``exists=False`` if there is no feature."""
        path = _feature_path(target)
        status, body = await self._call("GET", path)
        if status == httpx.codes.NOT_FOUND:
            return Serving(enabled=False, exists=False)
        _check(status, "read the feature", body)
        if body is None:
            raise Unreadable(f"Unleash answered GET {path} with no JSON")
        return parse_feature(body, target)

    async def environments(self) -> frozenset[str]:
        """The environments the server has enabled (``GET /api/admin/environments``)."""
        status, body = await self._call("GET", "/api/admin/environments")
        _check(status, "list the environments", body)
        return parse_environments(body)

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
        if want.dependencies != actual.dependencies:  # before the feature is served with them
            await self._write_dependencies(base, want, actual)
        if want.specs is not None:
            if (actual.shape, actual.version) != (want.shape, want.version):
                await self._write_rings(env, target, want, actual, flag=flag)
        else:
            await self._write_one(env, target, want, actual, flag=flag)
        if not actual.enabled:
            await self._post(f"{env}/on", None, "turn the environment on")

    async def _write_one(
        self, env: str, target: Target, want: Serving, actual: Serving, *, flag: str
    ) -> None:
        body = _strategy_body(target, want, flag)
        if actual.strategy_id is None:
            await self._post(f"{env}/strategies", body, "create the strategy")
        elif actual.tampered or (actual.percent, actual.stickiness, actual.version) != (
            want.percent,
            want.stickiness,
            want.version,
        ):  # the whole strategy: constraints or a disabled flag added by hand go too
            sid = quote(actual.strategy_id, safe="")
            status, answer = await self._call("PUT", f"{env}/strategies/{sid}", body)
            _check(status, "update the strategy", answer)

    async def _write_dependencies(self, base: str, want: Serving, actual: Serving) -> None:
        """Make the feature's dependencies the plan's: one on a parent no longer wanted is
        deleted, a missing or different one posted (Unleash keeps one per parent)."""
        wanted = {d.feature for d in want.dependencies}
        for old in actual.dependencies:
            if old.feature not in wanted:
                parent = quote(old.feature, safe="")
                status, answer = await self._call("DELETE", f"{base}/dependencies/{parent}")
                _check(status, f"delete the dependency on {old.feature[:100]}", answer)
        for new in want.dependencies:
            if new not in actual.dependencies:
                what = f"add the dependency on {new.feature[:100]}"
                await self._post(f"{base}/dependencies", new.to_json(), what)

    async def _write_rings(
        self, env: str, target: Target, want: Serving, actual: Serving, *, flag: str
    ) -> None:
        """One strategy per ring term. Widening never narrows on the way: a strategy with
        the same constraints is updated in place (its percent only rises), new ones are
        created, and only then are the ones no longer wanted deleted."""
        await self._context_fields({c.context for s in want.specs or () for c in s.constraints})
        free = [o for o in actual.owned if o.id]
        creates: list[dict[str, Any]] = []
        for index, spec in enumerate(want.specs or ()):
            body = _ring_body(target, want, spec, flag)
            if index == 0 and want.targeting is not None:  # once: the SDK helper's cohorts
                body["parameters"][TARGETING_PARAMETER] = want.targeting
            same = next((o for o in free if o.constraints == spec.constraints), None)
            if same is None:
                creates.append(body)
                continue
            free.remove(same)
            sid = quote(same.id or "", safe="")
            status, answer = await self._call("PUT", f"{env}/strategies/{sid}", body)
            _check(status, "update a ring's strategy", answer)
        for body in creates:
            await self._post(f"{env}/strategies", body, "create a ring's strategy")
        for old in free:
            sid = quote(old.id or "", safe="")
            status, answer = await self._call("DELETE", f"{env}/strategies/{sid}")
            _check(status, "delete a strategy no ring needs", answer)

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

    async def _context_fields(self, names: set[str]) -> None:
        """Define the context fields the constraints name: Unleash refuses a constraint on an
        undefined one. Only what is missing is created, and only with ``create_features``.
        Defined meanwhile by another writer (Unleash answers 409, or 500 for the race) is
        as good: the list is read again before a refusal counts."""
        missing = sorted(names - await self._known_fields())
        if missing and not self._create:
            raise ControllerError(
                f"context field(s) {', '.join(missing)[:300]} are not defined in Unleash"
                " and unleash.create_features is off"
            )
        for name in missing:
            field = {"name": name, "description": "used by a rollout's audience"}
            status, answer = await self._call("POST", "/api/admin/context", field)
            if not 200 <= status < 300 and name not in await self._known_fields():
                _check(status, f"define the context field {name[:100]}", answer)

    async def _known_fields(self) -> set[str]:
        status, body = await self._call("GET", "/api/admin/context")
        _check(status, "list the context fields", body)
        fields = body if isinstance(body, list) else []
        return {f["name"] for f in fields if isinstance(f, dict) and isinstance(f.get("name"), str)}

    async def _post(self, path: str, body: dict[str, Any] | None, what: str) -> None:
        status, answer = await self._call("POST", path, body)
        _check(status, what, answer)

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """One request within its deadline: the status and the JSON answer (None if empty).

        :class:`BackendUnavailable` if no whole answer came in time, and
        :class:`Unreadable` if a non-empty answer is not JSON.
        """
        content = orjson.dumps(body) if body is not None else None
        what = f"Unleash {method} {path}"
        try:
            async with (
                deadline(self._deadline, what),
                self._client.stream(method, path, content=content) as response,
            ):
                raw = await read_bounded(
                    response.aiter_bytes(),
                    self._max_bytes,
                    declared=response.headers.get("content-length"),
                )
                status, kind = response.status_code, response.headers.get("content-type", "")
        except TooLarge as exc:
            raise ControllerError(
                f"Unleash answered {method} {path} with over {self._max_bytes} bytes"
            ) from exc
        except DeadlineExceeded as exc:
            raise BackendUnavailable(f"Unleash unreachable: {exc}", cause="deadline") from exc
        except httpx.HTTPError as exc:
            why = f"Unleash unreachable: {type(exc).__name__}: {exc}"
            raise BackendUnavailable(why, cause="connection") from exc
        return status, _json(raw, kind, what, status)


def _json(raw: bytes, kind: str, what: str, status: int) -> Any:
    """The answer's JSON; None if empty. A 2xx that is not JSON is no answer from Unleash."""
    if not raw:
        return None
    media = kind.split(";", 1)[0].strip().lower()
    is_json = media == "application/json" or media.endswith("+json")
    try:
        parsed = orjson.loads(raw) if is_json else None
    except orjson.JSONDecodeError:
        parsed = None
    if parsed is None and 200 <= status < 300:
        why = "a body that is not JSON" if is_json else f"content type {media[:60]!r}"
        raise Unreadable(f"{what} answered HTTP {status} with {why}")
    return parsed


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


def _ring_body(target: Target, want: Serving, spec: Spec, flag: str) -> dict[str, Any]:
    """One ring term's whole strategy: the ring's percent, its constraints, the shared group."""
    return {
        "name": STRATEGY,
        "constraints": [c.to_json() for c in spec.constraints],
        "parameters": {
            "rollout": str(spec.percent),
            "stickiness": target.stickiness,
            "groupId": target.feature,
            FLAG_PARAMETER: flag,
            VERSION_PARAMETER: str(want.version),
            RING_PARAMETER: str(spec.ring),
        },
    }


def _check(status: int, what: str, body: Any) -> None:
    if 200 <= status < 300:
        return
    message = body.get("message") if isinstance(body, dict) else None
    details = body.get("details") if isinstance(body, dict) else None
    if message and isinstance(details, list) and details and isinstance(details[0], dict):
        message = f"{message} {details[0].get('message', '')}"
    detail = f"Unleash refused to {what}: HTTP {status}" + (
        f" ({str(message)[:300]})" if message else ""
    )
    # A redirect is something in front of Unleash (a login proxy), not its answer. Unleash
    # answers 403 to an operation it refuses (a dependency it cannot keep): not a token's.
    refused = isinstance(body, dict) and body.get("name") == "InvalidOperationError"
    retriable = not refused and (
        status >= 500 or status in _RETRIABLE_STATUSES or 300 <= status < 400
    )
    raise BackendUnavailable(detail) if retriable else ControllerError(detail)
