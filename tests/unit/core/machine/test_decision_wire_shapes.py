"""Every producer's decision publishes its evidence as before, key for key.

``decision_shapes.json`` holds the evidence of the first decision of each
shape the cases in :mod:`decision_cases` make (the machine's tables, the
release pipeline, the advisor, schedules, windows, approvals, app keys and
ingest commands), written when every producer still built an open object:
the typed evidence must publish the same JSON (the same keys in the same
order, the same values and number types), so a consumer of
``rollout.decisions`` sees no change.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.unit.core.machine.decision_cases import ALL, cases

SHAPES = Path(__file__).with_name("decision_shapes.json")
STORED: dict[str, object] = orjson.loads(SHAPES.read_bytes())
MADE = cases(*ALL)


def test_the_cases_make_the_decisions_stored() -> None:
    assert list(MADE) == list(STORED)


@pytest.mark.parametrize("name", list(STORED))
def test_each_producer_publishes_its_evidence_as_before(name: str) -> None:
    got, stored = MADE.get(name), STORED[name]
    assert got == stored
    assert orjson.dumps(got) == orjson.dumps(stored)  # the same order, integers stay integers


def test_the_stored_shapes_cover_every_producer() -> None:
    producers = {name.split("/")[0] for name in STORED}
    assert producers >= {"machine", "watch", "health", "windows", "gate", "advisor", "opinion"}
    assert producers >= {"approving", "schedule", "release", "ingest", "app_key"}
