"""Where an app key may act: its path's environment, else its own; bound keys nowhere else."""

from __future__ import annotations

import pytest

from controller.core.trust import AppKey, Scope, bound_refusal, request_environment


def key(environment: str | None) -> AppKey:
    return AppKey(
        id="0123456789abcdef",
        name="app",
        scopes=frozenset(Scope),
        environment=environment,
        secret_sha256="0" * 64,
        created_ms=0,
        created_by="ana",
    )


@pytest.mark.parametrize(
    ("bound", "named", "acts_in"),
    [
        (None, None, None),  # no key: the controller's default
        ("dev", None, "dev"),  # a bound key's own environment
        ("dev", "production", "production"),  # the path names one: refused below
        ("unbound", "staging", "staging"),
        ("unbound", None, None),
    ],
    ids=["no-key", "bound", "bound-path", "unbound-path", "unbound"],
)
def test_a_request_acts_in_its_paths_environment_else_its_keys(
    bound: str | None, named: str | None, acts_in: str | None
) -> None:
    found = None if bound is None else key(None if bound == "unbound" else bound)
    assert request_environment(found, named) == acts_in


@pytest.mark.parametrize(
    ("bound", "environment", "refused"),
    [
        (None, "production", False),
        ("dev", "dev", False),
        ("dev", "production", True),
    ],
    ids=["unbound", "own", "other"],
)
def test_a_bound_key_is_refused_elsewhere_with_the_reason(
    bound: str | None, environment: str, refused: bool
) -> None:
    found = bound_refusal(key(bound), environment)
    assert (found is not None) is refused
    if found is not None:
        assert (found.status, found.outcome) == (403, "wrong_environment")
        assert found.reason == (
            "app key app (0123456789abcdef) serves the dev environment only, not production"
        )
    assert bound_refusal(None, environment) is None
