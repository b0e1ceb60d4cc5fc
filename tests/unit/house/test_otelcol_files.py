"""The Collector's files agree with the docs, the controller and each other.

``ops/otelcol/config.yaml`` is what docs/otel.md shows (included whole) and what
the tests run; ``ops/otelcol/builder-config.yaml`` builds it from one Collector
release. Pure file parsing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.dev.otelcol import CONFIG, collector_variables, config_variables
from controller.settings import OtlpSettings

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "ops" / "otelcol" / "builder-config.yaml"
_DEFAULT = re.compile(r"^\$\{env:[A-Z0-9_]+:-([^}]*)\}$")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _default(value: str) -> str:
    """The default of one ``${env:NAME:-default}``."""
    found = _DEFAULT.match(value)
    assert found is not None, value
    return found.group(1)


def test_the_docs_show_the_configuration_the_tests_run() -> None:
    text = (ROOT / "docs" / "otel.md").read_text(encoding="utf-8")
    assert '--8<-- "ops/otelcol/config.yaml"' in text


def test_a_run_sets_every_variable_the_configuration_reads_and_no_other() -> None:
    given = collector_variables(ports=(1, 2, 3), brokers="b:9092", topics=("s", "l"))
    assert set(given) == config_variables(CONFIG)


@pytest.mark.parametrize(
    ("signal", "topic", "encoding"),
    [
        ("traces", OtlpSettings().spans_topic, OtlpSettings().encoding),
        ("logs", OtlpSettings().logs_topic, OtlpSettings().encoding),
    ],
)
def test_by_default_the_collector_writes_what_the_controller_reads(
    signal: str, topic: str, encoding: str
) -> None:
    exporter = _yaml(CONFIG)["exporters"]["kafka/rollouts"][signal]
    assert (_default(exporter["topic"]), exporter["encoding"]) == (topic, encoding)


def test_every_pipeline_runs_the_otlp_receiver_the_batch_processor_and_the_kafka_exporter() -> None:
    pipelines = _yaml(CONFIG)["service"]["pipelines"]
    assert set(pipelines) == {"traces", "logs"}
    for pipeline in pipelines.values():
        assert pipeline == {
            "receivers": ["otlp"],
            "processors": ["batch"],
            "exporters": ["kafka/rollouts"],
        }


def _versions(manifest: dict[str, Any]) -> set[str]:
    kinds = ("receivers", "processors", "exporters", "providers")
    return {entry["gomod"].split()[1] for kind in kinds for entry in manifest[kind]}


def test_the_collector_is_built_from_one_release_with_the_builder_of_that_release() -> None:
    manifest = _yaml(MANIFEST)
    release = f"v{manifest['dist']['version']}"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    builder = re.search(r"^OTELCOL_BUILDER_VERSION \?= (\S+)$", makefile, re.MULTILINE)
    assert builder is not None
    # The core's unstable modules and contrib carry the release's number; its stable
    # modules (the configuration providers) carry 1.x of the same release.
    assert _versions(manifest) - {release} == {"v1.61.0"}
    assert builder.group(1) == release


def test_a_batch_is_bounded_so_that_its_record_fits_the_brokers_message_limit() -> None:
    # One batch is one Kafka record; an unbounded one outgrows 1 MB and is dropped whole.
    batch = _yaml(CONFIG)["processors"]["batch"]
    assert 0 < batch["send_batch_max_size"] <= 1000
    assert batch["send_batch_size"] <= batch["send_batch_max_size"]
