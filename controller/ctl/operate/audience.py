"""``rolloutctl audience test FLAG --context JSON``: which arm a context gets, and why.

The flag's state comes from the controller's ``GET /flags`` and the segments
its rules name from ``GET /v1/segments/{name}``; the answer is
:func:`controller.core.wire.evaluation.evaluate`, the function the SDK and OFREP
answer from, so it is what an app would serve. Beside the arm, the reason and
the cohort, it shows each rule's truth for the context (true, false or
unknown) and each ring's share, so an operator sees which ring reached the
unit, or that none did.

The context is bounded like an OFREP request's: at most
:data:`MAX_CONTEXT_BYTES` of JSON, nested at most :data:`MAX_CONTEXT_DEPTH`
levels, at most :data:`MAX_CONTEXT_VALUES` values.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

import orjson
from pydantic import ValidationError

from controller.core.reading import FlagStates, FlagStateView
from controller.core.rules import (
    NO_HELD_SEGMENTS,
    Audience,
    AudienceRule,
    HeldSegments,
    Segment,
    Truth,
    assemble,
    conditions,
    to_text,
)
from controller.core.wire import BUCKETS, SegmentRecord, bucket, evaluate, rule_context
from controller.ctl.exits import EXIT_FAILURE
from controller.ctl.looking import diagnosis
from controller.ctl.terminal import env_url, print_json
from controller.ctl.usage import UsageError

MAX_CONTEXT_BYTES = 16 * 1024
MAX_CONTEXT_DEPTH = 8
MAX_CONTEXT_VALUES = 1000
_TRUTH = {True: "true", False: "false", None: "unknown"}


def read_context(text: str) -> dict[str, Any]:
    """The ``--context`` JSON object, bounded; a :class:`UsageError` says what is wrong."""
    if len(text.encode()) > MAX_CONTEXT_BYTES:
        raise UsageError(f"--context is over {MAX_CONTEXT_BYTES} bytes")
    try:
        context = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"--context is not JSON: {exc}") from None
    if not isinstance(context, dict):
        raise UsageError('--context must be a JSON object, e.g. \'{"country": "TH"}\'')
    values, stack = 0, [(context, 1)]
    while stack:
        value, depth = stack.pop()
        values += 1
        if values > MAX_CONTEXT_VALUES:
            raise UsageError(f"--context holds more than {MAX_CONTEXT_VALUES} values")
        if isinstance(value, dict | list):
            if depth >= MAX_CONTEXT_DEPTH:
                raise UsageError(f"--context nests deeper than {MAX_CONTEXT_DEPTH} levels")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return context


def test(args: argparse.Namespace) -> int:
    """Evaluate ``args.flag`` for the context and print the arm and why."""
    context = read_context(args.context)
    unit = args.unit if args.unit is not None else context.get("targetingKey")
    if not isinstance(unit, str) or not unit:
        raise UsageError("no unit: pass --unit U or put a targetingKey in --context")
    attributes = {k: v for k, v in context.items() if k != "targetingKey"}
    base = env_url(args.url)
    state = _state(base, args.flag)
    if state is None:
        print(f"no flag {args.flag!r} at {base}/flags: every app serves it control")
        return EXIT_FAILURE
    rules = [state.audience] + [ring.audience for ring in state.rings or ()]
    segments = _segments(base, _named(rules))
    found = evaluate(args.flag, state, unit, attributes, segments)
    unit_bucket = bucket(args.flag, state.salt, unit)
    read = rule_context(unit, attributes)  # what evaluate's rules read
    rings = [
        {
            "ring": i + 1,
            "rule": None if ring.audience is None else to_text(ring.audience),
            "percent": ring.threshold * 100 / BUCKETS,
            "truth": _truth(ring.audience, read, segments),
            "bucket_below": unit_bucket < ring.threshold,
        }
        for i, ring in enumerate(state.rings or ())
    ]
    report: dict[str, Any] = {
        "flag": args.flag,
        "unit": unit,
        "flag_version": state.version,
        "status": state.status.value,
        "stage": state.stage,
        "bucket": unit_bucket,
        "arm": found.arm.value,
        "reason": found.reason.value,
        "cohort": None if found.cohort is None else found.cohort.value,
        "audience": None if state.audience is None else to_text(state.audience),
        "audience_truth": _truth(state.audience, read, segments),
        "rings": rings,
        "segments": dict(segments.versions),
    }
    if found.detail:
        report["detail"] = found.detail
    if args.json:
        print_json(report)
    else:
        print("\n".join(_lines(report)))
    return 0


def _lines(report: dict[str, Any]) -> Iterable[str]:
    yield (
        f"{report['flag']} v{report['flag_version']} ({report['status']}, stage "
        f"{report['stage']}), unit {report['unit']!r}, bucket {report['bucket']} of {BUCKETS}"
    )
    cohort = report["cohort"] or "-"
    yield f"arm: {report['arm']}  reason: {report['reason']}  cohort: {cohort}"
    if report.get("detail"):
        yield f"detail: {report['detail']}"
    if report["audience"] is not None:
        yield f"rollout audience: {report['audience']}  -> {report['audience_truth']}"
    if not report["rings"]:
        yield "no rings: a percentage rollout, decided by the bucket alone"
    for ring in report["rings"]:
        rule = ring["rule"] or "everyone"
        below = "below" if ring["bucket_below"] else "not below"
        yield (
            f"ring {ring['ring']}: {rule}  -> {ring['truth']}; {ring['percent']:g}% "
            f"(bucket {below} {round(ring['percent'] * BUCKETS / 100)})"
        )
    yield _why(report)
    for name, version in sorted(report["segments"].items()):
        yield f"segment {name}: version {version}"


def _why(report: dict[str, Any]) -> str:
    cohort, rings = report["cohort"], report["rings"]
    if report["reason"] in ("DISABLED", "ERROR", "SPLIT"):
        return f"why: {report['reason'].lower()}: no rule was asked"
    if cohort == "outside":
        return "why: outside: no ring's rule is true for this context (unknown counts as no)"
    reached = [r["ring"] for r in rings if r["truth"] == "true" or r["rule"] is None]
    where = ", ".join(str(r) for r in reached) or "-"
    if cohort == "carried":
        return f"why: carried: an earlier ring reaches the unit (rings {where})"
    return f"why: compared: the current ring reaches it first (rings {where})"


def _truth(rule: AudienceRule | None, context: dict[str, Any], segments: HeldSegments) -> str:
    truth: Truth = True if rule is None else Audience.of(rule).truth(context, segments)
    return _TRUTH[truth]


def _named(rules: Iterable[AudienceRule | None]) -> list[str]:
    names = {
        c.value.segment
        for rule in rules
        if rule is not None
        for c in conditions(rule.root)
        if isinstance(c.value, Segment)
    }
    return sorted(names)


def _state(base: str, flag: str) -> FlagStateView | None:
    body = diagnosis.get_json(base, "/flags", timeout_s=30)
    try:
        states = FlagStates.model_validate(body)
    except ValidationError as exc:
        raise UsageError(f"{base}/flags: not flag states: {exc.errors()[0]['msg']}") from None
    return next((s for s in states.root if s.flag == flag), None)


def _segments(base: str, names: list[str]) -> HeldSegments:
    """The segments the rules name, as the controller holds them (a missing one: unknown)."""
    held = NO_HELD_SEGMENTS
    for name in names:
        body = diagnosis.get_json(base, f"/v1/segments/{name}", timeout_s=30, missing_ok=True)
        if not isinstance(body, dict):
            continue
        parts = body.pop("part_data", [])
        try:
            record = SegmentRecord.model_validate(body)
            ids = None
            if record.rule is None:
                ids = assemble(parts, count=record.count or 0, sha256=record.sha256 or "")
        except (ValidationError, ValueError, TypeError) as exc:
            raise UsageError(f"segment {name}: not usable: {exc}") from None
        held = held.with_segment(name, record.version, ids=ids, rule=record.rule)
    return held
