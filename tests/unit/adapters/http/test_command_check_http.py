"""``POST /commands/check``: the operator's token, a bounded body, one answer per command in
order, and a body that is not a set of commands refused whole with the reason."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from aiohttp import web

from controller.adapters.http import CommandCheckRoute
from controller.core.reading import MAX_CHECK_BYTES, CheckedCommand
from tests.support.app_client import app_client

TOKEN = "t0ken"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def test_each_command_is_answered_in_order_for_the_operator_only() -> None:
    asked: list[list[bytes]] = []

    async def check(values: Sequence[bytes]) -> list[CheckedCommand]:
        asked.append(list(values))
        return [
            CheckedCommand(
                index=i,
                id=orjson.loads(v).get("id"),
                allowed=i == 0,
                reason="" if i == 0 else "no role",
            )
            for i, v in enumerate(values)
        ]

    app = web.Application()
    CommandCheckRoute(check, token=TOKEN, body_timeout_seconds=5).add_to(app.router)
    body = {"commands": [{"id": "a1", "type": "segment"}, {"id": "b2"}]}
    async with app_client(app) as http:
        assert (await http.post("/commands/check", json=body)).status_code == 401
        answered = await http.post("/commands/check", json=body, headers=BEARER)
        assert answered.status_code == 200
        assert answered.json() == {
            "results": [
                {"index": 0, "id": "a1", "allowed": True, "reason": ""},
                {"index": 1, "id": "b2", "allowed": False, "reason": "no role"},
            ]
        }
        bad_bodies: list[object] = [{"commands": []}, {"commands": "x"}, {"other": 1}, [1]]
        for bad in bad_bodies:
            refused = await http.post("/commands/check", json=bad, headers=BEARER)
            assert refused.status_code == 400
            assert refused.json()["error"].startswith('the body must be {"commands": [...]}')
        too_big = b'{"commands": [' + b" " * MAX_CHECK_BYTES + b"]}"
        headers = BEARER | {"Content-Type": "application/json"}
        large = await http.post("/commands/check", content=too_big, headers=headers)
        assert large.status_code == 413
        huge = b'{"commands": [{"id": "h1", "n": 123456789012345678901234567890}]}'
        past = await http.post("/commands/check", content=huge, headers=headers)
        assert past.status_code == 200
        assert past.json()["results"][0]["id"] == "h1"
        text = await http.post("/commands/check", content=b"x", headers=BEARER)
        assert text.status_code == 415
    assert len(asked) == 2
    assert [orjson.loads(v) for v in asked[0]] == body["commands"]
