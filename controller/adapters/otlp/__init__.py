"""OpenTelemetry intake: OTLP/protobuf exports decoded, the partial-success answers,
and the OTLP/HTTP routes (``POST /v1/traces``, ``POST /v1/logs``)."""

from controller.adapters.otlp.admission import Admission, Busy
from controller.adapters.otlp.flat import decode_traces_flat, decode_traces_projected
from controller.adapters.otlp.native import decode_traces_native, native_decoder
from controller.adapters.otlp.proto import (
    decode_logs,
    decode_logs_proto,
    decode_traces,
    decode_traces_proto,
    logs_response,
    traces_response,
)
from controller.adapters.otlp.routes import OtlpRoutes, OtlpSink, Signal, Taken

__all__ = [
    "Admission",
    "Busy",
    "OtlpRoutes",
    "OtlpSink",
    "Signal",
    "Taken",
    "decode_logs",
    "decode_logs_proto",
    "decode_traces",
    "decode_traces_flat",
    "decode_traces_native",
    "decode_traces_projected",
    "decode_traces_proto",
    "logs_response",
    "native_decoder",
    "traces_response",
]
