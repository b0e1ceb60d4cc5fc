"""The Unleash sync and segments: read when a ring names one, alerted by name when unwritable."""

from __future__ import annotations

from datetime import timedelta

from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.rollout import CommandInput
from controller.core.rules.held_segments import NO_HELD_SEGMENTS, HeldSegments
from controller.core.wire.messages import CommandAction
from tests.unit.daemon.backends.test_backend_sync import FLAG, NOW, make_world

PLAN = parse_plan(
    {
        "limits": {"error_rate": 0.01},
        "backend": {"unleash": {"feature": "new-checkout"}},
        "stages": [
            {"audience": 'userId in segment("beta")', "percent": 100, "min_duration": "1h"},
            {"percent": 100, "min_duration": timedelta(hours=1)},
        ],
    }
)


def _start() -> CommandInput:
    return CommandInput(
        action=CommandAction.START,
        flag=FLAG,
        command_id="c1",
        actor="ana",
        now=NOW,
        plan=PLAN,
        new_rollout_id="r1",
        new_salt="s",
    )


async def test_a_segment_put_after_the_sweep_is_read_before_it_is_missed() -> None:
    world = make_world()
    store: dict[str, frozenset[str]] = {}
    reads: list[int] = []

    async def held(previous: HeldSegments) -> HeldSegments:
        reads.append(1)
        out = NO_HELD_SEGMENTS
        for name, ids in store.items():
            out = out.with_segment(name, 1, ids=ids, rule=None)
        return out

    world.sync.attach(world.engine.rollouts.apply, held)
    await world.engine.rollouts.apply(FLAG, _start())
    # A segment that is nowhere: the flag's sync fails by name, nothing is written
    assert await world.sync_once([FLAG]) == set()
    assert world.unleash.writes == []
    (alert,) = world.alerts("input_failed")
    assert "segment 'beta' is not held" in str(alert["summary"])
    # Put since the last sweep: read again, and written
    store["beta"] = frozenset({"u1", "u2"})
    assert await world.sync_once([FLAG]) == set()
    (written,) = world.unleash.writes
    assert written.specs is not None
    assert [c.values for s in written.specs for c in s.constraints] == [("u1", "u2")]
    assert len(reads) == 2


async def test_a_list_too_long_for_unleash_is_alerted_and_nothing_is_written() -> None:
    world = make_world()

    async def held(previous: HeldSegments) -> HeldSegments:
        return NO_HELD_SEGMENTS.with_segment(
            "beta", 1, ids=frozenset(f"u{i}" for i in range(251)), rule=None
        )

    world.sync.attach(world.engine.rollouts.apply, held)
    await world.engine.rollouts.apply(FLAG, _start())
    for _ in range(2):
        assert await world.sync_once([FLAG]) == set()
    assert world.unleash.writes == []
    (alert,) = world.alerts("input_failed")
    assert "segment 'beta' holds 251 ids, Unleash takes 250" in str(alert["summary"])
