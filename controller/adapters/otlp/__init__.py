"""OTLP in: the HTTP routes (``/v1/traces``, ``/v1/logs``) and protobuf's side of decoding."""

from controller.adapters.otlp.routes import OtlpRoutes, OtlpSink, Signal, Taken

__all__ = [
    "OtlpRoutes",
    "OtlpSink",
    "Signal",
    "Taken",
]
