"""The expr-lang subset the deploy-gate test evaluates Argo's conditions with."""

from __future__ import annotations

import pytest

from tests.support.expr_lang import evaluate, outcome


@pytest.mark.parametrize(
    ("expression", "result", "truth"),
    [
        ("result.done && result.ok", {"done": True, "ok": True}, True),
        ("result.done && result.ok", {"done": True, "ok": False}, False),
        ("result.done && !result.ok", {"done": True, "ok": False}, True),
        ("result.done and not result.ok", {"done": False, "ok": False}, False),
        ("!result.done || result.ok", {"done": False, "ok": False}, True),
        ("result.done == true && (result.ok != true)", {"done": True, "ok": False}, True),
        ("result.missing", {"done": True}, False),
        ("!result.ok && result.done || true", {"done": False, "ok": True}, True),
    ],
)
def test_the_subset_evaluates_as_expr_lang(
    expression: str, result: dict[str, bool], truth: bool
) -> None:
    assert evaluate(expression, {"result": result}) is truth


@pytest.mark.parametrize("expression", ["result.count > 3", "len(result)", "result.done &&", "x"])
def test_more_than_the_subset_is_refused(expression: str) -> None:
    with pytest.raises((ValueError, NameError)):
        evaluate(expression, {"result": {"done": True}})


def test_argo_measurements_are_failed_successful_or_inconclusive() -> None:
    success, failure = "result.done && result.ok", "result.done && !result.ok"
    assert outcome(success, failure, {"done": True, "ok": True}) == "Successful"
    assert outcome(success, failure, {"done": True, "ok": False}) == "Failed"
    assert outcome(success, failure, {"done": False, "ok": False}) == "Inconclusive"
