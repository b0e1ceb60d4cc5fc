"""The console's list row of a rollout whose plan names a holdout the apps send no cohort for:
it needs attention, in the words ``rolloutctl status`` and the rollout's page use, where its
own arms' sample ratio alone would read healthy."""

from __future__ import annotations

from collections.abc import Sequence

from controller.adapters.memory import MemoryGateHistory, MemoryStates
from controller.console import pages
from controller.core.reading import HoldoutCheck, RolloutStatus, holdout_line, ratio_word
from controller.core.rollouts import Rollout
from controller.ctl.looking import views
from controller.daemon.serving.console import ConsoleData
from controller.ports import StateWrite
from tests.unit.console.test_console_render import point_with, served
from tests.unit.core.machine.gate.test_gate import EARLY, rollout

MISSING = HoldoutCheck(
    holdout="q4",
    missing=True,
    text="no held-out units against 100 expected (do the apps report cohort holdout with"
    " their events?)",
)
PRESENT = HoldoutCheck(
    holdout="q4", missing=False, text="100 held-out units against 100 expected (sequential p = 1)"
)


def _status(holdout: HoldoutCheck | None) -> RolloutStatus:
    return RolloutStatus.model_validate(served(holdout=holdout))


def test_a_missing_holdout_cohort_needs_attention_in_the_status_words() -> None:
    # Given a running rollout whose arms' sample ratio is fine, but no held-out unit
    status = _status(MISSING)

    # Then its health is not good news, and says what status and the rollout's page say
    said = ("attention", "holdout q4: " + MISSING.text)
    assert pages.health(status, None) == said
    assert said[1] == holdout_line(MISSING)
    assert f"  {said[1]}" in views.status_detail(status).splitlines()
    assert ratio_word("ok", MISSING) == "ok; holdout cohort missing"


def test_harm_comes_first_and_a_holdout_with_its_cohort_says_nothing() -> None:
    harmed = point_with(p_value=0.01)
    assert pages.health(_status(MISSING), harmed)[1].endswith("p = 0.01")
    # a guardrail watched (above its tolerance, not yet significant) is outranked by it
    assert pages.health(_status(MISSING), point_with())[0] == "attention"
    assert pages.health(_status(PRESENT), point_with())[0] == "watching"
    assert pages.health(_status(PRESENT), None) == ("healthy", "")
    assert pages.health(_status(None), None) == ("healthy", "")


async def test_the_list_reads_each_active_rollout_s_holdout_and_says_it_in_its_row() -> None:
    states = MemoryStates()
    for flag in ("held", "plain"):
        r = rollout().model_copy(update={"flag": flag, "rollout_id": f"r-{flag}"})
        await states.save(flag, StateWrite(rev=0, rollout=r))
    asked: list[list[str]] = []

    async def held_out(rollouts: Sequence[Rollout]) -> dict[str, HoldoutCheck]:
        asked.append(sorted(r.flag for r in rollouts))
        return {"held": MISSING}

    async def status(flag: str | None) -> list[RolloutStatus]:
        return []

    console = ConsoleData(
        states=states,
        history=MemoryGateHistory(),
        status=status,
        clock=lambda: EARLY,
        held_out=held_out,
    )
    rows = {r.flag: r for r in await console.rows()}
    assert asked == [["held", "plain"]]  # one read for every active rollout
    assert (rows["held"].health, rows["held"].health_reason) == (
        "attention",
        holdout_line(MISSING),
    )
    assert rows["held"].holdout == MISSING
    assert (rows["plain"].health, rows["plain"].holdout) == ("healthy", None)

    html = pages.rollout_list([rows["held"]], [])
    assert '<span class="health attention">needs attention</span>' in html
    assert pages.esc(holdout_line(MISSING)) in html
    assert "healthy" not in html
