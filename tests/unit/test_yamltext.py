"""YAML from outside is bounded: no aliases, no runaway nesting, no huge text."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.errors import ConfigError
from controller.core.plan import load_plan
from controller.core.yamltext import MAX_YAML_BYTES, load_yaml
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
