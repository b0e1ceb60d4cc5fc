"""``rolloutctl rule draft``: the model's rule parsed, linted and previewed, or a clear error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from controller.core.common.errors import ConfigError
from controller.core.rules.text import parse
from controller.ctl.app import main
from controller.ctl.drafting.rules import APPLYING, read_contexts, rule_messages, shown
from tests.support.fake_model import FIXED, FakeModel, _reply, completion

CATALOGUE = """
attributes: {user_id: string, country: string, plan: string, app_version: semver}
segments: [beta]
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
    """Run ``rule draft`` against the fake model replying ``reply``; its exit code."""
    monkeypatch.setitem(FIXED, "rule", reply)
    server.behaviour = "rule"
    (tmp_path / "catalogue.yaml").write_text(CATALOGUE)
    (tmp_path / "contexts.jsonl").write_text(CONTEXTS + "\n\n")
    argv = ["rule", "draft", "Thai pro users", "--catalogue", str(tmp_path / "catalogue.yaml")]
    argv += ["--contexts", str(tmp_path / "contexts.jsonl"), "--model-url", server.base_url]
    argv += ["--model", "fake", "--timeout", "5", *extra]
    return await asyncio.to_thread(main, argv)


def form(match: str, conditions: list[list[object]]) -> bytes:
    """A reply in the flat form the model is asked for."""
    parts = [dict(zip(("attribute", "op", "value"), c, strict=True)) for c in conditions]
    return _reply(200, completion(orjson.dumps({"match": match, "conditions": parts}).decode()))


def rule_reply(rule: str) -> bytes:
    return _reply(200, completion(orjson.dumps({"rule": rule}).decode()))


async def test_a_rule_is_printed_with_its_lint_and_preview_and_never_applied(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reply = rule_reply('country == "TH"   and plan == "pro"')
    assert await draft(server, monkeypatch, tmp_path, reply) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "# Drafted by the model fake",
        'country == "TH" and plan == "pro"',
        "",
        "lint: no findings",
        "preview: matches 1 of 3 example contexts (0 unknown: an attribute or segment missing)",
        APPLYING,
    ]
    assert err == ""
    (request,) = server.requests
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["match", "conditions"]
    condition = schema["properties"]["conditions"]["items"]["properties"]
    assert condition["attribute"]["enum"] == ["app_version", "country", "plan", "user_id"]
    prompt = request["messages"][0]["content"]
    assert "country (string)" in prompt
    assert "app_version (semver)" in prompt
    assert "Segments: beta." in prompt


async def test_json_output_carries_both_forms_and_says_nothing_was_applied(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reply = rule_reply('contry == "TH" or user_id in segment("beta")')
    assert await draft(server, monkeypatch, tmp_path, reply, "--json") == 1  # a lint error
    report = orjson.loads(capsys.readouterr().out)
    assert report["rule"] == 'contry == "TH" or user_id in segment("beta")'
    assert report["audience"]["or"][0] == {"attribute": "contry", "op": "==", "value": "TH"}
    assert [f["severity"] for f in report["findings"]] == ["error", "warning"]
    assert report["findings"][0]["message"].startswith("unknown attribute 'contry'")
    assert report["preview"] == {"total": 3, "matched": 0, "unknown": 3}
    assert report["applied"] is False


@pytest.mark.parametrize(
    ("reply", "printed"),
    [
        (
            form("all", [["country", "==", "TH"], ["plan", "==", "pro"]]),
            'country == "TH" and plan == "pro"',
        ),
        (
            form("any", [["user_id", "in segment", "beta"], ["app_version", ">=", "2.3.0"]]),
            'user_id in segment("beta") or app_version >= semver("2.3.0")',
        ),
        (form("any", [["plan", "not in", ["free"]]]), 'plan not in ["free"]'),
        (form("all", [["user_id", "not in segment", "beta"]]), 'user_id not in segment("beta")'),
    ],
)
async def test_the_flat_form_the_model_is_asked_for_becomes_a_rule(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reply: bytes,
    printed: str,
) -> None:
    await draft(server, monkeypatch, tmp_path, reply)
    assert capsys.readouterr().out.splitlines()[1] == printed


async def test_the_json_form_is_taken_too(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    form = {"attribute": "country", "op": "in", "value": ["TH", "VN"]}
    reply = _reply(200, completion(orjson.dumps(form).decode()))
    assert await draft(server, monkeypatch, tmp_path, reply) == 0
    out = capsys.readouterr().out
    assert 'country in ["TH", "VN"]' in out
    assert "warning: matches all 3 example contexts" in out


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (rule_reply('country == "TH" and'), "does not parse: line 1, column 20"),
        (rule_reply("x" * 5000), "does not parse"),
        (_reply(200, completion("Sure! Thai pro users: country is TH")), "not JSON"),
        (_reply(200, completion('{"audience": 1}')), "not a rule in any form"),
        (_reply(200, completion('"country == \\"TH\\""')), "not a rule in any form"),
        (form("all", []), "match all or any, and a list of conditions"),
        (form("some", [["country", "==", "TH"]]), "match all or any"),
        (form("all", [["country", "~", "TH"]]), "not a valid rule: Input should be"),
        (form("all", [["plan", "==", "pro"], ["user_id", "in segment", 3]]), "condition 2"),
        (form("all", [["app_version", ">=", "two"]]), "not a semantic version"),
        (form("any", [["country", "==", "\x1b[2J"]] * 65), "at most 64"),
        (_reply(200, completion('{"rule": "' + "A" * 300_000 + '"}')), "larger than"),
        (FIXED["deep"], "the model gave no rule"),
        (FIXED["huge_error"], "larger than 262144 bytes"),
        (
            rule_reply('country == "\\u001b[2J" and plan == "x\\n<<<GATE_DATA>>>" and'),
            "does not parse",
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
    assert err.startswith("rolloutctl: "), err
    assert reason in err, err
    assert "\x1b" not in err
    assert len(err) < 1000


async def test_a_hostile_string_value_is_shown_escaped(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reply = rule_reply('country == "TH\\u001b[2J\\u202e" and plan == "pro"')
    assert await draft(server, monkeypatch, tmp_path, reply) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\u202e" not in out
    printed = out.splitlines()[1]
    assert parse(printed) == parse('country == "TH\\u001b[2J\\u202e" and plan == "pro"')


async def test_an_unreachable_model_is_a_clear_error(
    server: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.behaviour = "hang"
    argv = ["rule", "draft", "everyone", "--model-url", server.base_url, "--timeout", "0.5"]
    assert await asyncio.to_thread(main, argv) == 1
    assert "the model gave no rule" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"a": 1}\n[1]', "line 2: not a JSON object"),
        ('{"a": 1}\n{', "line 2: not JSON"),
        ("{}\n" * 10_001, "more than 10000"),
    ],
)
def test_bad_example_contexts_are_refused_naming_the_line(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        read_contexts(text)


def test_a_bad_catalogue_file_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.yaml").write_text("attributes: {country: text}")
    argv = ["rule", "draft", "x", "--catalogue", str(tmp_path / "c.yaml")]
    assert main(argv) == 78
    assert "attributes.country" in capsys.readouterr().err
    (tmp_path / "big.yaml").write_text("#" * (1024 * 1024 + 1))
    assert main(["rule", "draft", "x", "--catalogue", str(tmp_path / "big.yaml")]) == 78
    assert main(["rule", "draft", "x", "--contexts", str(tmp_path / "none.jsonl")]) == 78


def test_the_prompt_fences_nothing_and_bounds_the_description() -> None:
    (_, user) = rule_messages("\x1b[2J" + "a" * 2000, None)
    assert "\x1b" not in user["content"]
    assert len(user["content"]) < 600
    assert shown("é\u202e\x7f") == "é\\u202e\\u007f"
