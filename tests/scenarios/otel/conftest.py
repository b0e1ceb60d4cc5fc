"""The fixtures of the OpenTelemetry scenarios: the real Collector, Apache Kafka under it,
and Node with OpenFeature's and OpenTelemetry's packages. Each missing one fails the test
under CI and skips it elsewhere, saying how to install it."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.dev.otelcol import require_otelcol
from tests.conftest import _service_unavailable
from tests.support.backing.kafka_service import chosen_broker
from tests.support.backing.services import ServiceUnavailable
from tests.support.clients.ofrep import node_home


@pytest.fixture
def real_kafka(request: pytest.FixtureRequest, apache_kafka: Path) -> str:
    """Apache Kafka: the session's node under ``RC_TEST_BROKER=kafka``, else one of its own."""
    if chosen_broker() == "kafka":
        return str(request.getfixturevalue("kafka_bootstrap"))
    return str(request.getfixturevalue("kafka_broker_factory")().bootstrap)


@pytest.fixture
def otelcol(pytestconfig: pytest.Config) -> Path:
    """The Collector ``make otelcol`` built."""
    try:
        return require_otelcol()
    except ServiceUnavailable as exc:
        _service_unavailable(pytestconfig, exc)


@pytest.fixture
def otel_node(node: str, pytestconfig: pytest.Config) -> tuple[str, Path]:
    """Node, and where its OpenFeature and OpenTelemetry packages are installed."""
    try:
        return node, node_home()
    except ServiceUnavailable as exc:
        _service_unavailable(pytestconfig, exc)
