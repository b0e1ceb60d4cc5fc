"""OpenTelemetry intake (#40): OTLP/protobuf exports decoded, and the partial-success answers."""

from controller.adapters.otlp.proto import (
    decode_logs,
    decode_logs_proto,
    decode_traces,
    decode_traces_proto,
    logs_response,
    traces_response,
)

__all__ = [
    "decode_logs",
    "decode_logs_proto",
    "decode_traces",
    "decode_traces_proto",
    "logs_response",
    "traces_response",
]
