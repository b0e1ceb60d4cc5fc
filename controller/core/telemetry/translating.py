"""From the evaluations in spans and logs to our wire events: exposures, requests, conversions.

Each evaluation of a flag the controller knows gives one exposure, for the
unit it names (``feature_flag.context.id``, else the plan's
``unit_attribute`` on the span, then on the resource, else the request: the
unit ``trace:<trace id>``, counted in ``request_level``), in the arm its
variant stands for, at the version it names or else the version in force at
its time. The request it belongs to (the span it is on, if SERVER or a root,
else its nearest SERVER ancestor, at most :data:`MAX_HOPS` up) gives one
request outcome per flag (one whose status made it a failure named by its status class,
method and route: :func:`~.attribution.request_failure`); a span, span event or log
record named as one of the flag's conversions, in a trace in which the flag was
evaluated, gives a conversion for that evaluation's unit, arm and version. What arrives apart
is joined through :class:`~.joining.JoinBuffer`.

Every event's id is derived from the trace, the span and the flag
(:func:`~.attribution.event_id`), so a re-sent export counts once. What is not
counted is said: a :class:`~.signals.Refusal` per evaluation (``unknown_variant``,
``evaluation_error``, ``bad_version``, ``no_unit``, at the index of its span or record
in the batch), per
span or evaluation at an implausible time (``bad_time``: a span that ends before it
starts or lasts over a day, an instant far from the time the batch arrived; such a
span is no request, and its time no version's), per request span whose HTTP
status is no whole number (``malformed``: refused whole, its evaluations too),
``no_rollout`` for an evaluation of a flag no rollout published (an app's
ordinary flags: nothing wrong with it, nothing to count it for), ``guarded``
for an evaluation too near a version change (no refusal either),
``unmatched`` for an evaluation whose request outcome will never be counted.
"""

from __future__ import annotations

from typing import Final

from controller.core.telemetry.attribution import (
    conversion_value,
    event_id,
    id_of,
    is_error,
    latency_ms,
    span_digest,
    ts_ms,
    unit_from,
    unit_text,
    version_at,
    version_of,
)
from controller.core.telemetry.evaluations import (
    EVALUATION_NAME,
    Evaluation,
    evaluation_in,
    evaluations_in,
)
from controller.core.telemetry.failures import (
    ERROR_SEVERITY,
    FAILURES,
    credits,
    failure_event,
    record_failures,
    span_failures,
)
from controller.core.telemetry.flag_rules import FlagRules, Lookup
from controller.core.telemetry.joining import JoinBuffer, Node, Waiting
from controller.core.telemetry.joining import Window as Kept
from controller.core.telemetry.recording import (
    Conversion,
    Counted,
    Run,
    Translated,
    readable,
    refuse_unarmed,
)
from controller.core.telemetry.signals import (
    Attributes,
    Logs,
    Span,
    Spans,
)
from controller.core.telemetry.timing import Window, plausible_spans
from controller.core.wire import ConversionIn, ExposureIn, InEvent, RequestIn

MAX_HOPS: Final = 8
"""How far up from an evaluation's span its request (a SERVER span) is looked for."""
MAX_CONVERSION_NAMES: Final = 4096
"""Conversion names remembered from the flags' rules, to spot conversions before evaluations."""


class Translator:
    """Translates batches of spans and logs, joining what arrives apart (pure; clock passed in)."""

    def __init__(
        self,
        lookup: Lookup,
        *,
        guard_ms: int = 2000,
        join_window_ms: int = 30_000,
        max_pending: int = 100_000,
    ) -> None:
        self._lookup = lookup
        self._guard_ms, self._window_ms = guard_ms, join_window_ms
        self._buffer: JoinBuffer[Counted, Conversion] = JoinBuffer(
            window_ms=join_window_ms, max_pending=max_pending
        )
        self._names: set[str] = set()
        self._failures = False
        """A flag whose plan guards crashes or exceptions was seen: failures are read."""
        self._replayed: Kept[bool] = Kept(window_ms=join_window_ms, cap=max_pending)
        """The spans in the buffer read again after a restart (see :meth:`spans`)."""
        self._ready: list[InEvent] = []

    @property
    def join_window_ms(self) -> int:
        """How long what arrives apart waits for its other half."""
        return self._window_ms

    @property
    def buffer(self) -> JoinBuffer[Counted, Conversion]:
        return self._buffer

    def expire(self, now_ms: int) -> int:
        """Drop what is past the join window; answer the unmatched evaluations dropped."""
        self._replayed.expire(now_ms)
        return self._buffer.expire(now_ms)

    def take_ready(self) -> list[InEvent]:
        """The events joins made while replaying that may not have been counted (a half of
        each was read fresh): to be folded with the next fresh batch, emptied."""
        ready, self._ready = self._ready, []
        return ready

    def spans(self, batch: Spans, now_ms: int, *, replaying: bool = False) -> Translated:
        """The events of ``batch``. ``replaying``: the batch was counted before a restart and
        is read again only for what it leaves to be joined; it emits nothing of its own, and
        a join it completes with a half read fresh goes to :meth:`take_ready`."""
        run = Run(now_ms, Window.around(now_ms), noted={}, replaying=replaying, ready=self._ready)
        run.out.unmatched += self.expire(now_ms)
        kept = readable(plausible_spans(batch.spans, run.window, run.refuse_time), run)
        nodes = run.nodes
        self._buffer.remember_all(nodes, now_ms)
        self._provenance(nodes, run)
        for index, span in kept:
            if span.events or span.name == EVALUATION_NAME:
                for evaluation in evaluations_in(span, details=False):
                    self._evaluated(evaluation, index, (span.attributes, span.resource), run)
        if run.noted:
            self._buffer.note_all(run.noted, now_ms)
        run.noted = None
        if self._names:
            self._span_conversions([span for _, span in kept], run)
        if self._failures:
            for found in span_failures((span for _, span in kept), run.window):
                self._converted(Conversion(*found, run.replaying), run)
        for span_id in self._buffer.awaited(nodes):
            for waiting in self._buffer.arrived(span_id):
                fresh = waiting.fresh or not waiting.evaluation.replayed
                self._walk(waiting.evaluation, span_id, waiting.hops, run, fresh=fresh)
        return run.out

    def logs(self, batch: Logs, now_ms: int, *, replaying: bool = False) -> Translated:
        """The events of ``batch`` (``replaying`` as for :meth:`spans`)."""
        run = Run(now_ms, Window.around(now_ms), replaying=replaying, ready=self._ready)
        run.out.unmatched += self.expire(now_ms)
        for index, record in enumerate(batch.records):
            evaluation = evaluation_in(record, details=False)
            if evaluation is not None:
                self._evaluated(evaluation, index, (record.attributes, record.resource), run)
            elif record.trace_id and record.event_name in self._names:
                if not run.window.holds(record.time_ns):
                    fault = run.window.fault(record.time_ns)
                    run.refuse_time(index, f"{record.event_name[:64]}: {fault}")
                    continue
                anchor = record.span_id or f"log:{record.time_ns}"
                conversion = Conversion(
                    record.event_name,
                    record.trace_id,
                    anchor,
                    ts_ms(record.time_ns),
                    record.attributes,
                    run.replaying,
                )
                self._converted(conversion, run)
            elif self._failures and record.trace_id and record.severity >= ERROR_SEVERITY:
                for found in record_failures(index, record, run):  # refuses a bad time
                    self._converted(Conversion(*found, run.replaying), run)
        return run.out

    def _span_conversions(self, spans: list[Span], run: Run) -> None:
        names = self._names
        for span in spans:
            if span.name in names:
                ts = ts_ms(span.end_ns)
                conversion = Conversion(
                    span.name, span.trace_id, span.span_id, ts, span.attributes, run.replaying
                )
                self._converted(conversion, run)
            for event in span.events:
                if event.name in names:
                    ts = ts_ms(event.time_ns or span.end_ns)
                    conversion = Conversion(
                        event.name, span.trace_id, span.span_id, ts, event.attributes, run.replaying
                    )
                    self._converted(conversion, run)

    def _provenance(self, nodes: dict[str, Node], run: Run) -> None:
        """Mark the spans a replay remembers; a span read fresh again is fresh."""
        replayed = self._replayed
        if run.replaying:
            replayed.put_all(dict.fromkeys(nodes, True), run.now_ms)
        elif len(replayed):
            for span_id in replayed.keys() & nodes.keys():
                replayed.pop(span_id)

    def _rules(self, flag: str, run: Run) -> FlagRules | None:
        if flag in run.rules:
            return run.rules[flag]
        rules = self._lookup(flag)
        run.rules[flag] = rules
        if rules is not None and rules.failures:
            self._failures = True
        if rules is not None and rules.conversions and not rules.conversions <= self._names:
            if len(self._names) + len(rules.conversions) > MAX_CONVERSION_NAMES:
                self._names.clear()
            self._names.update(rules.conversions)
        return rules

    def _evaluated(
        self, evaluation: Evaluation, index: int, places: tuple[Attributes, Attributes], run: Run
    ) -> None:
        counted = self._count(evaluation, index, places, run)
        if counted is None:
            return
        span_id = evaluation.span_id
        if span_id:
            node = run.nodes.get(span_id)
            if node is not None and (node.server or not node.parent):
                # the span is its own request: no walk
                self._outcome(counted, node, run, fresh=not run.replaying)
            else:
                self._walk(counted, span_id, 0, run, fresh=not run.replaying)
        else:
            run.out.unmatched += 1  # a root evaluation span, or a record outside a span
        if counted.trace_id and (counted.rules.conversions or counted.rules.failures):
            self._note(counted, run)

    def _count(
        self, evaluation: Evaluation, index: int, places: tuple[Attributes, Attributes], run: Run
    ) -> Counted | None:
        """The exposure of one evaluation, or why it is not counted."""
        flag = evaluation.flag
        rules = run.rules[flag] if flag in run.rules else self._rules(flag, run)
        if rules is None:
            run.out.not_published(flag, index, ts_ms(evaluation.time_ns))
            return None
        variant, time_ns, window = evaluation.variant, evaluation.time_ns, run.window
        arm = None if variant is None else rules.arms.get(variant)
        if arm is None or not window.earliest_ns <= time_ns <= window.latest_ns:
            refuse_unarmed(evaluation, rules, index, run)  # no arm, or at an implausible time
            return None
        ts = ts_ms(time_ns)
        if evaluation.version is not None:
            version = version_of(evaluation.version)
            if version is None:
                text = evaluation.version[:64]
                run.refuse(index, "bad_version", f"{flag}: version {text!r} is not a flag version")
                return None
        else:
            version = version_at(rules.timeline, rules.version, ts, self._guard_ms)
            if version is None:
                run.out.guarded += 1
                return None
        unit = unit_text(evaluation.unit) or unit_from(rules.unit_attribute, *places)
        if unit is None:
            if not evaluation.trace_id:
                run.refuse(index, "no_unit", f"{flag}: no unit named, and no trace to stand in")
                return None
            unit = f"trace:{evaluation.trace_id}"
            run.out.request_level += 1
        anchor = evaluation.span_id or f"log:{evaluation.time_ns}:{unit}"
        digest = span_digest(evaluation.trace_id, anchor, flag)
        exposure = id_of("x", digest)
        if exposure not in run.ids and not run.replaying:  # run.emit, inlined (every evaluation)
            run.ids.add(exposure)
            run.out.events.append(
                ExposureIn(
                    v=1, id=exposure, ts=ts, flag=flag, unit=unit, arm=arm, flag_version=version
                )
            )
        return Counted(
            flag, unit, arm, version, evaluation.trace_id, rules, anchor, digest, run.replaying
        )

    def _walk(self, counted: Counted, span_id: str, hops: int, run: Run, *, fresh: bool) -> None:
        """Up from ``span_id`` to the request; wait in the buffer for a span not seen yet.
        ``fresh``: the evaluation, or a span on the way so far, was not replayed."""
        spans = self._buffer.spans
        while True:
            node = run.nodes.get(span_id)
            if node is not None:
                fresh = fresh or not run.replaying
            else:
                node = spans.get(span_id)
                fresh = fresh or (node is not None and self._replayed.get(span_id) is None)
            if node is None:
                waiting = Waiting(counted, hops, fresh)
                run.out.unmatched += self._buffer.wait(span_id, waiting, run.now_ms)
                return
            if node.server or not node.parent:
                self._outcome(counted, node, run, fresh=fresh)
                return
            if hops >= MAX_HOPS:
                run.out.unmatched += 1
                return
            span_id, hops = node.parent, hops + 1

    def _outcome(self, counted: Counted, node: Node, run: Run, *, fresh: bool) -> None:
        digest = counted.digest  # of the exposure's span: usually the request's too
        if node.span_id != counted.anchor:
            digest = span_digest(counted.trace_id, node.span_id, counted.flag)
        request = id_of("r", digest)
        if request in run.ids:
            return
        least, status = counted.rules.error_status_min, node.http_status
        run.joined(
            RequestIn(
                v=1,
                id=request,
                ts=ts_ms(node.end_ns),
                flag=counted.flag,
                unit=counted.unit,
                arm=counted.arm,
                flag_version=counted.version,
                error=is_error(node, least),
                latency_ms=latency_ms(node),
                # named where its status made it a failure: a 4xx only where the plan says so
                failure=node.failure if status is not None and status >= least else None,
            ),
            fresh=fresh,
        )

    def _note(self, counted: Counted, run: Run) -> None:
        """Remember the evaluation for later conversions; count those already parked.

        Only an evaluation of a flag that counts conversions is noted: no other could be
        credited with one, so the buffer's map of traces holds none of the others.
        """
        noted, trace_id = run.noted, counted.trace_id
        if noted is None:
            self._buffer.note(trace_id, counted.flag, counted, run.now_ms)
        else:  # in the buffer at the end of the batch, as if put now (in the same order)
            flags = noted.pop(trace_id, None)
            if flags is None:
                flags = self._buffer.evaluated(trace_id)
            flags.setdefault(counted.flag, counted)
            noted[trace_id] = flags
        for conversion in self._buffer.parked(trace_id):
            if credits(counted.rules, conversion.name):
                self._conversion(conversion, counted, run)

    def _converted(self, conversion: Conversion, run: Run) -> None:
        """A conversion: counted for each flag evaluated in its trace, and parked for later ones."""
        for counted in self._buffer.evaluated(conversion.trace_id).values():
            if credits(counted.rules, conversion.name):
                self._conversion(conversion, counted, run)
        self._buffer.park(conversion.trace_id, conversion, run.now_ms)

    def _conversion(self, conversion: Conversion, counted: Counted, run: Run) -> None:
        fresh = not (conversion.replayed and counted.replayed)
        if conversion.name in FAILURES:
            trace_id, anchor, ts = conversion.trace_id, conversion.anchor, conversion.ts
            named = conversion.attributes
            event = failure_event(conversion.name, trace_id, anchor, ts, counted, named=named)
            run.joined(event, fresh=fresh)
            return
        kind = f"c:{conversion.name}"
        rules = counted.rules
        run.joined(
            ConversionIn(
                v=1,
                id=event_id(kind, conversion.trace_id, conversion.anchor, counted.flag),
                ts=conversion.ts,
                flag=counted.flag,
                unit=counted.unit,
                arm=counted.arm,
                flag_version=counted.version,
                name=conversion.name,
                value=conversion_value(conversion.attributes.get(rules.conversion_value)),
            ),
            fresh=not (conversion.replayed and counted.replayed),
        )
