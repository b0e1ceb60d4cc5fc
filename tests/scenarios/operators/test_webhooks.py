"""Monitor webhooks end to end: real HTTP requests to the daemon kill mapped flags."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from controller.core.rollouts.rollout import Phase
from tests.integration.http.test_http_limits import webhook_count
from tests.scenarios.harness import Scenario, fast_plan
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "s3cret-webhook-token"


def betteruptime(
    event: str, *, incident: str | int = "9001", monitor: str | int = "4242"
) -> dict[str, Any]:
    """A Better Uptime incident webhook body, as its documentation shows it."""
    return {
        "event": event,
        "data": {
            "id": incident,
            "type": "incident",
            "attributes": {
                "name": "api.example.com",
                "url": "https://api.example.com/health",
                "http_method": "get",
                "cause": "Status 503",
                "started_at": "2026-11-22T10:51:28.151Z",
                "acknowledged_at": None,
                "resolved_at": None,
            },
            "relationships": {"monitor": {"data": {"id": monitor, "type": "monitor"}}},
        },
    }


def count(scenario: Scenario, flag: str, action: str) -> int:
    return sum(
        1 for d in scenario.observed.decisions if d["flag"] == flag and d["action"] == action
    )


async def started(scenario: Scenario, port: int) -> httpx.AsyncClient:
    scenario.map_monitor("4242", ["cart", "wishlist"])
    scenario.map_monitor("payments-uptime", ["footer"])
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__WEBHOOK_TOKEN=TOKEN)
    scenario.start_daemon()
    for flag in ("cart", "wishlist", "footer"):
        scenario.run_apps(flag, rate=400)
        await scenario.start(flag, fast_plan(hold_stage=0))
    await scenario.until(
        lambda: sum(count(scenario, f, "start") for f in ("cart", "wishlist", "footer")) == 3,
        timeout=60,
        what="three starts",
    )
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)


async def test_betteruptime_down_kills_mapped_flags_once_and_up_records_recovery(
    scenario: Scenario,
) -> None:
    # Given three running flags, two mapped to Better Uptime monitor 4242
    async with await started(scenario, free_port()) as http:
        url = "/webhooks/betteruptime"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        # When bad requests arrive, they are refused with a reason and change nothing
        refusals = [
            await http.post(url, json=betteruptime("started")),
            await http.post(url, json=betteruptime("started"), headers={"Authorization": "x"}),
            await http.post(f"{url}?token=wrong", json=betteruptime("started")),
            await http.post(url, content=b"{not json", headers=auth),
            await http.post(
                url, content=b"{not json", headers={**auth, "Content-Type": "application/json"}
            ),
            await http.post(url, json={"event": "started", "data": {"id": "1"}}, headers=auth),
            await http.post(url, json=betteruptime("exploded"), headers=auth),
        ]
        assert [r.status_code for r in refusals] == [401, 401, 401, 415, 422, 422, 422]
        assert all(r.json()["error"] for r in refusals)
        # A delivery is published within its request, and only when accepted: none was.
        metrics = (await http.get("/metrics")).text
        assert webhook_count(metrics, "accepted", source="betteruptime") == 0
        assert webhook_count(metrics, "unauthorized", source="betteruptime") == 3
        # When the monitor goes down, delivered twice, with the token in the query
        first = await http.post(f"{url}?token={TOKEN}", json=betteruptime("started"))
        again = await http.post(url, json=betteruptime("started"), headers=auth)
        assert first.status_code == 202, first.text
        assert first.json() == {
            "monitor": "4242",
            "status": "down",
            "flags": ["cart", "wishlist"],
            "result": "accepted",
            "reason": "published to the monitors topic",
        }
        assert again.status_code == 200
        assert again.json()["result"] == "duplicate"
        assert again.json()["reason"]
        # Then the mapped flags are killed, each exactly once; the other runs on
        for flag in ("cart", "wishlist"):
            kill = await scenario.until(
                lambda f=flag: scenario.observed.decision_where(flag=f, action="kill"),  # type: ignore[misc]
                timeout=30,
                what=f"{flag} killed",
            )
            assert kill["evidence"] == {
                "monitor": "4242",
                "incident": "9001",
                "at_stage": kill["evidence"]["at_stage"],
            }
        footer = await scenario.rollout("footer")
        assert footer is not None
        assert footer.phase is Phase.RUNNING
        # When it is acknowledged, nothing happens; when resolved, the recovery is recorded
        ack = await http.post(url, json=betteruptime("acknowledged"), headers=auth)
        assert ack.status_code == 200
        assert ack.json()["status"] == "ignored"
        assert ack.json()["reason"]
        up = await http.post(url, json=betteruptime("resolved"), headers=auth)
        assert up.status_code == 202, up.text
        for flag in ("cart", "wishlist"):
            recovered = await scenario.until(
                lambda f=flag: scenario.observed.decision_where(flag=f, action="monitor_up"),  # type: ignore[misc]
                timeout=30,
                what=f"{flag} recovery recorded",
            )
            assert recovered["phase_after"] == "killed"
            assert "stays killed" in recovered["reason"]
        # The recovery was the last monitor message published (the redelivery and the
        # acknowledgement were not): once it is decided, so is every down before it.
        for flag in ("cart", "wishlist"):
            assert count(scenario, flag, "kill") == 1
            assert count(scenario, flag, "monitor_up") == 1
            rollout = await scenario.rollout(flag)
            assert rollout is not None
            assert rollout.phase is Phase.KILLED


async def test_generic_monitor_webhook_kills_its_flag(scenario: Scenario) -> None:
    async with await started(scenario, free_port()) as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = {"monitor": "payments-uptime", "status": "down", "incident_id": "pd-77"}
        bad = await http.post(
            "/webhooks/monitor", json={**body, "status": "sideways"}, headers=auth
        )
        assert bad.status_code == 422
        assert "status" in bad.json()["error"]
        ok = await http.post("/webhooks/monitor", json=body, headers=auth)
        assert ok.status_code == 202, ok.text
        kill = await scenario.until(
            lambda: scenario.observed.decision_where(flag="footer", action="kill"),
            timeout=30,
            what="footer killed",
        )
        assert kill["evidence"]["incident"] == "pd-77"
        for flag in ("cart", "wishlist"):
            rollout = await scenario.rollout(flag)
            assert rollout is not None
            assert rollout.phase is Phase.RUNNING


async def test_a_generic_down_with_a_long_request_id_is_accepted_and_kills(
    scenario: Scenario,
) -> None:
    async with await started(scenario, free_port()) as http:
        # Given a down without an incident id, its delivery named by a 300-character header
        headers = {"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "r" * 300}
        body = {"monitor": "payments-uptime", "status": "down"}
        # When it is delivered, and delivered again
        first = await http.post("/webhooks/monitor", json=body, headers=headers)
        again = await http.post("/webhooks/monitor", json=body, headers=headers)
        # Then the first is accepted and the redelivery recognised
        assert first.status_code == 202, first.text
        assert again.status_code == 200, again.text
        assert again.json()["result"] == "duplicate"
        # And the mapped flag is killed, the incident named by a bounded id
        kill = await scenario.until(
            lambda: scenario.observed.decision_where(flag="footer", action="kill"),
            timeout=30,
            what="footer killed",
        )
        incident = kill["evidence"]["incident"]
        assert incident.startswith("sha256-")
        assert len(incident) <= 128
        metrics = (await http.get("/metrics")).text
        assert webhook_count(metrics, "accepted") == 1
        assert webhook_count(metrics, "duplicate") == 1


async def test_an_incident_id_sent_as_a_number_and_as_text_is_one_incident(
    scenario: Scenario,
) -> None:
    async with await started(scenario, free_port()) as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        # When each incident arrives with an integer id, then with the same id as text
        generic = {"monitor": "payments-uptime", "status": "down"}
        answers = [
            await http.post("/webhooks/monitor", json={**generic, "incident_id": 77}, headers=auth),
            await http.post(
                "/webhooks/monitor", json={**generic, "incident_id": " 77 "}, headers=auth
            ),
            await http.post(
                "/webhooks/betteruptime",
                json=betteruptime("started", incident=9001, monitor=4242),
                headers=auth,
            ),
            await http.post(
                "/webhooks/betteruptime",
                json=betteruptime("started", incident="9001 ", monitor="4242"),
                headers=auth,
            ),
        ]
        # Then the first of each is accepted and the second is a redelivery
        assert [a.status_code for a in answers] == [202, 200, 202, 200], [a.text for a in answers]
        assert [a.json()["result"] for a in answers] == ["accepted", "duplicate"] * 2
        # And each incident kills its flags once, under one id
        for flag, incident in (("footer", "77"), ("cart", "9001"), ("wishlist", "9001")):
            kill = await scenario.until(
                lambda f=flag: scenario.observed.decision_where(flag=f, action="kill"),  # type: ignore[misc]
                timeout=30,
                what=f"{flag} killed",
            )
            assert kill["evidence"]["incident"] == incident
        metrics = (await http.get("/metrics")).text
        for source in ("monitor", "betteruptime"):
            assert webhook_count(metrics, "accepted", source) == 1
            assert webhook_count(metrics, "duplicate", source) == 1


def reopened(resolved_at: str) -> dict[str, Any]:
    """The incident's ``reopened`` webhook, after the resolution at ``resolved_at``."""
    body = betteruptime("reopened")
    body["data"]["attributes"]["resolved_at"] = resolved_at
    return body


async def test_a_reopened_incident_kills_again(scenario: Scenario) -> None:
    async with await started(scenario, free_port()) as http:
        url, auth = "/webhooks/betteruptime", {"Authorization": f"Bearer {TOKEN}"}
        # Given incident 9001 started (killing cart), was resolved, and cart restarted
        assert (await http.post(url, json=betteruptime("started"), headers=auth)).status_code == 202
        await scenario.until(
            lambda: count(scenario, "cart", "kill") == 1, timeout=30, what="cart killed"
        )
        assert (
            await http.post(url, json=betteruptime("resolved"), headers=auth)
        ).status_code == 202
        await scenario.start("cart", fast_plan(hold_stage=0))
        await scenario.until(
            lambda: count(scenario, "cart", "start") == 2, timeout=30, what="cart restarted"
        )
        # When the incident is reopened, and that delivery comes twice
        first = await http.post(url, json=reopened("2026-11-22T11:00:00Z"), headers=auth)
        again = await http.post(url, json=reopened("2026-11-22T11:00:00Z"), headers=auth)
        # Then the reopen is a new down, its redelivery a duplicate
        assert first.status_code == 202, first.text
        assert first.json()["result"] == "accepted"
        assert again.json()["result"] == "duplicate"
        # And the restarted flag is killed again, for the same incident
        await scenario.until(
            lambda: count(scenario, "cart", "kill") == 2, timeout=30, what="cart killed again"
        )
        kills = [
            d for d in scenario.observed.decisions if d["flag"] == "cart" and d["action"] == "kill"
        ]
        assert {k: v for k, v in kills[-1]["evidence"].items() if k != "at_stage"} == {
            "monitor": "4242",
            "incident": "9001",
        }
        rollout = await scenario.rollout("cart")
        assert rollout is not None
        assert rollout.phase is Phase.KILLED
        # When it is reopened once more while wishlist is still killed, that is accepted
        # too, and a killed flag stays killed (no second kill decision for it)
        later = await http.post(url, json=reopened("2026-11-22T12:00:00Z"), headers=auth)
        assert later.json()["result"] == "accepted", later.text
        metrics = (await http.get("/metrics")).text
        assert webhook_count(metrics, "accepted", source="betteruptime") == 4
        assert webhook_count(metrics, "duplicate", source="betteruptime") == 1
        # Once a resolution (of another incident) published after it is decided, so
        # is that reopen (one monitor, one partition): it left the killed flag as it was
        done = await http.post(url, json=betteruptime("resolved", incident="9002"), headers=auth)
        assert done.status_code == 202, done.text
        await scenario.until(
            lambda: count(scenario, "wishlist", "monitor_up") == 2,
            timeout=30,
            what="the second resolution recorded",
        )
        assert count(scenario, "wishlist", "kill") == 1
        assert count(scenario, "cart", "kill") == 2
