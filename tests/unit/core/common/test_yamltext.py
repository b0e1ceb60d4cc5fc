"""YAML from outside is bounded: no aliases, no runaway nesting, no huge text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.core.common.errors import ConfigError
from controller.core.common.yamltext import MAX_YAML_BYTES, dump_yaml, load_yaml
from controller.core.rollouts.plan import load_plan
from controller.ctl.app import main
from controller.ctl.exits import EXIT_CONFIG
from controller.settings import load_settings

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(20)
)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (LAUGHS, "aliases are not allowed"),
        ("stages: &s [{percent: 5}]\nguardrails: *s\n", "aliases are not allowed"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("x: " + "y" * (MAX_YAML_BYTES + 1), "over the"),
        ("stages: [percent: 5", "not valid YAML"),
    ],
)
def test_hostile_yaml_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_yaml(text, source="plan")


def test_plain_yaml_and_json_still_read() -> None:
    assert load_yaml("a: [1, 2]\nb: {c: d}\n", source="x") == {"a": [1, 2], "b": {"c": "d"}}
    assert load_yaml('{"a": [1, 2]}', source="x") == {"a": [1, 2]}


def test_a_plan_file_with_an_alias_bomb_is_refused() -> None:
    with pytest.raises(ConfigError, match="aliases"):
        load_plan(LAUGHS, source="plan.yaml")


def test_a_config_file_with_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text(LAUGHS, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cannot read config file .*aliases"):
        load_settings(path)


@pytest.mark.parametrize(
    ("scalar", "value"),
    [
        ("1e3", 1000.0),
        ("1e+16", 1e16),
        ("-1.5e-3", -0.0015),
        ("1.0e-12", 1e-12),
        (".5", 0.5),
        (".inf", float("inf")),
        ("017", 17),
        ("0o17", 15),
        ("0x1F", 31),
        ("-3", -3),
        ("true", True),
        ("True", True),
        ("FALSE", False),
        ("null", None),
        ("~", None),
        ("", None),
        ("NO", "NO"),
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("1_000", "1_000"),
        ("1:30", "1:30"),
        ("2024-01-01", "2024-01-01"),
        ('"1e3"', "1e3"),
    ],
)
def test_plain_scalars_read_as_yaml_1_2_core(scalar: str, value: object) -> None:
    assert load_yaml(f"x: {scalar}\n", source="plan") == {"x": value}


@pytest.mark.parametrize(
    "value", ["1e3", "1e+16", "0o17", "yes", "NO", "on", "1_000", "1:30", "2024-01-01", "~"]
)
def test_a_string_like_a_number_or_bool_is_written_quoted_and_reads_back(value: str) -> None:
    text = dump_yaml({"x": value})
    assert load_yaml(text, source="x") == {"x": value}
    assert yaml.safe_load(text) == {"x": value}  # and so for a YAML 1.1 reader


def _rule_plan(rule: str) -> str:
    return (
        f'{{"stages": [{{"audience": {rule}, "percent": 50}},'
        ' {"percent": 100, "min_units_per_arm": 0}],'
        ' "guardrails": [{"metric": "error_rate"}]}\n'
    )


@pytest.mark.parametrize("name", ["plan.yaml", "plan.json"])
@pytest.mark.parametrize(
    ("rule", "value"),
    [
        ('{"attribute": "age", "op": "==", "value": 1e3}', 1000),
        ('{"attribute": "age", "op": "!=", "value": 1e3}', 1000),
        ('{"attribute": "age", "op": "<", "value": 1e3}', 1000),
        ('{"attribute": "age", "op": ">", "value": 1e+16}', 1e16),
        ('{"attribute": "age", "op": "in", "value": [1e3, 2E3]}', [1000, 2000]),
        ('{"attribute": "age", "op": "not in", "value": [1e3]}', [1000]),
    ],
)
def test_a_rule_s_exponent_number_in_a_plan_file_is_a_number(
    rule: str, value: object, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_text(_rule_plan(rule), encoding="utf-8")
    plan = load_plan(path.read_text(encoding="utf-8"), name=name)
    audience = plan.stages[0].audience
    assert audience is not None
    assert audience.model_dump(mode="json")["value"] == value
    assert main(["plan", "validate", str(path)]) == 0, capsys.readouterr().out


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        ("{attribute: country, op: in, value: [NO, SE]}", ["NO", "SE"]),
        ("{attribute: country, op: ==, value: NO}", "NO"),
        ("{attribute: answer, op: ==, value: yes}", "yes"),
        ("{attribute: beta, op: ==, value: true}", True),
    ],
)
def test_an_unquoted_word_in_a_yaml_rule_stays_a_word(rule: str, value: object) -> None:
    audience = load_plan(_rule_plan(rule), name="plan.yaml").stages[0].audience
    assert audience is not None
    assert audience.model_dump(mode="json")["value"] == value


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("stages: [{percent: 5}, {percent: 100}]\n", "not valid JSON"),
        ('{"stages": [{"percent": NaN}, {"percent": 100}]}', "NaN is not a JSON number"),
        ('{"stages": [{"percent": 5}, {"percent": 100},]}', "not valid JSON"),
    ],
)
def test_a_json_plan_file_is_read_as_json(text: str, why: str, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=why):
        load_plan(text, source=f"plan {path}", name=path.name)
    assert main(["plan", "validate", str(path)]) == EXIT_CONFIG
