"""One exception root for the controller.

Every exception class the controller defines derives from
:class:`ControllerError`; those defined in other rooms are here with their
module, and some keep a builtin base too, so ``except TimeoutError`` or
``except ValueError`` still catch them. ``tests/unit/house/test_error_tree.py``
fails when a class is outside the root or missing from this tree
(private ones, which never leave their module, are not listed).

The tree::

    ControllerError                 retriable: bool, carried as data
    ├── ConfigError                 bad settings or plan; permanent
    ├── StoreError                  anything from the aggregate/state store
    │   ├── StoreUnavailable        connection lost, timeout; retriable
    │   ├── FencedError             a newer owner holds the partition; permanent
    │   ├── LostWrites              the store lost writes it acknowledged; replay
    │   ├── FlushRefused            the store would refuse a batch; it wrote nothing
    │   └── DuplicateEvents         a batch holds events the store counted; it wrote nothing
    ├── BrokerError                 anything from the Kafka-protocol broker
    │   ├── BrokerUnavailable       cannot reach the broker; retriable
    │   └── MessageTooLarge         the broker will never take this message; permanent
    ├── BackendUnavailable          adapters.unleash: Unleash did not answer or cannot serve
    │   └── Unreadable              an answer that is not what Unleash's API documents
    ├── Unreachable                 adapters.http_client: no answer to an HTTP call; retriable
    ├── SourceUnavailable           adapters.prometheus: no usable answer from the metrics
    │                               server; retriable
    ├── BatchNotSent                adapters.http: an HTTP batch not sent now; resend it
    ├── ChangedEvents               adapters.http: ids accepted before with other content
    ├── OfrepFailure                adapters.ofrep.context: a request answered with an OFREP error
    ├── StreamLimit                 adapters.ofrep.streams: too many event streams open; retriable
    ├── Busy                        adapters.otlp: no turn for an OTLP export in time; resend it
    ├── BodyTooLarge                adapters.otlp: a gzip body that inflates past its bound
    ├── NotGzip                     adapters.otlp: a body that is not a whole gzip stream
    ├── DeadlineExceeded            deadlines: a call over its deadline (also a TimeoutError)
    ├── TooLarge                    deadlines: an answer over its size bound (also a ValueError)
    ├── PollFailed                  sdk.transport: a poll of /flags got no usable answer
    │   └── AnswerTooLarge          the answer was over the poller's bound
    ├── PayloadError                integrations.monitors: a webhook not understood (also a
    │                               ValueError)
    ├── UnmappedMonitor             integrations.monitors: a webhook for a monitor mapped to no flag
    ├── RuleSyntaxError             core.rule_text: a refused audience rule (also a ValueError)
    ├── TooCostly                   core.recurrence: a window query walks too many occurrences
    ├── Refused                     core.telemetry: an item of an OTLP export not counted, and why
    ├── TemplateError               core.metrics_source: a query template refused (also a
    │                               ValueError)
    ├── UnsafeValue                 core.metrics_source: a value that may not fill a query (also
    │                               a ValueError)
    ├── ReadingProblem              core.metrics_source: an answer a guardrail cannot use (also
    │                               a ValueError)
    ├── UsageError                  ctl.usage: arguments that make no valid command
    ├── ServiceUnavailable          dev.processes: a backing service cannot run here (also a
    │                               RuntimeError)
    └── DemoError                   demo.session: the demo's controller did not start or died

Adapters translate third-party errors (aiokafka, redis, httpx) into this tree
at their edge, so the services above them handle one family only.
"""

from __future__ import annotations


class ControllerError(Exception):
    """Root of every error the controller raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(ControllerError):
    """Settings or a plan are invalid; fixing them needs a person."""


class StoreError(ControllerError):
    """The store refused or failed an operation."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; the same call may succeed later."""

    retriable = True


class FencedError(StoreError):
    """A flush carried a stale fencing epoch: another consumer owns the partition."""


class LostWrites(StoreError):
    """The partition's stored epoch or offset is behind this owner's: the store lost
    writes it had acknowledged (an asynchronous replica was promoted without them).

    Not another owner: the partition is claimed again and read from ``stored_offset``
    (None: nothing stored), which is exact because a flush writes the offset and the
    aggregates in one script.
    """

    def __init__(self, message: str, *, stored_offset: int | None) -> None:
        super().__init__(message)
        self.stored_offset = stored_offset


class FlushRefused(StoreError):
    """The store would refuse part of a batch (a key of the wrong type, a sum that
    would overflow), so the flush wrote nothing.

    ``per_cell`` says whether one cell of the batch is to blame, so that the
    records behind it can be set aside; otherwise a partition-wide key is
    damaged and the batch waits (retriable) until a person repairs it.
    """

    def __init__(self, message: str, *, per_cell: bool) -> None:
        super().__init__(message, retriable=not per_cell)
        self.per_cell = per_cell


class DuplicateEvents(StoreError):
    """A batch holds events whose ids the partition counted within its window, so
    the flush wrote nothing: the batch is folded again without ``ids`` and flushed.
    """

    def __init__(self, message: str, *, ids: frozenset[str]) -> None:
        super().__init__(message, retriable=False)
        self.ids = ids


class BrokerError(ControllerError):
    """The Kafka-protocol broker refused or failed an operation."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached right now."""

    retriable = True


class MessageTooLarge(BrokerError):
    """A message is larger than the broker accepts: sending it again cannot help."""
