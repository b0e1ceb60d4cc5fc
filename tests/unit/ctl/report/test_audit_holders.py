"""Today's holder of each configured operator key, for commands no alert names."""

from __future__ import annotations

from typing import Any

import pytest

from controller.ctl.report.audit_holders import current_holders


@pytest.mark.parametrize(
    ("keys", "want"),
    [
        ({}, {}),
        ({"ops-1": "MCow..."}, {"ops-1": "ops-1"}),  # today's form: its own holder
        ({"ana-laptop": {"public_key": "MCow", "holder": "ana"}}, {"ana-laptop": "ana"}),
        ({"dev-1": {"public_key": "MCow", "roles": ["dev"]}}, {"dev-1": "dev-1"}),
        (  # a record that cannot be read names no one, the others are kept
            {"bad": {"holder": "x"}, "ops-1": "MCow"},
            {"ops-1": "ops-1"},
        ),
    ],
)
def test_each_configured_key_is_held_by_its_holder_or_itself(
    keys: dict[str, Any], want: dict[str, str]
) -> None:
    assert current_holders(keys) == want
