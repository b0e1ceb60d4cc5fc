"""``rolloutctl rule draft`` and ``--rings`` against a real model server (SmolLM2-135M by default).

So small a model rarely writes a rule that parses; what must hold either way
is that the server takes the request (its reply format included) and that the
command prints a reviewed rule (or ring plan) or says on stderr why there is none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.rollouts.plan import load_plan
from controller.core.rules.text import parse
from controller.ctl.app import main
from controller.ctl.drafting.rings import APPLYING as RINGS_APPLYING
from controller.ctl.drafting.rules import APPLYING
from tests.support.backing.services import LLM_MODEL_ALIAS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_real_inference_gives_a_reviewed_rule_or_says_why_not(
    llm_base_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("RC_LLM__RESPONSE_FORMAT", raising=False)  # detected, not configured
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text("attributes: {country: string, plan: string}\nsegments: [beta]\n")
    argv = ["rule", "draft", "Thai pro users", "--catalogue", str(catalogue)]
    argv += ["--model-url", llm_base_url, "--model", LLM_MODEL_ALIAS, "--timeout", "150"]
    code = main(argv)
    out, err = capsys.readouterr()
    if out:
        lines = out.splitlines()
        assert lines[0] == f"# Drafted by the model {LLM_MODEL_ALIAS}"
        parse(lines[1])  # what is printed is a rule
        assert lines[-1] == APPLYING
        assert code == (1 if "\nerror: " in out else 0)
    else:
        assert code == 1
        assert err.startswith("rolloutctl: the model"), err
        assert "HTTP" not in err, err  # the server took the request and its format
        assert "request failed" not in err, err
    print(f"rule draft: {out.splitlines()[1] if out else err.strip()}")


def test_real_inference_gives_a_reviewed_ring_plan_or_says_why_not(
    llm_base_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("RC_LLM__RESPONSE_FORMAT", raising=False)  # detected, not configured
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text("attributes: {user_id: string, country: string}\nsegments: [staff]\n")
    argv = ["rule", "draft", "--rings", "staff first, then everyone", "--catalogue", str(catalogue)]
    argv += ["--model-url", llm_base_url, "--model", LLM_MODEL_ALIAS, "--timeout", "150"]
    code = main(argv)
    out, err = capsys.readouterr()
    if out:
        plan = load_plan(out)  # what is printed is a plan `start --plan` takes
        assert out.splitlines()[-1] == f"# {RINGS_APPLYING}"
        assert code == (1 if "\n# error: " in out else 0)
        shown = "; ".join(f"{s.percent:g}% {s.audience}" for s in plan.stages)
    else:
        assert code == 1
        assert err.startswith("rolloutctl: the model"), err
        assert "HTTP" not in err, err  # the server took the request and its format
        assert "request failed" not in err, err
        shown = err.strip()
    print(f"ring plan draft: {shown}")
