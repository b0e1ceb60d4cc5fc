"""What ``rolloutctl restore`` keeps of the topics: the decision, its rollout's plan, and
each segment as the last decision up to it left it."""

from __future__ import annotations

import json

import pytest

from controller.core.drafting import SegmentState
from controller.core.trust import PublishedRecord
from controller.core.wire import JsonObject
from controller.ctl.app import build_parser
from controller.ctl.gitops.restore import History, run
from controller.ctl.gitops.restore_all import last_decisions
from controller.ctl.usage import UsageError

PLAN = {"stages": [{"percent": 1}, {"percent": 50}]}
RULE: JsonObject = {"attribute": "country", "op": "in", "value": ["de"]}
WIDE: JsonObject = {"attribute": "country", "op": "in", "value": ["de", "fr"]}


def _record(data: object, *, kind: str = "decision", ts: int = 1000) -> PublishedRecord:
    value = data if isinstance(data, bytes) else json.dumps(data).encode()
    return PublishedRecord(kind, f"t-{kind}", 0, 0, ts, b"k", value)  # type: ignore[arg-type]


def _decided(**fields: object) -> dict[str, object]:
    base = {"type": "decision", "v": 1, "ts": 1767225600000, "kind": "command"}
    return base | {"action": "promote", "outcome": "applied"} | fields


def _segment(ts: int, **evidence: object) -> PublishedRecord:
    data = _decided(id=f"s-{ts}", flag="segment:beta", kind="segment", action="put")
    return _record({**data, "evidence": {"segment": "beta", **evidence}}, ts=ts)


def _history(*records: PublishedRecord) -> History:
    history = History("checkout", "d-2")
    for record in records:
        history.take(record)
    return history


START = _record(
    {"type": "command", "id": "c-1", "flag": "checkout", "action": "start", "plan": PLAN},
    kind="command",
)
STARTED = _record(
    _decided(id="d-1", flag="checkout", action="start", rollout_id="r1", command_id="c-1")
)
TARGET = _record(
    _decided(id="d-2", flag="checkout", rollout_id="r1", phase_after="running", stage=1),
    ts=2000,
)


def test_the_decision_and_its_rollouts_plan_are_found() -> None:
    history = _history(START, STARTED, TARGET, _record(b"{not json"), _record(b"[1]"))
    assert history.target is not None
    assert history.target.stage == 1
    plan = history.plan_of("r1")
    assert plan is not None
    assert [s.percent for s in plan.stages] == [1, 50]
    assert history.plan_of("r2") is None


def test_another_flags_decision_of_that_id_is_not_the_one() -> None:
    other = _record(_decided(id="d-2", flag="search", phase_after="running", stage=0))
    assert _history(other).target is None


@pytest.mark.parametrize(
    ("case", "records", "said"),
    [
        ("another flag's", [_record(_decided(id="d-2", flag="search"))],
         "decision d-2 belongs to flag search, not to checkout: name a decision of checkout"),
        ("a segment's", [_segment(1000), _record(_decided(id="d-2", flag="segment:beta"))],
         "decision d-2 belongs to flag segment:beta, not to checkout: name a decision of"
         " checkout"),
        ("on no flag", [_record(_decided(id="d-2", flag=None))],
         "decision d-2 belongs to no flag, not to checkout: name a decision of checkout"),
        ("nowhere", [STARTED], "decision d-2 of flag checkout is not on rollout.decisions"),
    ],
)  # fmt: skip
def test_a_decision_not_found_says_whose_it_is(
    case: str, records: list[PublishedRecord], said: str
) -> None:
    history = _history(*records)
    assert history.target is None, case
    assert history.not_found("rollout.decisions") == said, case


@pytest.mark.parametrize(
    ("records", "want"),
    [
        ([_segment(1500, rule=RULE, version=1)], SegmentState(True, RULE, None)),
        (  # the last one up to the decision, not one after it
            [_segment(500, rule=RULE), _segment(1500, rule=WIDE), _segment(2500, rule=RULE)],
            SegmentState(True, WIDE, None),
        ),
        ([_segment(1500, sha256="ab" * 32)], SegmentState(True, None, "ab" * 32)),
        ([_segment(500, rule=RULE), _segment(1500, deleted=True)], SegmentState(False)),
        ([_segment(2500, rule=RULE)], SegmentState(False, known=False)),  # made after it
        ([], SegmentState(False, known=False)),
    ],
)
def test_a_segment_is_as_the_last_decision_up_to_the_one_restored_to_left_it(
    records: list[PublishedRecord], want: SegmentState
) -> None:
    assert _history(TARGET, *records).segment_then("beta") == want


def test_all_flags_restores_each_flag_to_its_last_decision_that_records_a_state() -> None:
    records = [
        _record(_decided(id="d-1", flag="checkout", phase_after="running", stage=0)),
        _record(_decided(id="d-2", flag="checkout", phase_after="running", stage=1)),
        _record(_decided(id="d-3", flag="checkout", outcome="rejected")),  # no state after
        _record(_decided(id="d-4", flag="search", phase_after="completed", stage=3)),
        _record({**_decided(id="s-1", flag="segment:beta", kind="segment", action="put")}),
        _record({"type": "command", "id": "c-1", "action": "start"}, kind="command"),
    ]
    assert last_decisions(records, "t-decision") == {"checkout": "d-2", "search": "d-4"}


@pytest.mark.parametrize(
    "argv",
    [
        ["restore", "checkout", "--all-flags", "--dry-run"],
        ["restore", "--all-flags", "--to-decision", "d-1"],
        ["restore", "checkout"],
        ["restore", "--to-decision", "d-1"],
    ],
)
def test_restore_names_one_flag_and_its_decision_or_all_flags(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    with pytest.raises(UsageError, match="--all-flags"):
        run(args)
