"""``rolloutctl plan draft`` against a real model server (SmolLM2-135M-Instruct by default)."""

from __future__ import annotations

import pytest

from controller.core.drafting.templates import TEMPLATES, review
from controller.core.rollouts.plan import load_plan
from controller.ctl.app import main
from tests.services import LLM_MODEL_ALIAS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PREFIX = "rolloutctl: using the built-in high-risk template: "


def test_real_inference_gives_a_plan_that_validates_or_the_template_with_the_reason(
    llm_base_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RC_LLM__RESPONSE_FORMAT", raising=False)  # detected, not configured
    argv = ["plan", "draft", "--risk", "high", "--describe", "a new payment provider"]
    argv += ["--model-url", llm_base_url, "--model", LLM_MODEL_ALIAS, "--timeout", "150"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    plan = load_plan(out)  # whichever it is, what is printed is a valid plan
    if err:
        # The server took the request: any fallback is about the draft, not the format
        assert "HTTP" not in err, err
        assert err.startswith(PREFIX)
        assert len(err.strip()) > len(PREFIX)  # with its reason
        assert plan == TEMPLATES["high"]
        assert "# Built-in template for a high-risk change: a new payment provider" in out
    else:
        assert review(plan, "high") == []
        assert f"# Drafted by the model {LLM_MODEL_ALIAS}" in out
    print(f"draft: {'fallback: ' + err.strip() if err else 'the model plan ' + plan.name}")
