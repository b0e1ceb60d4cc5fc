"""``rolloutctl audience test``: the arm a context gets from the controller's state, and why."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from aiohttp import web

from controller.core.rules.segments import pack
from controller.core.rules.text import parse
from controller.ctl.app import main
from tests.support.app_client import app_client

FLAG = "checkout.rings"
BETA = ["u-beta", "u-other"]


def _rule(text: str) -> Any:
    return orjson.loads(parse(text).to_json())


def _controller() -> web.Application:
    state = {
        "flag": FLAG,
        "version": 4,
        "status": "rolling_out",
        "percent": 0.0,
        "salt": "s",
        "rollout_id": "r",
        "stage": 1,
        "audience": None,
        "rings": [
            {"audience": _rule('role == "staff"'), "threshold": 100_000},
            {
                "audience": _rule('user_id in segment("beta") or user_id in segment("pros")'),
                "threshold": 100_000,
            },
        ],
    }
    packed = pack(BETA)
    head = {"type": "segment", "v": 1, "ts": 1_700_000_000_000}
    segments = {
        "beta": head
        | {"id": "beta:v2", "name": "beta", "version": 2, "count": packed.count}
        | {"sha256": packed.sha256, "parts": len(packed.parts), "part_data": list(packed.parts)},
        "pros": head
        | {"id": "pros:v1", "name": "pros", "version": 1, "rule": _rule('plan == "pro"')},
    }

    async def flags(_: web.Request) -> web.Response:
        return web.json_response([state])

    async def segment(request: web.Request) -> web.Response:
        found = segments.get(request.match_info["name"])
        return web.json_response(found) if found else web.json_response({}, status=404)

    app = web.Application()
    app.router.add_get("/flags", flags)
    app.router.add_get("/v1/segments/{name}", segment)
    return app


async def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    async with app_client(_controller()) as http:
        url = str(http.base_url).rstrip("/")
        code = await asyncio.to_thread(main, ["audience", "test", *args, "--url", url])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("context", "arm", "reason", "cohort"),
    [
        (
            {"targetingKey": "u-beta", "user_id": "u-beta"},
            "treatment",
            "TARGETING_MATCH",
            "compared",
        ),
        (
            {"targetingKey": "x", "user_id": "x", "plan": "pro"},
            "treatment",
            "TARGETING_MATCH",
            "compared",
        ),
        (
            {"targetingKey": "x", "user_id": "x", "role": "staff"},
            "treatment",
            "TARGETING_MATCH",
            "carried",
        ),
        (
            {"targetingKey": "x", "user_id": "x", "plan": "free"},
            "control",
            "TARGETING_MATCH",
            "outside",
        ),
        ({"targetingKey": "x"}, "control", "TARGETING_MATCH", "outside"),
    ],
)
async def test_the_answer_is_the_apps_with_each_rings_truth(
    capsys: pytest.CaptureFixture[str], context: dict[str, Any], arm: str, reason: str, cohort: str
) -> None:
    code, out, err = await _run(capsys, FLAG, "--context", json.dumps(context), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["arm"], report["reason"], report["cohort"]) == (arm, reason, cohort)
    assert report["flag_version"] == 4
    assert report["segments"] == {"beta": 2, "pros": 1}
    assert [r["rule"] for r in report["rings"]] == [
        'role == "staff"',
        'user_id in segment("beta") or user_id in segment("pros")',
    ]
    staff = (
        "true" if context.get("role") == "staff" else "false" if "role" in context else "unknown"
    )
    assert report["rings"][0]["truth"] == staff


async def test_the_text_says_which_ring_reached_the_unit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    context = '{"user_id": "u-beta", "country": "TH"}'
    code, out, err = await _run(capsys, FLAG, "--context", context, "--unit", "u-beta")
    assert code == 0, err
    assert "arm: treatment  reason: TARGETING_MATCH  cohort: compared" in out
    assert 'ring 2: user_id in segment("beta") or user_id in segment("pros")  -> true' in out
    assert 'ring 1: role == "staff"  -> unknown' in out
    assert "why: compared" in out
    assert "segment beta: version 2" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([FLAG, "--context", "{nope"], 2, "--context is not JSON"),
        ([FLAG, "--context", "[1]"], 2, "must be a JSON object"),
        ([FLAG, "--context", '{"a":' * 9 + "1" + "}" * 9, "--unit", "u"], 2, "deeper than 8"),
        (
            [FLAG, "--context", json.dumps({"a": list(range(1000))}), "--unit", "u"],
            2,
            "1000 values",
        ),
        ([FLAG, "--context", "{}"], 2, "no unit"),
        (["no.such.flag", "--context", "{}", "--unit", "u"], 1, ""),
    ],
)
async def test_bad_input_is_refused_with_the_reason(
    capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    got, out, err = await _run(capsys, *args)
    assert got == code, (out, err)
    assert message in err + out
