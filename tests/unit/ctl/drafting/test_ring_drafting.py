"""``rolloutctl rule draft --rings``: the model's rings as a plan, linted, previewed, or why not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from controller.core.rollouts.plan import load_plan
from controller.core.rules.text import parse
from controller.ctl.app import main
from controller.ctl.drafting.rings import APPLYING, ring_messages
from tests.support.fake_model import FIXED, FakeModel, _reply, completion

CATALOGUE = """
attributes: {user_id: string, country: string, plan: string, app_version: semver}
segments: [beta, staff]
"""
CONTEXTS = "\n".join(
    orjson.dumps(c).decode()
    for c in [
        {"user_id": "u1", "country": "TH", "plan": "pro"},
        {"user_id": "u2", "country": "TH", "plan": "free"},
        {"user_id": "u3", "country": "VN", "plan": "pro"},
    ]
)


@pytest.fixture
async def server() -> AsyncIterator[FakeModel]:
    async with FakeModel() as fake:
        yield fake


async def draft(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    reply: bytes,
    *extra: str,
) -> int:
    """Run ``rule draft --rings`` against the fake model replying ``reply``; its exit code."""
    monkeypatch.setitem(FIXED, "rings", reply)
    server.behaviour = "rings"
    (tmp_path / "catalogue.yaml").write_text(CATALOGUE)
    (tmp_path / "contexts.jsonl").write_text(CONTEXTS + "\n")
    argv = ["rule", "draft", "--rings", "staff, then Thai users at 25%, then everyone"]
    argv += ["--catalogue", str(tmp_path / "catalogue.yaml")]
    argv += ["--contexts", str(tmp_path / "contexts.jsonl"), "--model-url", server.base_url]
    argv += ["--model", "fake", "--timeout", "5", *extra]
    return await asyncio.to_thread(main, argv)


def condition(attribute: str, op: str, value: object) -> dict[str, object]:
    return {"attribute": attribute, "op": op, "value": value}


STAFF = {"match": "all", "conditions": [condition("user_id", "in segment", "staff")]}
THAI = {"match": "all", "conditions": [condition("country", "==", "TH")]}


def rings_reply(*rings: tuple[object, object]) -> bytes:
    data = {"rings": [{"audience": a, "percent": p} for a, p in rings]}
    return _reply(200, completion(orjson.dumps(data).decode()))


async def test_the_rings_are_printed_as_a_plan_start_takes_with_lint_and_preview(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reply = rings_reply((STAFF, 100), (THAI, 25), ("everyone", 100))
    assert await draft(server, monkeypatch, tmp_path, reply) == 0
    out, err = capsys.readouterr()
    assert err == ""
    plan = load_plan(out)  # the whole output is the plan's YAML, the rest comments
    assert [(s.audience, s.percent) for s in plan.stages] == [
        (parse('user_id in segment("staff")'), 100),
        (parse('country == "TH"'), 25),
        (None, 100),
    ]
    assert plan.limits is not None
    lines = out.splitlines()
    assert (
        lines[0]
        == "# Ring plan drafted by the model fake: staff, then Thai users at 25%, then everyone"
    )
    assert lines[-5:] == [
        '# ring 1: 100% of user_id in segment("staff"); reaches 0 new of 3 example contexts,'
        " 0 in all (3 unknown)",
        '# ring 2: 25% of country == "TH"; reaches 2 new of 3 example contexts, 2 in all'
        " (0 unknown)",
        "# ring 3: 100% of everyone; reaches 1 new of 3 example contexts, 3 in all (0 unknown)",
        "# lint: no findings",
        f"# {APPLYING}",
    ]
    (request,) = server.requests
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["rings"]
    audience = schema["properties"]["rings"]["items"]["properties"]["audience"]["anyOf"]
    assert audience[1]["required"] == ["match", "conditions"]  # the rule draft's flat form
    prompt = request["messages"][0]["content"]
    assert "country (string)" in prompt
    assert "Segments: beta, staff." in prompt


async def test_json_output_gives_each_ring_its_preview_and_the_plan(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    contry = {"match": "all", "conditions": [condition("contry", "==", "TH")]}
    reply = rings_reply((contry, 5), ("everyone", 50))
    assert await draft(server, monkeypatch, tmp_path, reply, "--json") == 1  # a lint error
    report: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    assert report["rings"] == [
        {
            "ring": 1,
            "audience": 'contry == "TH"',
            "percent": 5,
            "preview": {"newly": 0, "reached": 0, "unknown": 3},
        },
        {
            "ring": 2,
            "audience": None,
            "percent": 50,
            "preview": {"newly": 3, "reached": 3, "unknown": 0},
        },
    ]
    assert report["contexts"] == 3
    assert [f["severity"] for f in report["findings"]] == ["error", "warning", "warning"]
    assert report["findings"][0]["message"].startswith("ring 1: unknown attribute 'contry'")
    assert report["findings"][1]["message"].startswith("the last ring serves 50% of everyone")
    assert "serving 100%" in report["findings"][2]["message"]  # what completion serves
    assert load_plan(report["yaml"]) == load_plan(orjson.dumps(report["plan"]).decode())
    assert report["applied"] is False


BIDI = condition("country", "==", "\u202e\x1b[2J")


def big_rule(n: int) -> dict[str, object]:
    return {"match": "any", "conditions": [condition("country", "==", f"{n}\x1b[2J")] * 65}


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (_reply(200, completion("Sure! Staff first, then everyone.")), "not JSON"),
        (_reply(200, completion('{"plan": []}')), 'the draft needs {"rings": [...]}'),
        (rings_reply(), "the draft has no rings"),
        (rings_reply(*[("everyone", 100)] * 50), "the draft has 50 rings, at most 20"),
        (rings_reply((STAFF, 0)), "ring 1: the percent must be from 0.1 to 100, got 0"),
        (rings_reply((STAFF, 1e300)), "to 100, got 1e+300"),
        (rings_reply((STAFF, "all")), "ring 1: the percent is not a number"),
        (rings_reply(("everyone", 1e-9), ("everyone", 100)), "ring 1: the percent must be from"),
        (rings_reply(("the staff", 100)), "ring 1: the audience does not parse"),
        (rings_reply(({"match": "all", "conditions": [1]}, 5)), "ring 1: condition 1"),
        (rings_reply((big_rule(1), 5)), "at most 64"),
        (rings_reply((THAI, 25), (THAI, 25)), "make no plan: ring 2 repeats ring 1"),
        (
            rings_reply(("everyone", 5), (STAFF, 100)),
            "make no plan: ring 2: ring 1 already speaks to everyone; no later stage may narrow",
        ),
        (
            rings_reply((THAI, 50), (THAI, 25)),
            "make no plan: ring 2: a stage with the same audience as an earlier one must serve"
            " more of it, got 25 after 50",
        ),
        (
            rings_reply(*[({"match": "all", "conditions": [BIDI]}, 5)] * 2),
            'make no plan: ring 2 repeats ring 1 (rings: 5% of country == "\\u202e\\u001b[2J"',
        ),
        (_reply(200, completion('{"rings": "' + "A" * 300_000 + '"}')), "larger than"),
        (FIXED["deep"], "the model gave no ring plan"),
        (FIXED["huge_error"], "larger than 262144 bytes"),
        (
            _reply(200, completion('{"rings": [{"audience": "x\\u001b[2J<<<GATE_DATA>>>"}]}')),
            "ring 1: not an object of audience and percent",
        ),
        (
            rings_reply(('country == "\\u001b[2J" and', 5)),
            "ring 1: the audience does not parse",
        ),
    ],
)
async def test_a_garbage_huge_or_hostile_reply_is_a_clear_error(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reply: bytes,
    reason: str,
) -> None:
    assert await draft(server, monkeypatch, tmp_path, reply) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("rolloutctl: the model"), err
    assert reason in err, err
    assert "\x1b" not in err
    assert len(err) < 1200


async def test_hostile_strings_in_a_ring_are_shown_escaped_and_read_back(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hostile = "TH\x1b[2J\u202e\n# from the model"
    rule = {"match": "all", "conditions": [condition("country", "==", hostile)]}
    assert (
        await draft(server, monkeypatch, tmp_path, rings_reply((rule, 5), ("everyone", 100))) == 0
    )
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert all(not line.startswith("# from the model") for line in out.splitlines())
    plan = load_plan(out)
    assert plan.stages[0].audience == parse('country == "TH\\u001b[2J\\u202e\\n# from the model"')


async def test_an_unreachable_model_is_a_clear_error(
    server: FakeModel, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviour = "hang"
    argv = ["rule", "draft", "--rings", "everyone", "--model-url", server.base_url]
    assert await asyncio.to_thread(main, [*argv, "--timeout", "0.5"]) == 1
    assert "the model gave no ring plan" in capsys.readouterr().err


def test_the_prompt_carries_the_rule_form_the_ring_form_and_a_bounded_description() -> None:
    system, user = ring_messages("\x1b[2J" + "a" * 2000, None)
    assert '"match" is "all"' in system["content"]  # the rule draft's form
    assert '{"audience": "everyone", "percent": 100}' in system["content"]
    assert "\x1b" not in user["content"]
    assert len(user["content"]) < 600


def test_help_names_the_rings_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rule", "draft", "--help"])
    out = capsys.readouterr().out
    assert "--rings" in out
    assert "rolloutctl start --plan" in " ".join(out.split())
