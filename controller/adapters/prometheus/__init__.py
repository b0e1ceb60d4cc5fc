"""Prometheus as a metric source: instant queries, bounded, and their answers read strictly."""

from controller.adapters.prometheus.answers import SourceUnavailable, decode
from controller.adapters.prometheus.client import PrometheusSource, check_syntax, where

__all__ = [
    "PrometheusSource",
    "SourceUnavailable",
    "check_syntax",
    "decode",
    "where",
]
