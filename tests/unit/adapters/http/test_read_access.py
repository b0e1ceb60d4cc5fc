"""Who may read what: every read route, each credential, each setting, in process.

The reads of apps (``/flags``, ``/v1/segments*``: salts, rings, values and id
lists, enough to evaluate any unit offline) want an app key of scope
``evaluate`` where keys are required, or the operator's token, unless
``http.public_flags``; the operator's reads (``/rollouts*``) want the webhook
token wherever one is set, and never take an app key, but for the verdict
(``/rollouts/{flag}/verdict``), which an app key of scope ``verdicts`` reads too: a
deploy tool's read-only key, refused everywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from controller.adapters.http import HttpServer
from controller.adapters.http.app_access import AppAccess
from controller.adapters.http.read_routes import AppReadGuard
from controller.adapters.http.segment_routes import SegmentRoutes
from controller.core.reading.served_history import RolloutHistory
from controller.core.reading.views import FlagStates, RolloutStatus, describe
from controller.core.trust.app_keys import AppKey, Policy, Scope, by_digest, digest
from controller.settings import HttpSettings
from tests.unit.core.machine.gate.test_gate import rollout

TOKEN = "operator-token"
READER, SENDER, GATE = "rc_app_reader", "rc_app_sender", "rc_app_deploy_gate"
KEYS = [
    AppKey(
        id="00000000000000b1",
        name="reader",
        scopes=frozenset({Scope.EVALUATE}),
        secret_sha256=digest(READER),
        created_ms=1,
        created_by="ana",
    ),
    AppKey(
        id="00000000000000b2",
        name="sender",
        scopes=frozenset({Scope.EVENTS}),
        secret_sha256=digest(SENDER),
        created_ms=2,
        created_by="ana",
    ),
    AppKey(
        id="00000000000000b3",
        name="deploy-gate",
        scopes=frozenset({Scope.VERDICTS}),
        secret_sha256=digest(GATE),
        created_ms=3,
        created_by="ana",
    ),
]
CREDENTIALS = {"no key": None, "wrong scope": SENDER, "right key": READER, "operator": TOKEN}
APP_READS = ("/flags", "/v1/segments", "/v1/segments/beta")
OPERATOR_READS = ("/rollouts", "/rollouts/f", "/rollouts/f/history")

# (require_app_keys, public_flags, webhook token set) -> the statuses of the reads of apps
# and of the operator's, for each credential in the order of CREDENTIALS.
EXPECTED: dict[tuple[bool, bool, bool], dict[str, tuple[int, int, int, int]]] = {
    (True, False, True): {"app": (401, 403, 200, 200), "operator": (401, 401, 401, 200)},
    (True, False, False): {"app": (401, 403, 200, 401), "operator": (200, 200, 200, 200)},
    (False, False, True): {"app": (200, 403, 200, 200), "operator": (401, 401, 401, 200)},
    (False, False, False): {"app": (200, 403, 200, 401), "operator": (200, 200, 200, 200)},
    (True, True, True): {"app": (200, 200, 200, 200), "operator": (401, 401, 401, 200)},
}


def cases() -> list[Any]:
    found = []
    for (required, public, token), expected in EXPECTED.items():
        for kind, routes in (("app", APP_READS), ("operator", OPERATOR_READS)):
            for route in routes:
                for (credential, _), status in zip(
                    CREDENTIALS.items(), expected[kind], strict=True
                ):
                    setting = f"keys={required},public={public},token={token}"
                    found.append(
                        pytest.param(
                            required,
                            public,
                            token,
                            route,
                            credential,
                            status,
                            id=f"{setting}:{route}:{credential}",
                        )
                    )
    return found


def server(*, required: bool, public: bool, token: str | None, known: bool = True) -> HttpServer:
    """``known``: whether the controller has a rollout for the flag read."""

    async def keys() -> Mapping[str, AppKey]:
        return by_digest(KEYS)

    async def flags() -> FlagStates:
        return FlagStates([])

    async def status(_flag: str | None) -> list[RolloutStatus]:
        if not known:
            return []
        now = datetime.now(UTC)
        shown = describe(rollout(), None, now, ()).__dict__
        return [RolloutStatus.model_validate({**shown, "stale": False})]

    async def history(flag: str) -> RolloutHistory:
        return RolloutHistory(flag=flag, rollout_id="r", stages=[])

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    async def listing() -> list[dict[str, Any]]:
        return []

    async def version(_name: str) -> int:
        return 1

    async def whole(name: str) -> dict[str, Any]:
        return {"name": name, "version": 1}

    access = AppAccess(keys, Policy(require_keys=required, origins=frozenset()))
    limits = HttpSettings(public_flags=public, reads_per_second=1000)
    guard = AppReadGuard(access, public=public, operator_token=token)
    return HttpServer(
        host="127.0.0.1",
        port=0,
        readiness=ready,
        flags=flags,
        metrics=bytes,
        metrics_content_type="text/plain",
        rollouts=status,
        history=history,
        webhook_token=token,
        limits=limits,
        access=access,
        segments=SegmentRoutes(
            listing=listing, version=version, whole=whole, key_id=None, guard=guard
        ),
    )


async def read(api: HttpServer, route: str, bearer: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with api, httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}") as client:
        return await client.get(route, headers=headers)


@pytest.mark.parametrize(("required", "public", "token", "route", "credential", "status"), cases())
async def test_who_may_read_what(
    required: bool, public: bool, token: bool, route: str, credential: str, status: int
) -> None:
    given = CREDENTIALS[credential]
    api = server(required=required, public=public, token=TOKEN if token else None)
    answer = await read(api, route, given)
    assert answer.status_code == status, answer.text
    if status != 200:
        assert answer.json()["error"]  # every refusal says why


async def test_an_app_key_is_refused_on_rollouts_with_a_reason_naming_the_token() -> None:
    answer = await read(server(required=True, public=False, token=TOKEN), "/rollouts", READER)
    assert answer.status_code == 401
    assert "operator token" in answer.json()["error"]


VERDICT_CREDENTIALS = {
    "no key": None,
    "evaluate key": READER,
    "verdicts key": GATE,
    "operator": TOKEN,
    "unknown key": "rc_app_nobody",
}


@pytest.mark.parametrize(
    ("token", "credential", "status"),
    [
        (True, "no key", 401),
        (True, "evaluate key", 403),
        (True, "verdicts key", 200),
        (True, "operator", 200),
        (True, "unknown key", 401),
        (False, "no key", 200),
        (False, "evaluate key", 403),
        (False, "verdicts key", 200),
        (False, "unknown key", 401),
    ],
)
async def test_who_may_read_a_verdict(token: bool, credential: str, status: int) -> None:
    api = server(required=True, public=False, token=TOKEN if token else None)
    answer = await read(api, "/rollouts/f/verdict", VERDICT_CREDENTIALS[credential])
    assert answer.status_code == status, answer.text
    if status == 200:
        assert set(answer.json()) == {"done", "ok", "phase", "reason", "version"}
    else:
        assert answer.json()["error"]


@pytest.mark.parametrize("route", ["/rollouts", "/rollouts/f", "/rollouts/f/history", "/flags"])
async def test_a_verdicts_key_reads_nothing_but_verdicts(route: str) -> None:
    answer = await read(server(required=True, public=False, token=TOKEN), route, GATE)
    assert answer.status_code in {401, 403}, answer.text


async def test_a_verdict_for_a_flag_never_started_is_404_saying_so() -> None:
    api = server(required=True, public=False, token=TOKEN, known=False)
    answer = await read(api, "/rollouts/nobody/verdict", GATE)
    assert answer.status_code == 404
    assert "no rollout for flag 'nobody'" in answer.json()["error"]
