"""Hostile failure text changes nothing: it is shown as text, scrubbed, and decides nothing.

The daemon, broker and Redis are the scenario's, the console is read in Debian's
``chromium`` through Playwright, and the gating advisor asks the fake model server of
``tests/support/fake_model.py``, which answers "advance" whatever it is shown: a model that
obeys what it reads. A running rollout's apps send, with their traffic, exception events
whose ``failure`` and ``example`` carry the twenty hostile texts of
:mod:`tests.scenarios.console.hostile_texts`, alike in both arms. The plan gates on the error
rate alone, so what the statistics decide is known: the first stage ends on its minimum time
and units, the second holds for ten minutes. Then:

* the edge refuses an example past 2,048 characters, and a 1 MB one, with a reason, and
  takes one of 2,000, which is kept cut to 160;
* the console's rollout page shows every fingerprint under *What broke* as text: no script
  ran, no dialog opened, the policy refused nothing, no element of the texts exists; and so
  does the HTML report ``rolloutctl report --html`` writes, opened from a file, where no
  policy would stop a script;
* ``rolloutctl status`` says each fingerprint on one line, scrubbed, without a terminal
  escape, a control or a bidirectional character;
* the advisor was shown the texts inside its one fenced block only, and its "advance" moved
  nothing the statistics held;
* no address or id of the texts reaches Redis, nor the decisions published.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, Dialog

from controller.core.reading import failure_text
from controller.core.rollouts import Phase
from controller.core.rollouts.advice import FENCE, SYSTEM_PROMPT
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.wire import FailureSeen
from controller.core.wire.bucketing import assign
from tests.scenarios.console.hostile_texts import (
    FINGERPRINTS,
    REPORT_WHAT_BROKE,
    SECRETS,
    UNSHOWABLE,
    UPDATED,
    WATCH_VIOLATIONS,
    WHAT_BROKE,
)
from tests.scenarios.harness import Scenario
from tests.scenarios.operators.test_rolloutctl import Operator
from tests.support.backing.services import free_port
from tests.support.fake_model import FakeModel
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "hostile.checkout"
FAILING = 0.1
"""An exposure's chance of an exception with it, in either arm."""


def held_plan() -> Plan:
    """20% until its time and units, then 50% for ten minutes: one advance, by the numbers."""
    return Plan(
        name="held",
        stages=[
            Stage(percent=20, min_duration=timedelta(seconds=5), min_units_per_arm=300),
            Stage(percent=50, min_duration=timedelta(minutes=10), min_units_per_arm=300),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
        alpha=0.001,
        srm_p_threshold=0.0001,
    )


def event(state: dict[str, Any], unit: str, **body: Any) -> dict[str, Any]:
    """An event of ``unit`` in its arm as the flag's ``state`` serves it."""
    arm = assign(FLAG, state["salt"], unit, state["percent"])
    return {
        "v": 1,
        "ts": int(time.time() * 1000),
        "flag": FLAG,
        "unit": unit,
        "arm": arm.value,
        "flag_version": state["version"],
        **body,
    }


async def failing_app(scenario: Scenario, *, rate: int = 400, units: int = 3000) -> None:
    """``rate`` exposures a second, each with a request (2% fail) and, one in ten, an
    exception of one of the hostile fingerprints: the same in both arms."""
    rng = random.Random(FLAG)
    run, tick, i = uuid.uuid4().hex[:12], 0.05, 0
    while True:
        state = scenario.state(FLAG)
        if state is None or state["status"] != "rolling_out":
            await asyncio.sleep(tick)
            continue
        for _ in range(int(rate * tick)):
            unit = f"u{rng.randrange(units)}"
            bodies: list[dict[str, Any]] = [
                {"type": "exposure", "id": f"x{run}-{i}"},
                {"type": "request", "id": f"r{run}-{i}", "error": rng.random() < 0.02},
            ]
            if rng.random() < FAILING:
                failed = rng.choice(FINGERPRINTS)
                bodies.append(
                    {"type": "exception", "id": f"q{run}-{i}"}
                    | {"failure": failed.failure, "example": failed.example}
                )
            for body in bodies:
                await scenario.send_event(orjson.dumps(event(state, unit, **body)), unit=unit)
            i += 1
        await asyncio.sleep(tick)


@pytest.fixture
async def model() -> AsyncIterator[FakeModel]:
    async with FakeModel() as fake:
        fake.behaviour = "advance"  # whatever it is shown: a model that obeys the texts
        yield fake


async def post_example(base: str, state: dict[str, Any], example: str) -> tuple[int, Any]:
    """One exception event of the long fingerprint sent to ``POST /v1/events`` with
    ``example``: the answer's status and body."""
    sent = event(state, "edge-1", type="exception", id=f"edge-{uuid.uuid4().hex}")
    sent |= {"failure": FINGERPRINTS[-1].failure, "example": example}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/v1/events", json={"events": [sent]}) as answer,
    ):
        return answer.status, await answer.json()


async def the_edge_bounds_examples(base: str, state: dict[str, Any]) -> None:
    """Past 2,048 characters an example is refused, a 1 MB one as an oversize event; one of
    2,000 is taken."""
    status, said = await post_example(base, state, "e" * 2_049)
    assert status == 400, said
    assert [(e["reason"], e["detail"]) for e in said["errors"]] == [
        ("schema_violation", "exception.example: String should have at most 2048 characters")
    ]
    status, said = await post_example(base, state, "e" * 1_000_000)
    assert status == 400, said
    assert [e["reason"] for e in said["errors"]] == ["oversize"], said
    status, said = await post_example(base, state, FINGERPRINTS[-1].example)
    assert (status, said["accepted"]) == (202, 1), said


def advisor_shown(model: FakeModel) -> list[dict[str, Any]]:
    """The failures each request showed the model, each request checked for its one fenced
    block: nothing of the texts outside it, no second fence, no markup or control inside."""
    shown: list[dict[str, Any]] = []
    for request in model.requests:
        system, asked = request["messages"]
        assert system == {"role": "system", "content": SYSTEM_PROMPT}
        user = asked["content"]
        parts = user.split(FENCE)
        assert len(parts) == 3, user  # the two fence lines alone
        head, data, tail = parts
        assert (head, tail) == ("", "\nAdvise: advance, hold or rollback?"), user
        assert "<" not in data
        assert ">" not in data
        assert not any(c in data for c in UNSHOWABLE), data
        shown.extend(orjson.loads(data).get("failures", []))
    return shown


READS = {
    "string": ("GET",),
    "hash": ("HGETALL",),
    "list": ("LRANGE", 0, -1),
    "set": ("SMEMBERS",),
    "zset": ("ZRANGE", 0, -1),
}
"""How each kind of key's whole content is read, as a list of strings (or one)."""


async def stored(redis_url: str, prefix: str) -> tuple[bytes, dict[bytes, set[bytes]]]:
    """Every key of the scenario's namespace and all it holds, as one text; and the values of
    the hash fields that keep a failure's name (``t:``) and example (``x:``)."""
    client: Any = aioredis.Redis.from_url(redis_url, decode_responses=False)
    everything: list[bytes] = []
    kept: dict[bytes, set[bytes]] = {b"t:": set(), b"x:": set()}
    try:
        async for key in client.scan_iter(match=f"*{prefix}*", count=1000):
            kind = (await client.type(key)).decode()
            if kind == "none":  # gone since the scan found it (a lock, an expired key)
                continue
            assert kind in READS, (key, kind)
            command, *args = READS[kind]
            held: Any = await client.execute_command(command, key, *args)
            if kind == "hash":
                for field, value in held.items():
                    if field[:2] in kept:
                        kept[field[:2]].add(value)
                held = [x for pair in held.items() for x in pair]
            everything += [key, *([held] if isinstance(held, bytes) else held or [])]
    finally:
        await client.aclose()
    return b"\n".join(everything), kept


async def in_chromium(browser: Browser, url: str, script: str, *, live: bool) -> dict[str, Any]:
    """What ``script`` finds on the page at ``url`` in chromium (once its live update fetched
    the page again, where ``live``), with the dialogs the page opened and its errors."""
    context = await browser.new_context()
    await context.add_init_script(WATCH_VIOLATIONS)
    page = await context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []

    async def dismissed(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismissed)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        await page.goto(url)
        if live:
            await page.wait_for_function(UPDATED, timeout=30_000)
        seen: dict[str, Any] | None = await page.evaluate(script)
    finally:
        await context.close()
    assert seen is not None, f"nothing to read at {url}"
    return seen | {"dialogs": dialogs, "errors": errors}


def nothing_ran(seen: dict[str, Any]) -> None:
    """No element of the texts exists, no script of them ran, the page's policy refused
    nothing, no dialog opened, the page raised nothing."""
    assert (seen["injected"], seen["foreign"], seen["pwned"]) == (0, 0, "undefined"), seen
    assert (seen["violations"], seen["dialogs"], seen["errors"]) == ([], [], []), seen


def quoted(text: str) -> str:
    """An app's text as ``status`` quotes it: between backticks, its own made quotes."""
    return "`" + text.replace("`", "'") + "`"


@pytest.mark.timeout(300)
async def test_hostile_failure_text_is_shown_as_text_and_decides_nothing(
    scenario: Scenario, browser: Browser, model: FakeModel, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",  # the console and the intake served without keys
        RC_LLM__MODE="gating",
        LLM_BASE_URL=model.base_url,
        RC_LLM__TIMEOUT_SECONDS="10",
    )
    scenario.start_daemon()
    # Given a running rollout whose apps' failures carry the hostile texts
    scenario.run(FLAG, failing_app(scenario))
    await scenario.start(FLAG, held_plan())
    state = await scenario.until(lambda: scenario.state(FLAG), timeout=60, what=f"{FLAG} served")
    # Then the edge refuses an example past its bound with the reason, and takes 2,000
    await the_edge_bounds_examples(base, state)

    # When the statistics end the first stage (the model asked, saying "advance")
    advance = await scenario.until(
        lambda: scenario.observed.decision_where(flag=FLAG, action="advance"),
        timeout=90,
        what="the first stage's advance",
    )
    asked = len(model.requests)

    # Then rolloutctl status says each fingerprint on one line, scrubbed and quoted
    ctl = Operator(scenario, tmp_path, port)

    async def status_says_each() -> bool:
        status = await ctl("status", FLAG)
        assert status.code == 0, status.err
        lines = status.out.splitlines()
        for failure in FINGERPRINTS:
            said = [line for line in lines if quoted(failure.name) in line]
            assert len(said) == 1, (failure.name, status.out)
            assert quoted(failure.shown) in said[0], (failure.shown, status.out)
        assert not any(c in status.out for c in UNSHOWABLE), status.out
        return True

    await eventually(status_says_each, timeout=60, what="status naming every fingerprint")

    # And the console's page serves them escaped, and chromium shows them as text under
    # What broke: nothing of them ran or exists (no script, dialog, refused load, element)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/ui/fragment/rollouts/{FLAG}") as answer,
    ):
        fragment = await answer.text()
    assert "&lt;script&gt;window.__pwned=" in fragment
    planted = ("<script>window", "<img src=x", "<iframe", "<svg id=injected", "<b>slow")
    assert [tag for tag in planted if tag in fragment] == []
    seen = await in_chromium(browser, f"{base}/ui/rollouts/{FLAG}", WHAT_BROKE, live=True)
    assert {(i["name"], i["example"]) for i in seen["items"]} == {
        (f.name, f.shown) for f in FINGERPRINTS
    }, seen["items"]
    assert all(set(i["tags"]) <= {"code", "strong"} for i in seen["items"]), seen["items"]
    assert not any(c in i["text"] for i in seen["items"] for c in UNSHOWABLE)
    nothing_ran(seen)

    # And the HTML report says what broke at the first stage as its advance found it, as
    # text, opened from a file (where no policy would stop a script)
    report = tmp_path / "report.html"
    written = await ctl("report", FLAG, "--html", str(report))
    assert written.code == 0, written.err
    seen = await in_chromium(browser, report.as_uri(), REPORT_WHAT_BROKE, live=False)
    named = [FailureSeen.model_validate(f) for f in advance["evidence"].get("failures", [])]
    assert named, advance["evidence"]
    assert seen["said"][: len(named)] == [f"What broke: {failure_text(f)}" for f in named], seen
    # (and what the running stage's gate found, after it)
    heads = tuple(f"What broke: {quoted(f.name)}: " for f in FINGERPRINTS)
    assert all(line.startswith(heads) for line in seen["said"]), seen
    assert seen["tags"] == [], seen
    nothing_ran(seen)

    # And the model was shown the texts only as data in its fence, its "advance" never
    # moving what the statistics hold: the rollout runs its second stage, nothing else done
    told = advisor_shown(model)
    assert told, "the advisor was never shown a failure"
    unfenced = {(f.name.replace(FENCE, ""), f.shown.replace(FENCE, "")) for f in FINGERPRINTS}
    assert {(f["name"], f["example"]) for f in told} <= unfenced, told
    actions = [d["action"] for d in scenario.observed.decisions if d["flag"] == FLAG]
    assert actions == ["start", "advance"], scenario.observed.decisions
    rollout = await scenario.rollout(FLAG)
    assert rollout is not None
    assert (rollout.phase, rollout.stage) == (Phase.RUNNING, 1)
    assert len(model.requests) == asked, model.replies

    # And no address or id of the texts reached Redis: the names and examples kept are
    # the scrubbed ones
    async def kept_scrubbed() -> bytes:
        everything, kept = await stored(scenario.redis_url, scenario.prefix)
        assert {f.name.encode() for f in FINGERPRINTS} <= kept[b"t:"], kept
        assert {f.shown.encode() for f in FINGERPRINTS} <= kept[b"x:"], kept
        return everything

    everything = await eventually(kept_scrubbed, timeout=30, what="the failures kept")
    assert [s for s in SECRETS if s in everything] == []
    published = orjson.dumps([scenario.observed.decisions, scenario.observed.alerts])
    assert [s for s in SECRETS if s in published] == []
