"""OpenTelemetry from Kafka: the topics the Collector's Kafka exporter writes.

The OpenTelemetry Collector's ``kafka`` exporter writes each export request of
traces to ``otlp_spans`` and of logs to ``otlp_logs`` by default, in the
encoding its ``encoding`` option names (``otlp_proto`` unless told otherwise).
With ``enabled``, the daemon reads both topics as it reads the events topic:
their flag evaluations and server spans are translated into exposures and
request outcomes and counted exactly once, offsets and aggregates in one flush.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

OtlpEncoding = Literal["otlp_proto", "otlp_json"]
"""The Collector Kafka exporter's encodings the daemon reads."""
_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"


class OtlpSettings(BaseModel):
    """The OpenTelemetry Collector's Kafka topics, read beside the events topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        default=False,
        description="Read the Collector's OTLP topics (`spans_topic`, `logs_topic`) into the "
        "aggregates, exactly once (docs/ingest.md, *OpenTelemetry from Kafka*).",
    )
    spans_topic: str = Field(
        default="otlp_spans",
        pattern=_TOPIC,
        description="Traces, as the Collector's Kafka exporter writes them (its default).",
    )
    logs_topic: str = Field(
        default="otlp_logs",
        pattern=_TOPIC,
        description="Logs, as the Collector's Kafka exporter writes them (its default).",
    )
    encoding: OtlpEncoding = Field(
        default="otlp_proto",
        description="The exporter's `encoding`: `otlp_proto` (an ExportTraceServiceRequest or "
        "ExportLogsServiceRequest in protobuf per record) or `otlp_json` (the same in OTLP/JSON).",
    )
    spans_encoding: OtlpEncoding | None = Field(
        default=None, description="The spans topic's encoding, when it differs from `encoding`."
    )
    logs_encoding: OtlpEncoding | None = Field(
        default=None, description="The logs topic's encoding, when it differs from `encoding`."
    )
    max_record_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="A larger record is not decoded: it goes to the DLQ as `oversize`.",
    )
    max_batch_records: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Records per fold and flush (each holds a whole export, often hundreds of "
        "spans).",
    )
    dedupe_max_ids: int = Field(
        default=1_000_000,
        ge=1,
        le=10_000_000,
        description="The most event ids the OTLP topics remember for `ingest.dedupe_seconds`, "
        "all their partitions together (a Collector may send a batch again to another "
        "partition); past it the oldest are forgotten first (about 100 bytes of Redis each).",
    )

    @model_validator(mode="after")
    def _topics_differ(self) -> OtlpSettings:
        if self.spans_topic == self.logs_topic:
            raise ValueError("spans_topic and logs_topic must differ: each holds one signal")
        return self

    def encoding_of(self, topic: str) -> OtlpEncoding:
        """The encoding of ``topic`` (one of the two topics)."""
        own = self.spans_encoding if topic == self.spans_topic else self.logs_encoding
        return own or self.encoding
