"""Advisor quality: a labelled set of gate situations, asked of the configured model.

Every situation is a real gate: the pure gate (controller/core/machine/gate.py
``evaluate``) runs on synthetic aggregates, and the model is shown exactly
what the daemon would show it (``gate_data`` → ``build_messages``). All of
them are stages the statistics would advance, since only those are ever put
to the advisor; the labels say which advice a careful reviewer would accept:

* healthy: treatment no worse than control → advance;
* borderline: slightly worse, within the bounds → advance or hold;
* ungated regression: a metric no guardrail watches got clearly worse → hold
  or rollback;
* SRM-like: the unit ratio is off, though not yet flagged → hold;
* no traffic: a handful of units, nothing to judge → hold.

Prints agreement with the labels (overall and per kind) and how often the
reply was parseable advice; the last line is one JSON object. The model is
LLM_BASE_URL (with LLM_MODEL, LLM_API_KEY), else the embedded SmolLM2-135M
server, which is far too small to judge: run a 7B-class instruct model
(e.g. Qwen2.5-7B-Instruct under Ollama or LocalAI) for a meaningful figure.

    python bench/advisor_eval.py [--response-format json_object]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.llm import Advisor
from controller.core.machine.gate import evaluate
from controller.core.rollouts import Briefing
from controller.core.rollouts.advice import Opinion, incoherence
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.rollout import Rollout, VerdictKind
from controller.core.stats.aggregates import FlagAggregates
from controller.daemon.rollouts.consulting import gate_data
from controller.settings import LlmSettings
from tests.support.backing.services import LLM_MODEL_ALIAS, resolve_llm
from tests.unit.core.machine.gate.test_gate import LATE, arm, data, rollout

ADVANCE, HOLD, ROLLBACK = "advance", "hold", "rollback"


@dataclass(frozen=True)
class Situation:
    name: str
    kind: str
    rollout: Rollout
    aggregates: FlagAggregates
    accept: frozenset[str]

    def shown(self) -> Briefing:
        verdict = evaluate(self.rollout, self.aggregates, LATE)
        if verdict.kind is not VerdictKind.ADVANCE:  # the advisor is only asked about these
            raise SystemExit(f"{self.name}: the gate says {verdict.kind}, not advance")
        return gate_data(self.rollout, verdict, LATE)


def a_plan(*guardrails: Guardrail, min_units: int = 1000) -> Plan:
    return Plan(
        stages=[
            Stage(percent=10, min_duration=timedelta(minutes=30), min_units_per_arm=min_units),
            Stage(percent=100, min_duration=timedelta(0)),
        ],
        guardrails=list(guardrails)
        or [
            Guardrail(metric="error_rate"),
            Guardrail(metric="latency_p99", tolerance=0.10, relative=True),
            Guardrail(metric="conversion_rate"),
        ],
    )


ERRORS_ONLY = a_plan(Guardrail(metric="error_rate"))
LATENCY_ONLY = a_plan(Guardrail(metric="latency_p99", tolerance=0.10, relative=True))


def situation(
    name: str, kind: str, accept: set[str], plan: Plan | None = None, **arms: dict[str, Any]
) -> Situation:
    t = arm(**{"units": 1_111, **arms.get("t", {})})
    c = arm(**{"units": 10_000, **arms.get("c", {})})
    return Situation(name, kind, rollout(plan or a_plan()), data(t, c), frozenset(accept))


def situations() -> list[Situation]:
    """The labelled set: six or more of each kind."""
    return [*_healthy(), *_borderline(), *_ungated(), *_srm_like(), *_no_traffic()]


def _healthy() -> list[Situation]:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("identical arms", {}),
        ("fewer errors", {"errors": 400}),
        ("faster", {"latency": 15.0}),
        ("more conversions", {"conversions": 5_500}),
        ("fewer errors and faster", {"errors": 450, "latency": 18.0}),
        ("more requests, same error rate", {"requests": 400_000, "errors": 2_000}),
        ("errors down a lot", {"errors": 100}),
    ]
    return [situation(n, "healthy", {ADVANCE}, t=t) for n, t in cases]


def _borderline() -> list[Situation]:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("errors up 4%", {"errors": 520}),
        ("errors up 8%", {"errors": 540}),
        ("conversions down 1%", {"conversions": 4_950}),
        ("latency up 5%", {"latency": 21.0}),
        ("errors up 6%, conversions down 1%", {"errors": 530, "conversions": 4_950}),
        ("errors up 10%", {"errors": 550}),
    ]
    return [situation(n, "borderline", {ADVANCE, HOLD}, t=t) for n, t in cases]


def _ungated() -> list[Situation]:
    worse = {HOLD, ROLLBACK}
    return [
        situation("conversions halved", "ungated", worse, ERRORS_ONLY, t={"conversions": 2_500}),
        situation("conversions down 40%", "ungated", worse, ERRORS_ONLY, t={"conversions": 3_000}),
        situation("conversions down 70%", "ungated", worse, ERRORS_ONLY, t={"conversions": 1_500}),
        situation("errors tripled", "ungated", worse, LATENCY_ONLY, t={"errors": 1_500}),
        situation("errors doubled", "ungated", worse, LATENCY_ONLY, t={"errors": 1_000}),
        situation("errors x10", "ungated", worse, LATENCY_ONLY, t={"errors": 5_000}),
    ]


def _srm_like() -> list[Situation]:
    # 10% planned: 1,111 treatment units against 10,000 control are on target;
    # these are off by 8-12%, with sequential p from 0.007 to 0.2: not flagged yet.
    cases = [("1,000 units", 1_000), ("980 units", 980), ("1,020 units", 1_020)]
    cases += [("1,005 units", 1_005), ("990 units", 990), ("1,010 units", 1_010)]
    return [
        situation(f"ratio off: {n}", "srm_like", {HOLD}, a_plan(min_units=500), t={"units": units})
        for n, units in cases
    ]


def _no_traffic() -> list[Situation]:
    plan = a_plan(min_units=0)
    cases = [(1, 1), (2, 3), (3, 5), (5, 8), (0, 2), (4, 10)]
    return [
        Situation(
            f"{units} treatment units, {requests} requests",
            "no_traffic",
            rollout(plan),
            data(
                arm(units=units, requests=requests, errors=0, exposures=units, conversions=0),
                arm(
                    units=units * 9 + 1,
                    requests=requests * 9,
                    errors=0,
                    exposures=units * 9 + 1,
                    conversions=0,
                ),
            ),
            frozenset({HOLD}),
        )
        for units, requests in cases
    ]


def settings(base_url: str, response_format: str) -> LlmSettings:
    return LlmSettings.model_validate(
        {
            "mode": "gating",
            "base_url": base_url,
            "model": os.environ.get("LLM_MODEL", LLM_MODEL_ALIAS),
            "api_key": os.environ.get("LLM_API_KEY") or None,
            "timeout_seconds": 120,
            "retries": 0,  # parseability is measured per call
            "breaker_failures": 1_000,
            "response_format": response_format,
        }
    )


async def ask_all(llm: LlmSettings, cases: list[Situation]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    async with Advisor(llm) as advisor:
        for case in cases:
            advice = await advisor.advise(case.shown())
            action = advice.advice.action if isinstance(advice, Opinion) else None
            agree = action in case.accept
            # a rationale that contradicts its action is not reasoning, whatever the action
            muddled = incoherence(advice.advice) if isinstance(advice, Opinion) else None
            results.append(
                {
                    "name": case.name,
                    "kind": case.kind,
                    "action": action,
                    "agree": agree,
                    "incoherent": muddled,
                }
            )
            print(f"[eval] {case.kind:<11} {case.name:<36} {action or advice}", file=sys.stderr)
    return results


def summary(results: list[dict[str, Any]], model: str) -> dict[str, Any]:
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        by_kind[r["kind"]].append(r["agree"])
    parsed = [r for r in results if r["action"] is not None]
    return {
        "model": model,
        "situations": len(results),
        "agreement": round(sum(r["agree"] for r in results) / len(results), 3),
        "parseable": round(len(parsed) / len(results), 3),
        "agreement_when_parsed": round(sum(r["agree"] for r in parsed) / max(len(parsed), 1), 3),
        "by_kind": {k: round(sum(v) / len(v), 3) for k, v in by_kind.items()},
        "actions": dict(Counter(str(r["action"]) for r in results)),
        "incoherent_when_parsed": round(
            sum(r["incoherent"] is not None for r in parsed) / max(len(parsed), 1), 3
        ),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    cases = situations()
    for case in cases:
        case.shown()  # every label refers to an advance the real gate gives
    with ExitStack() as stack:
        base_url, stop, description = resolve_llm(Path(tempfile.mkdtemp(prefix="rc-eval-")))
        stack.callback(stop)
        print(f"[eval] model server: {description}", file=sys.stderr)
        llm = settings(base_url, args.response_format)
        results = asyncio.run(ask_all(llm, cases))
    return summary(results, llm.model)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--response-format",
        default="json_object",
        choices=["json_schema", "json_object", "grammar"],
        help="how replies are constrained (json_object for llama-cpp-python)",
    )
    report = main(parser.parse_args())
    print(
        f"agreement {report['agreement']:.0%}, parseable {report['parseable']:.0%},"
        f" incoherent when parsed {report['incoherent_when_parsed']:.0%}"
    )
    print(json.dumps(report))
