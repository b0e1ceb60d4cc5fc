"""The rebuilder applies each flag's rebuild through the one writer, for the flags this
instance owns, and tells readiness which are still being rebuilt."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from controller.adapters.memory import MemoryAggregates, MemoryOutputs, MemoryStates
from controller.adapters.redis import RedisClient, StoreMarker
from controller.core.drafting import Rebuild, TopicHistory
from controller.core.serving import VersionFloors
from controller.daemon.rollouts.engine import build_engine
from controller.daemon.running import rebuilding
from controller.daemon.running.rebuilding import Rebuilder, rebuild_alert, topic_history
from controller.daemon.serving import StoreLoss
from controller.ports import DeadLetter
from controller.settings import (
    EngineSettings,
    KafkaSettings,
    LlmSettings,
    RedisSettings,
    TopicSettings,
)
from tests.unit.core.drafting.test_rebuild import STARTED, decision, start_command, state

NOW = datetime(2026, 11, 28, 21, tzinfo=UTC)


class NoDeadLetters:
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"unexpected dead letters: {letters}")


async def read(history: TopicHistory, floors: VersionFloors) -> None:
    """The topics of a rollout promoted to its third stage at version 3, then paused."""
    history.take_command(start_command("c1"))
    for value in (
        STARTED,
        decision("promote", "running", 1, n=2),
        decision("promote", "running", 2, n=3),
        decision("pause", "paused", 2, n=4),
    ):
        history.take_decision(value)
    history.take_flag_state(state("salt-1"))
    floors.take(state("salt-1"))


async def test_a_flag_is_rebuilt_once_owned_and_readiness_follows() -> None:
    states, outputs, loss = MemoryStates(), MemoryOutputs(), StoreLoss()
    engine = build_engine(
        settings=EngineSettings(),
        topics=TopicSettings(),
        states=states,
        aggregates=MemoryAggregates(),
        outputs=outputs,
        dead_letters=NoDeadLetters(),
        llm=LlmSettings(mode="off"),
        advisor=None,
        clock=lambda: NOW,
    )
    owned: set[str] = set()
    rebuilder = Rebuilder(
        rollouts=engine.rollouts,
        states=states,
        read=read,
        owns=owned.__contains__,
        loss=loss,
        clock=lambda: NOW,
    )
    # Given the plan made from the topics, the flag owned by no one yet
    planned = await rebuilder.plan()
    assert (list(planned), rebuilder.kept) == (["checkout"], set())
    assert await rebuilder.step() == []
    assert (loss.degraded() or {}).get("rebuilding") == ["checkout"]
    # ...served meanwhile as it will be rebuilt (nothing of it was held before the loss)
    (served,) = loss.served([], None)
    assert (served.rollout_id, served.stage, served.phase.value) == ("r1", 2, "paused")
    assert served.flag_version > 3
    assert loss.untold() == {}  # the alert of the rebuild names it
    # When this instance owns it
    owned.add("checkout")
    assert await rebuilder.step() == ["checkout"]
    # Then it is its rollout again, at its stage, paused, above the versions the topics saw
    rollout = (await states.load("checkout")).rollout
    assert rollout is not None
    assert rollout.flag_version == served.flag_version  # served as it was rebuilt
    assert (rollout.rollout_id, rollout.salt, rollout.stage, rollout.phase.value) == (
        "r1",
        "salt-1",
        2,
        "paused",
    )
    assert min(rollout.stage_flag_versions()) > 3
    published = [v for topic, _, v in outputs.sent if topic == "rollout.flag-state"]
    assert len(published) == 2  # started at its stage, then paused: no earlier stage served
    assert loss.served([rollout], None) == [rollout]  # the next read finds it back
    assert loss.degraded() is None
    assert rebuilder.pending == {}
    # ...and a second plan finds nothing to rebuild: the store has it
    assert await rebuilder.plan() == {}
    assert rebuilder.kept == {"checkout"}


def test_the_alert_at_start_names_each_flag_rebuilt_and_each_not() -> None:
    history = TopicHistory()
    history.take_command(start_command("c1"))
    history.take_decision(STARTED)
    history.take_decision(decision("promote", "running", 2))
    rebuild = history.rebuild("checkout")
    assert isinstance(rebuild, Rebuild), rebuild
    alert = rebuild_alert({"checkout": rebuild}, {"search": "its rollout r2 was killed"})
    assert alert.kind == "store_lost"
    assert "checkout: rollout r1 running at stage 3" in alert.summary
    assert "1 cannot be: search" in alert.summary
    assert alert.details["identity_lost"] is True
    # ...and the alert of a start that found the identity, not the set of the flags
    kept = rebuild_alert({"checkout": rebuild}, {}, identity_lost=False)
    assert "its identity at start but not the set of the controller's flags" in kept.summary
    assert kept.details["identity_lost"] is False


# -- the docs say what is rebuilt, from which topic ----------------------------------------

DOCS = Path(__file__).parents[3] / "docs"


def _section(doc: str, start: str, end: str) -> str:
    text = (DOCS / doc).read_text(encoding="utf-8")
    return text[text.index(start) : text.index(end, text.index(start))]


async def test_the_docs_name_the_topics_a_rebuild_reads_and_what_it_needs_of_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[str] = []

    async def recorded(_kafka: object, topics: list[str], _take: object, **_bounds: object) -> None:
        read.extend(topics)

    monkeypatch.setattr(rebuilding, "read_from_beginning", recorded)
    topics = TopicSettings()
    await topic_history(KafkaSettings(), topics)(TopicHistory(), VersionFloors())
    section = _section("operations.md", "**When Redis loses its data.**", "**Security.**")
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    read_from = {row.split(" | ")[1] for row in rows[1:]}
    # Each topic read is named in the table's "read from" column, and no other is read
    assert sorted(read) == sorted([topics.decisions, topics.commands, topics.flag_state])
    assert all(any(f"`{topic}`" in cell for cell in read_from) for topic in read)
    # ...the events topic is needed for nothing: the rebuilt stage counts its own events
    events = next(row for row in rows if f"`{topics.events}`" in row)
    assert events.split(" | ")[1].startswith("nothing: the rebuilt stage counts only events")
    assert f"none of `{topics.events}`" in events
    # ...and what the docs call the identity, the alert and readiness's part are the code's
    marker = StoreMarker(cast("RedisClient", None), settings=RedisSettings(key_prefix="P"))
    assert f"`{marker.key}`" in section
    assert "`store_lost`" in section
    loss = StoreLoss()
    loss.rebuilding({"checkout"})
    assert set(loss.degraded() or {}) == {"store", "reason", "flags", "rebuilding"}
    assert "under `degraded`" in section
    audit = _section("audit.md", "**After Redis is lost.**", "Nothing is sent without")
    assert '"When Redis loses its data"' in " ".join(audit.split())
