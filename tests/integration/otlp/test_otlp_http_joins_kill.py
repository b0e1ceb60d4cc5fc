"""OTLP/HTTP: log-form joins cut by a kill -9 count exactly once, behind a relay sending every
export twice.

The telemetry is the Node ``EventHook``'s shape, recorded by the real OpenTelemetry SDK
and encoded by its OTLP encoders: each evaluation a log record named
``feature_flag.evaluation`` in its request's SERVER span, with the flag version, exported
on ``/v1/logs``; the request spans on ``/v1/traces``, five log exports behind (the Node
SDK's defaults batch log records every second, spans every five). A relay posts each
export twice to the real ``rollout-controller run``. The daemon is killed with SIGKILL
while evaluations wait for their requests, started again, and the rest is sent: each
arm's exposures, requests, errors and latencies equal the reference fold of what the
SDK recorded.
"""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan

from tests.integration.otlp.test_otlp_http import (
    FLAG,
    PROTOBUF,
    VERSION,
    described,
    export,
    logged,
    partial_success,
    publish,
    restarted,
    serving,
)
from tests.integration.rig import Rig
from tests.support.otel.otlp_exports import Recorder, logs_proto, traces_proto

PER_EXPORT = 10
SPANS_BEHIND = 5
"""How many log exports go out before the span export of the same requests."""
CHUNKS = 30
KILLED_AFTER = 14
"""Exports sent (each twice) before the kill: the evaluations of the last few wait."""


Shaped = tuple[list[tuple[str, bytes]], list[ReadableSpan], dict[str, str], dict[int, str]]


def node_shaped(recorder: Recorder) -> Shaped:
    """The exports in the order the app sends them, the request spans, each unit's arm and
    each span's unit."""
    logs: list[bytes] = []
    traces: list[bytes] = []
    spans: list[ReadableSpan] = []
    arms: dict[str, str] = {}
    units: dict[int, str] = {}
    for chunk in range(CHUNKS):
        variant = ("treatment", "control")[chunk % 2]
        names = [f"user-{chunk}-{i}" for i in range(PER_EXPORT)]
        before = len(recorder.records())
        made = logged(recorder, variant, names)
        logs.append(logs_proto(recorder.records()[before:]))
        traces.append(traces_proto(made))
        spans += made
        arms |= dict.fromkeys(names, variant)
        units |= {span.context.span_id: n for span, n in zip(made, names, strict=True)}
    order: list[tuple[str, bytes]] = []
    for step in range(CHUNKS + SPANS_BEHIND):
        if step < CHUNKS:
            order.append(("/v1/logs", logs[step]))
        if step >= SPANS_BEHIND:
            order.append(("/v1/traces", traces[step - SPANS_BEHIND]))
    return order, spans, arms, units


async def test_log_form_joins_cut_by_a_kill_9_count_once_through_a_duplicating_relay(
    rig: Rig, tmp_path: Path
) -> None:
    # Given a flag under rollout, and a Node app's evaluations as log records
    await publish(rig, {FLAG: VERSION})
    order, spans, arms, units = node_shaped(Recorder())
    reference = described(spans, arms, units)
    async with serving(rig, tmp_path) as (client, daemon):
        # When a relay sends every export twice, and the daemon is killed with SIGKILL
        # while the evaluations of the last log exports wait for their request spans
        for index, (path, body) in enumerate(order):
            if index == 2 * KILLED_AFTER:
                await restarted(daemon, client)
            for _ in range(2):
                answer = await export(client, path, body, PROTOBUF)
                assert partial_success(answer, path) == (0, ""), answer.content
        # Then each arm's exposures, requests, errors and latencies are exact
        await rig.settle()
        await rig.assert_exact(reference)
        assert len(reference) == 2 * CHUNKS * PER_EXPORT
