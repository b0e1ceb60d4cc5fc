"""bench/new_failures.py's own arithmetic: the store's choice of fingerprints as the bench
ports it, the exact upper bound it prints, and its paired ratios with a censored side."""

from __future__ import annotations

import math
from types import ModuleType

import pytest

from controller.adapters.redis.cells.failure_counts import FAILURES_EVER, FAILURES_KEPT
from tests.unit.bench import load


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load("new_failures.py")


def test_with_room_every_fingerprint_is_kept_from_its_first_failure(bench: ModuleType) -> None:
    registry = bench.Registry()
    entries = [(f"f{i:02d}", 1) for i in range(FAILURES_KEPT)]
    assert registry.write(entries) == [True] * FAILURES_KEPT
    assert registry.write([("late", 1)]) == [False]  # no more than the least kept: not kept


def test_one_counted_more_than_the_least_kept_takes_its_place_after_its_cell(
    bench: ModuleType,
) -> None:
    registry = bench.Registry()
    registry.write([(f"f{i:02d}", 2) for i in range(FAILURES_KEPT)])
    assert registry.write([("hot", 3)]) == [False]  # counted in this cell before it is kept
    assert "hot" in registry.kept
    assert "f00" not in registry.kept  # the least kept, ties by name
    assert registry.write([("hot", 1), ("f00", 1)]) == [True, False]


def test_no_fingerprint_is_kept_past_the_most_ever(bench: ModuleType) -> None:
    registry = bench.Registry()
    for i in range(FAILURES_EVER + 8):
        registry.write([(f"g{i:03d}", 10 * (i + 1))])  # each outgrows every one kept
    assert registry.ever == FAILURES_EVER
    assert f"g{FAILURES_EVER:03d}" not in registry.kept


@pytest.mark.parametrize(("hits", "n"), [(0, 200), (0, 40)])
def test_the_exact_upper_bound_of_none_seen(bench: ModuleType, hits: int, n: int) -> None:
    assert bench.clopper_pearson_upper(hits, n) == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-6)


def test_the_exact_upper_bound_lies_above_the_rate(bench: ModuleType) -> None:
    upper = bench.clopper_pearson_upper(5, 200)
    assert 0.025 < upper < 0.07
    at_most = math.fsum(math.comb(200, k) * upper**k * (1 - upper) ** (200 - k) for k in range(6))
    assert at_most == pytest.approx(0.025, rel=1e-6)


def test_a_guardrail_that_never_rolled_back_is_taken_at_the_plans_end(bench: ModuleType) -> None:
    stop, never = bench.Stop, bench.Stop(None, 3, 27_000.0, 0)
    runs = [
        {"error_rate": stop("error_rate", 1, 3_600.0, 0), "new_failures": stop("x", 0, 900.0, 0)},
        {"error_rate": never, "new_failures": stop("new_failures", 0, 1_800.0, 0)},
    ]
    assert bench.paired_ratios(runs, 27_000.0) == [4.0, 15.0]


def test_the_preview_part_runs_each_stage_at_the_figure_plan_validate_prints(
    bench: ModuleType,
) -> None:
    printed = bench.preview_figures(200.0)
    assert sorted(printed) == [0, 1, 2, 3]  # the compared stages
    figures = {k: [bench.figure_of(k, i, 200.0) for i in range(4)] for k in bench.FIGURE_KINDS}
    assert figures["preview"] == [printed[i] for i in range(4)]
    for i in range(4):
        # the final look's 14 failures against the boundary's 24-27; the normal reading asks
        # 20.3 where the count gives 18.2
        assert 1.5 < figures["preview"][i] / figures["own_look"][i] < 1.9
        assert 1.05 < figures["normal"][i] / figures["own_look"][i] < 1.2


def test_the_preview_part_counts_where_each_run_was_caught(bench: ModuleType) -> None:
    caught = bench.StageCaught
    runs = [
        caught("always_valid", 26),
        caught("final_look", 15, own_look=True, read_new=True),
        caught(None, 16, own_look=True, read_new=False),  # its own look, not the gate's
        caught(None, 9, own_look=False, read_new=True),
    ]
    found = bench.summarise_preview(0.001, runs)
    assert (found["caught"], found["share"], found["in_band"]) == (2, 0.5, False)
    assert (found["always_valid"], found["final_look"]) == (1, 1)
    assert found["with_own_final_look"] == 0.75
    assert (found["final_look_read_new"], found["reached_end"]) == (2, 3)
