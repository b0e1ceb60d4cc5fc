"""``rolloutctl plan draft`` against a real model server (SmolLM2-135M-Instruct by default).

The bundled model is too small to draft a plan: by default it is not asked and
the command says so at once; asked anyway (``--allow-small-model``), the
command answers within its deadline, with the model's plan or the template.
"""

from __future__ import annotations

import time

import pytest

from controller.core.drafting.templates import TEMPLATES, review
from controller.core.rollouts.plan import load_plan
from controller.ctl.app import main
from tests.support.backing.services import LLM_MODEL_ALIAS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PREFIX = "rolloutctl: using the built-in high-risk template: "
DEADLINE = 30.0
"""The commands' default deadline, given here to say what is timed."""


@pytest.mark.parametrize(
    ("model", "says"),
    [
        (
            LLM_MODEL_ALIAS,
            f"the model {LLM_MODEL_ALIAS} is too small to draft a plan (its name says",
        ),
        # a name that states no size: the server's model list (llama.cpp's n_params) does
        ("local", "the model local is too small to draft a plan (its server lists 0.135 B"),
    ],
)
def test_the_bundled_model_is_not_asked_and_the_command_says_so_at_once(
    llm_base_url: str, capsys: pytest.CaptureFixture[str], model: str, says: str
) -> None:
    argv = ["plan", "draft", "--risk", "high", "--describe", "a new payment provider"]
    argv += ["--model-url", llm_base_url, "--model", model]
    began = time.monotonic()
    assert main(argv) == 0
    took = time.monotonic() - began
    out, err = capsys.readouterr()
    assert load_plan(out) == TEMPLATES["high"]
    assert err.startswith(PREFIX + says), err
    assert err.endswith("; --allow-small-model asks it anyway\n")
    print(f"draft: {took:.1f} s: {err.strip()}")


def test_real_inference_answers_within_the_deadline_with_a_plan_that_validates_or_the_template(
    llm_base_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RC_LLM__RESPONSE_FORMAT", raising=False)  # detected, not configured
    argv = ["plan", "draft", "--risk", "high", "--describe", "a new payment provider"]
    argv += ["--model-url", llm_base_url, "--model", LLM_MODEL_ALIAS, "--allow-small-model"]
    argv += ["--deadline", f"{DEADLINE:g}"]
    began = time.monotonic()
    assert main(argv) == 0
    took = time.monotonic() - began
    out, err = capsys.readouterr()
    plan = load_plan(out)  # whichever it is, what is printed is a valid plan
    if err:
        # The server took the request: any fallback is about the draft, not the format
        assert "HTTP" not in err, err
        assert err.startswith(PREFIX)
        assert err.count("\n") == 1  # one line, with its reason
        assert len(err.strip()) > len(PREFIX)
        assert plan == TEMPLATES["high"]
        assert "# Built-in template for a high-risk change: a new payment provider" in out
    else:
        assert review(plan, "high") == []
        assert f"# Drafted by the model {LLM_MODEL_ALIAS}" in out
    shown = "fallback: " + err.strip() if err else "the model plan " + plan.name
    print(f"draft in {took:.1f} s: {shown}")
