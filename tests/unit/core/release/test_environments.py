"""Environments: names bounded, the default among them, stored records upgraded to it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.core.release.environments import DEFAULT_ENVIRONMENT, SINGLE, Environments

THREE = Environments(names=("dev", "staging", "production"), default="production")

VALID: dict[str, tuple[dict[str, Any], tuple[str, ...], str]] = {
    # case: (config, names, default)
    "nothing configured: today's one": ({}, ("default",), "default"),
    "three, production the default": (
        {"names": ["dev", "staging", "production"], "default": "production"},
        ("dev", "staging", "production"),
        "production",
    ),
    "dashes, digits and underscores": (
        {"names": ["eu-west_1", "qa2"], "default": "qa2"},
        ("eu-west_1", "qa2"),
        "qa2",
    ),
}


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_environments(case: str) -> None:
    config, names, default = VALID[case]
    environments = Environments.model_validate(config)
    assert environments.names == names
    assert environments.default == default


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    # case: (config, the field the refusal names)
    "the wildcard": ({"names": ["*"], "default": "*"}, "names.0"),
    "upper case": ({"names": ["Prod"], "default": "Prod"}, "names.0"),
    "a leading digit": ({"names": ["1st"], "default": "1st"}, "names.0"),
    "too long": ({"names": ["a" * 33], "default": "a" * 33}, "names.0"),
    "none": ({"names": [], "default": "default"}, "names"),
    "seventeen": (
        {"names": [f"e{i}" for i in range(17)], "default": "e0"},
        "names",
    ),
    "named twice": ({"names": ["dev", "dev"], "default": "dev"}, "names.1"),
    "default not served": ({"names": ["dev", "production"], "default": "default"}, "default"),
    "an unknown field": ({"names": ["dev"], "default": "dev", "region": "eu"}, "region"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_environments(case: str) -> None:
    config, field = REFUSED[case]
    with pytest.raises(ValidationError) as caught:
        Environments.model_validate(config)
    assert field in str(caught.value)


UPGRADES: dict[str, tuple[Environments, str | None, str]] = {
    # case: (environments, a stored record's environment, the environment it belongs to)
    "a record from before environments, one environment": (SINGLE, None, DEFAULT_ENVIRONMENT),
    "a record from before environments, three": (THREE, None, "production"),
    "an empty field is none": (THREE, "", "production"),
    "a record with its own": (THREE, "staging", "staging"),
}


@pytest.mark.parametrize("case", sorted(UPGRADES))
def test_a_stored_record_belongs_to_its_environment_or_the_default(case: str) -> None:
    environments, stored, expected = UPGRADES[case]
    assert environments.of(stored) == expected


def test_unknown_names_the_environments_served() -> None:
    assert THREE.unknown("staging") is None
    assert THREE.unknown("qa") == (
        "unknown environment 'qa' (this controller serves dev, staging, production)"
    )
    assert "qa" not in THREE
    assert "dev" in THREE
