"""Crash guardrails on crash-looping traffic, seeded: the gate holds alpha where Poisson cannot.

The small version of ``bench/crashes.py``: the default plan's four compared stages, guarded
on crash_count alone, on traffic where 0.2% of units crash-loop (three quarters of all
crashes). Identical arms are judged by the gate and by the Poisson test that takes each
crash as independent; a doubled crash rate by the gate.
"""

from __future__ import annotations

from tests.support.crashes import CrashShape, crash_share, simulate_crashes

SHAPE = CrashShape(looping_share=0.002, looping_exposures=(50, 500))
AA_RUNS = 12
POWER_RUNS = 8


def test_identical_arms_are_rolled_back_by_a_poisson_test_and_not_by_the_gate() -> None:
    assert crash_share(SHAPE) > 0.7
    gate = poisson = 0
    for run in range(AA_RUNS):
        outcomes = simulate_crashes(SHAPE, seed=7_100 + run)
        gate += outcomes["plan"].stopped is not None
        poisson += outcomes["crash_count@poisson"].stopped is not None
    print(f"\nA/A, {AA_RUNS} runs: gate {gate}, Poisson {poisson} false rollbacks")
    assert gate <= 1  # alpha is 0.05 a rollout
    assert poisson >= AA_RUNS // 3  # far above alpha: crashes are not independent


def test_a_doubled_crash_rate_is_rolled_back_on_crash_count() -> None:
    stopped = [
        simulate_crashes(SHAPE, seed=7_300 + run, treatment_factor=2.0)["plan"].stopped
        for run in range(POWER_RUNS)
    ]
    assert stopped.count("crash_count") >= POWER_RUNS - 1, stopped
