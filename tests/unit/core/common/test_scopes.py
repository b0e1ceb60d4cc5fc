"""Environments in flag keys: the default keeps the flag's own key, others add ``@env``."""

from __future__ import annotations

import re

import pytest

from controller.core.common import (
    FLAG_KEY_PATTERN,
    PLAIN_FLAG_KEY_PATTERN,
    environment_of,
    scoped,
    split,
)

CASES = [
    # (flag, environment, default, key)
    ("checkout", None, "default", "checkout"),
    ("checkout", "default", "default", "checkout"),
    ("checkout", "production", "production", "checkout"),
    ("checkout", "staging", "production", "checkout@staging"),
    ("team:checkout.v2", "dev", "default", "team:checkout.v2@dev"),
]


@pytest.mark.parametrize(("flag", "environment", "default", "key"), CASES)
def test_a_flag_key_names_its_environment_outside_the_default(
    flag: str, environment: str | None, default: str, key: str
) -> None:
    assert scoped(flag, environment, default) == key
    assert split(key) == (flag, None if key == flag else environment)
    assert environment_of(key, default) == (environment or default)
    assert re.fullmatch(FLAG_KEY_PATTERN, key)


@pytest.mark.parametrize(
    ("key", "flag_key", "plain"),
    [
        ("checkout", True, True),
        ("checkout@staging", True, False),
        ("checkout@Staging", False, False),  # environments are lower case
        ("checkout@", False, False),
        ("@staging", False, False),
        ("a@b@c", False, False),
        ("x" * 128 + "@" + "e" * 32, True, False),
        ("x" * 129, False, False),
    ],
)
def test_the_patterns_take_one_environment_at_most(key: str, flag_key: bool, plain: bool) -> None:
    assert bool(re.fullmatch(FLAG_KEY_PATTERN, key)) is flag_key
    assert bool(re.fullmatch(PLAIN_FLAG_KEY_PATTERN, key) and len(key) <= 128) is plain
