"""The OTLP topics' settings and the flags their records are translated against."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from controller.core.common import StoreError
from controller.core.rollouts.plan_parts import TelemetryPlan
from controller.daemon.running.otlp_topics import flags_of
from controller.ports import Loaded
from controller.settings import OtlpSettings, Settings
from tests.unit.core.machine.gate.test_gate import rollout


@pytest.mark.parametrize(
    ("options", "spans", "logs"),
    [
        ({}, "otlp_proto", "otlp_proto"),
        ({"encoding": "otlp_json"}, "otlp_json", "otlp_json"),
        ({"logs_encoding": "otlp_json"}, "otlp_proto", "otlp_json"),
        ({"encoding": "otlp_json", "spans_encoding": "otlp_proto"}, "otlp_proto", "otlp_json"),
    ],
)
def test_each_topic_reads_its_own_encoding_else_the_common_one(
    options: dict[str, Any], spans: str, logs: str
) -> None:
    settings = OtlpSettings(**options)
    assert settings.encoding_of(settings.spans_topic) == spans
    assert settings.encoding_of(settings.logs_topic) == logs


def test_the_collectors_defaults_and_off_unless_enabled() -> None:
    otlp = Settings().otlp
    assert (otlp.enabled, otlp.spans_topic, otlp.logs_topic) == (False, "otlp_spans", "otlp_logs")
    assert otlp.encoding == "otlp_proto"


@pytest.mark.parametrize(
    "options",
    [
        {"spans_topic": "same", "logs_topic": "same"},
        {"encoding": "otlp_raw"},
        {"spans_topic": "no spaces"},
        {"max_batch_records": 0},
    ],
)
def test_settings_that_cannot_work_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OtlpSettings(**options)


class _States:
    def __init__(self, loaded: dict[str, Loaded | StoreError]) -> None:
        self.loaded = loaded

    async def load_all(self) -> dict[str, Loaded | StoreError]:
        return self.loaded


async def test_flags_are_the_stored_rollouts_with_their_plans_telemetry() -> None:
    telemetry = TelemetryPlan(variants={"on": "treatment", "off": "control"})
    plain = rollout().model_copy(update={"flag": "plain", "flag_version": 4})
    mapped = rollout().model_copy(update={"flag": "mapped"})
    mapped = mapped.model_copy(
        update={"plan": mapped.plan.model_copy(update={"telemetry": telemetry})}
    )
    unpublished = rollout().model_copy(update={"flag": "draft", "flag_version": 0})
    states = _States(
        {
            "plain": Loaded(1, plain),
            "mapped": Loaded(2, mapped),
            "draft": Loaded(1, unpublished),
            "gone": Loaded(3, None),
            "broken": StoreError("unreadable"),
        }
    )
    daemon = SimpleNamespace(rollouts=SimpleNamespace(states=states))
    flags = flags_of(daemon, max_age=1.0)  # type: ignore[arg-type]
    assert flags.lookup("plain") is None  # nothing read yet
    await flags.fresh()
    plain_rules = flags.lookup("plain")
    assert plain_rules is not None
    assert plain_rules.version == 4
    assert dict(plain_rules.arms) == {"treatment": "treatment", "control": "control"}
    mapped_rules = flags.lookup("mapped")
    assert mapped_rules is not None
    assert dict(mapped_rules.arms) == {"on": "treatment", "off": "control"}
    assert [flags.lookup(f) for f in ("draft", "gone", "broken", "other")] == [None] * 4
