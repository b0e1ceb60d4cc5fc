"""The alert forwarder's pure parts: the Slack payload, the ledger, statuses, Retry-After."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest
from pydantic import ValidationError

from controller.core.common.errors import ConfigError
from controller.core.wire.messages import Alert
from controller.ctl.alerts.alerts import ENV_WEBHOOK, load_ledger, main, save_ledger
from controller.integrations.slack import (
    Ledger,
    classify_status,
    decode_ledger,
    encode_ledger,
    escape_mrkdwn,
    is_webhook_url,
    key_details,
    mask_webhook,
    retry_after_seconds,
    slack_payload,
)
from controller.settings import HttpSettings

TS = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
ARMS = {
    "treatment": {"units": 4_900, "exposures": 5_000, "requests": 9_000, "errors": 540},
    "control": {"units": 5_100, "exposures": 5_200, "requests": 9_100, "errors": 180},
}
ERROR_TEST = {
    "delta": 0.04,
    "lower": 0.031,
    "upper": "inf",
    "p_value": 1.2e-6,
    "regressed": True,
    "direction": "lower_is_better",
}
SRM_OK = {"observed_treatment": 4_900, "p_value": 0.4, "flagged": False}
SRM_FLAGGED = {
    "sequential_p_value": 2.5e-7,
    "expected_treatment_share": 0.1,
    "chi2": 35.6,
    "flagged": True,
}


def _evidence(breach: str | None = None, srm: dict[str, Any] = SRM_OK) -> dict[str, Any]:
    """Details shaped like the gate's evidence (controller/core/machine/gate.py)."""
    details: dict[str, Any] = {
        "stage": 2,
        "arms": ARMS,
        "flag_versions": [4, 5],
        "guardrails": {"error_rate": ERROR_TEST, "latency_p95": "insufficient data"},
        "srm": srm,
    }
    return details | ({"breach": breach} if breach else {})


# kind, severity, details, strings the rendered payload must show
CASES: list[tuple[str, str, dict[str, Any], list[str]]] = [
    (
        "rollback",
        "critical",
        _evidence("error_rate"),
        [
            "*breach*\nerror_rate",
            # 180/9100 errors in control: +4 pp is +202% on it; its state as every text says.
            "*error_rate*\nerror rate +4.0 pp (interval not yet bounded) (+202%),"
            " regressed (interval wholly above tolerance)",
            "*error_rate p_value*\n1.2e-06",
        ],
    ),
    ("kill", "critical", {"monitor": "checkout-api", "incident": "inc-7"}, ["checkout-api"]),
    (
        "monitor_hold",
        "warning",
        {"stage": 1, "monitor": "checkout-api", "incident": "deploy-81"},
        ["checkout-api", "deploy-81"],
    ),
    (
        "backend_drift",
        "warning",
        {"feature": "new-checkout", "changes": ["rollout was changed from 25% to 40%"]},
        ["new-checkout"],
    ),
    ("backend_unreachable", "critical", {}, []),
    ("backend_recovered", "info", {"error": "ConnectError"}, ["ConnectError"]),
    ("operator_keys", "info", {"added": ["bob"], "keys": ["alice", "bob"]}, ["alice, bob"]),
    (
        "store_lost_writes",
        "critical",
        {"partition": 3, "stored_offset": 5522, "acknowledged": 5733},
        ["*stored_offset*\n5522", "*acknowledged*\n5733"],
    ),
    (
        "store_lost",
        "critical",
        {
            "flags": {
                "checkout": {"rollout_id": "r9", "phase": "running", "stage": "stage 3/5 (25%)"}
            },
            "rebuilding": True,
        },
        ["*rebuilding*\nTrue"],  # each flag and its stage are named in the summary
    ),
    (
        "events_log_gap",
        "critical",
        {"partition": 2, "stored_offset": 1000, "beginning": 0, "end": 0},
        ["*stored_offset*\n1000", "*end*\n0"],
    ),
    ("topics_recreated", "warning", {"topics": ["rollout.events"]}, []),
    (
        "evidence_behind",
        "warning",
        {
            "stage": 1,
            "waited_s": 312.4,
            "topics": ["rollout.events"],
            "behind": [{"topic": "rollout.events", "partition": 3, "records": 120, "owner": "b:9"}],
        },
        ["*stage*\nstage 2"],
    ),
    (
        "late_regression",
        "critical",
        {"stage": 1, "late": {"stage": 1, "flag_versions": [2], "why": "partitions [1, 3]"}},
        ["*stage*\nstage 2"],
    ),
    (
        "pipeline_stopped",
        "warning",
        {"run_id": "run-1", "not_started": ["production"], "reason": "guardrail error_rate"},
        ["production"],
    ),
    (
        "metric_source_unavailable",
        "warning",
        {"source": "prometheus at http://prometheus:9090 (setting prometheus.url)"},
        ["prometheus at http://prometheus:9090"],
    ),
    ("metric_source_recovered", "info", {}, []),
    ("kill", "critical", {}, []),
    ("srm", "warning", _evidence(srm=SRM_FLAGGED), ["*srm sequential_p_value*\n2.5e-07"]),
    (
        "stuck",
        "warning",
        {"stage": 0, "phase": "running", "max_duration_s": 3600.0},
        ["*phase*\nrunning", "*max_duration_s*\n3600"],
    ),
    ("no_traffic", "warning", _evidence(), ["*treatment units*\n4900"]),
    ("guardrail", "warning", _evidence("error_rate"), ["*error_rate*\nerror rate +4.0 pp"]),
    ("advisor_unavailable", "warning", {}, []),
    ("units_in_both_arms", "warning", {"stage": 1}, ["*stage*\nstage 2"]),
    ("output_quarantined", "critical", {"topic": "rollout.decisions", "bytes": 9}, []),
    ("input_failed", "critical", {"where": "command"}, []),
    ("stale_flag", "info", {"completed_at": "2026-03-02T14:30:00+00:00"}, ["*completed_at*"]),
]


def _alert(kind: str = "rollback", severity: str = "critical", **changes: Any) -> Alert:
    data: dict[str, Any] = {
        "type": "alert",
        "v": 1,
        "id": "a1",
        "ts": TS,
        "flag": "checkout.new-flow",
        "rollout_id": "r9",
        "severity": severity,
        "kind": kind,
        "summary": f"checkout.new-flow: {kind}",
        "details": {},
    }
    return Alert.model_validate(data | changes)


def _strings(value: object) -> list[str]:
    """Every string anywhere in a JSON-like value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def sent(alert: Alert, **options: Any) -> Any:
    """The webhook body as Slack reads it: the JSON sent, decoded."""
    return orjson.loads(orjson.dumps(slack_payload(alert, **options)))


def _check_slack_limits(payload: dict[str, Any]) -> None:
    orjson.dumps(payload)  # serialisable as it is
    assert payload["text"]
    for block in payload["blocks"]:
        assert block["type"] in ("section", "context")
        if "text" in block:
            assert 0 < len(block["text"]["text"]) <= 3000
        assert len(block.get("fields", [])) <= 10
        assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        assert len(block.get("elements", [])) <= 10


def test_the_cases_cover_every_alert_kind() -> None:
    assert {kind for kind, *_ in CASES} == set(get_args(Alert.model_fields["kind"].annotation))


@pytest.mark.parametrize(("kind", "severity", "details", "shown"), CASES)
def test_every_kind_renders(
    kind: str, severity: str, details: dict[str, Any], shown: list[str]
) -> None:
    payload = sent(_alert(kind, severity, details=details))
    _check_slack_limits(payload)
    emoji = {"critical": ":rotating_light:", "info": ":information_source:"}.get(
        severity, ":warning:"
    )
    assert (
        payload["text"]
        == f"{emoji} [{severity}] {kind} checkout.new-flow: checkout.new-flow: {kind}"
    )
    headline, summary, *rest = payload["blocks"]
    assert (
        headline["text"]["text"] == f"{emoji} *{severity.upper()}* · *{kind}* · `checkout.new-flow`"
    )
    assert summary["text"]["text"] == f"checkout.new-flow: {kind}"
    context = [e["text"] for e in rest[-1]["elements"]]
    assert context == ["rollout `r9`", "alert `a1`", "2023-11-14 22:13:20 UTC"]
    fields = [f["text"] for block in rest[:-1] for f in block["fields"]]
    assert all(any(s in f for f in fields) for s in shown), fields
    assert bool(fields) == bool(details)


def test_a_flagless_alert_with_an_rfc3339_time_and_no_summary_renders() -> None:
    ts = datetime(2026, 1, 31, 13, 0, tzinfo=UTC).isoformat().replace("+00:00", "+01:00")
    payload = sent(_alert(flag=None, rollout_id=None, summary="", ts=ts))
    _check_slack_limits(payload)
    assert "no flag" in payload["text"]
    assert payload["blocks"][1]["text"]["text"] == "(no summary)"
    context = [e["text"] for e in payload["blocks"][-1]["elements"]]
    assert context == ["rollout `none`", "alert `a1`", "2026-01-31 12:00:00 UTC"]


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain text", "plain text"),
        ("a & b", "a &amp; b"),
        ("<!channel>", "&lt;!channel&gt;"),
        (
            "<https://evil.example|click> <@U123>",
            "&lt;https://evil.example|click&gt; &lt;@U123&gt;",
        ),
        ("&lt;", "&amp;lt;"),  # already-escaped text stays literal, not a bracket
    ],
)
def test_escape_mrkdwn(raw: str, escaped: str) -> None:
    assert escape_mrkdwn(raw) == escaped


def test_untrusted_strings_cannot_form_links_or_mentions() -> None:
    hostile = "<!channel> <https://evil.example|click here> & <@U123>"
    alert = _alert(
        "kill",
        id="<!here>",
        rollout_id="<!everyone>",
        summary=f"checkout.new-flow killed: {hostile}",
        details={"monitor": hostile, "<!subteam^S1>": "x", "breach": "<@U9>"},
    )
    payload = sent(alert)
    strings = _strings(payload)
    assert not [s for s in strings if "<" in s or ">" in s]
    assert (
        "&lt;!channel&gt; &lt;https://evil.example|click here&gt; &amp; &lt;@U123&gt;"
        in payload["text"]
    )
    assert any("&lt;!here&gt;" in s for s in strings)
    assert any("&lt;!subteam^S1&gt;" in s for s in strings)


def test_key_details_are_bounded() -> None:
    details = {f"k{i}": "v" * 1_000 for i in range(30)}
    shown = key_details(details)
    assert len(shown) == 10
    assert all(len(value) == 200 for _, value in shown)
    payload = sent(_alert(details=details))
    _check_slack_limits(payload)


def test_key_details_skip_nested_values_they_do_not_know() -> None:
    details = {"stage": 1, "evidence": {"x": 1}, "list": [1, 2], "breach": "nope", "guardrails": {}}
    assert key_details(details) == [("stage", "stage 2"), ("breach", "nope")]


def test_key_details_name_the_stage_as_every_text_does() -> None:
    position = {"index": 2, "number": 3, "of": 5, "percent": 25.0, "label": "stage 3/5 (25%)"}
    shown = key_details({"stage": 2, "at_stage": position})
    assert shown == [("stage", "stage 3/5 (25%)")]


def test_the_documented_examples_are_valid_alerts_of_every_kind_and_render() -> None:
    doc = Path(__file__).parents[3] / "docs" / "alerts.md"
    blocks = re.findall(r"```json\n(.*?)\n```", doc.read_text(encoding="utf-8"), re.DOTALL)
    alerts = [Alert.model_validate_json(block) for block in blocks]
    assert {a.kind for a in alerts} == set(get_args(Alert.model_fields["kind"].annotation))
    assert len({a.id for a in alerts}) == len(alerts)
    for alert in alerts:
        _check_slack_limits(sent(alert))


# -- the ledger -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "added", "kept"),
    [
        (3, ["a", "b"], ["a", "b"]),
        (3, ["a", "b", "c", "d", "e"], ["c", "d", "e"]),
        (3, ["a", "b", "a", "c"], ["a", "b", "c"]),  # a repeat is not a second entry
        (1, ["a", "b"], ["b"]),
        (10_000, [str(i) for i in range(10_050)], [str(i) for i in range(50, 10_050)]),
    ],
)
def test_ledger_keeps_the_newest_ids(capacity: int, added: list[str], kept: list[str]) -> None:
    ledger = Ledger(capacity=capacity)
    for alert_id in added:
        ledger.add(alert_id)
    assert ledger.ids() == kept
    assert len(ledger) == len(kept)
    assert all(i in ledger for i in kept)
    assert not [i for i in set(added) - set(kept) if i in ledger]


def test_ledger_needs_room_for_one_id() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Ledger(capacity=0)


def test_ledger_round_trips_and_a_smaller_capacity_keeps_the_newest() -> None:
    ledger = Ledger(["a", "b", "c"])
    assert decode_ledger(encode_ledger(ledger)).ids() == ["a", "b", "c"]
    assert decode_ledger(encode_ledger(ledger), capacity=2).ids() == ["b", "c"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not JSON"),
        (b"\xff", "not JSON"),
        (b"[]", '"v": 1'),
        (b'{"v": 2, "ids": []}', '"v": 1'),
        (b'{"v": 1}', "list of strings"),
        (b'{"v": 1, "ids": "abc"}', "list of strings"),
        (b'{"v": 1, "ids": ["a", 1]}', "list of strings"),
    ],
)
def test_decode_ledger_refuses_what_is_not_a_ledger(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode_ledger(data)


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "ledger.json"
    assert len(load_ledger(path)) == 0
    save_ledger(path, Ledger(["x", "y"]))
    save_ledger(path, Ledger(["x", "y", "z"]))
    assert load_ledger(path).ids() == ["x", "y", "z"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["ledger.json"]  # no temporary left


def test_a_state_file_that_holds_no_ledger_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text("{broken")
    with pytest.raises(ConfigError, match="holds no ledger"):
        load_ledger(path)


# -- statuses, Retry-After, the secret URL --------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (400, "refused"),
        (403, "refused"),
        (404, "refused"),
        (410, "refused"),
        (302, "refused"),
    ],
)
def test_classify_status(status: int, verdict: str) -> None:
    assert classify_status(status) == verdict


NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("3", 3.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Sat, 31 Jan 2026 12:00:30 GMT", 30.0),
        ("Sat, 31 Jan 2026 11:00:00 GMT", 0.0),  # in the past: no wait
        ("-5", None),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, NOW) == seconds


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://hooks.slack.com/services/T0/B0/x", True),
        ("http://127.0.0.1:8080/hook", True),
        ("hooks.slack.com/services/T0/B0/x", False),
        ("ftp://example.com/x", False),
        ("https:///path-only", False),
        ("", False),
    ],
)
def test_is_webhook_url(url: str, valid: bool) -> None:
    assert is_webhook_url(url) is valid


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://hooks.slack.com/services/T0/B0/s3cret", "https://hooks.slack.com/***"),
        ("http://user:pw@127.0.0.1:8080/hook?token=s3cret", "http://127.0.0.1:8080/***"),
        ("s3cret", "***"),
    ],
)
def test_mask_webhook_hides_the_secret(url: str, masked: str) -> None:
    assert mask_webhook(url) == masked


# -- the command line before it connects ----------------------------------------------


def test_no_webhook_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(ENV_WEBHOOK, raising=False)
    assert main(["--bootstrap", "127.0.0.1:1"]) == 2
    assert ENV_WEBHOOK in capsys.readouterr().err


def test_a_bad_webhook_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_WEBHOOK, "hooks.slack.com/services/T0/B0/s3cret")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "http" in err
    assert "s3cret" not in err


def test_an_unreadable_config_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--slack-webhook", "https://x.example/h", "--config", str(tmp_path / "none.yaml")])
    assert code == 78
    assert "none.yaml" in capsys.readouterr().err


def test_an_alert_links_to_its_flags_console_page_when_the_url_is_set() -> None:
    alert = _alert(flag="shop:new-flow")
    linked = sent(alert, console_url="https://rollouts.example.com/")
    (context,) = [b for b in linked["blocks"] if b["type"] == "context"]
    link = context["elements"][0]["text"]
    # The flag is percent-encoded whole, as the console's own links are.
    assert link == "<https://rollouts.example.com/ui/rollouts/shop%3Anew-flow|open in the console>"
    unlinked = sent(alert)
    assert not any("open in the console" in s for s in _strings(unlinked))
    flagless = sent(_alert(flag=None), console_url="https://rollouts.example.com")
    assert not any("open in the console" in s for s in _strings(flagless))


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://rollouts.example.com", True),
        ("http://10.0.0.5:8080/base", True),
        ("rollouts.example.com", False),
        ("https://x.example|evil", False),
        ("javascript:alert(1)", False),
    ],
)
def test_the_console_url_setting_is_an_http_url(url: str, valid: bool) -> None:
    if valid:
        assert HttpSettings(console_url=url).console_url == url
    else:
        with pytest.raises(ValidationError):
            HttpSettings(console_url=url)


def test_key_details_say_what_broke_first_and_slack_escapes_it() -> None:
    seen = {
        "name": "KeyError in cart.py:<@here>",
        "example": "",
        "treatment": 41,
        "control": 0,
        "treatment_rate": 0.0041,
        "control_rate": 0.0,
        "regressed": True,
    }
    other = {**seen, "name": "TimeoutError in cache.py:get", "control": 9, "regressed": False}
    shown = dict(key_details({"breach": "error_rate", "failures": [seen, other]}))
    assert shown["what broke"] == (
        "new in treatment: `KeyError in cart.py:<@here>` (0.41% of treatment's exposures,"
        " none in control)"
    )
    assert "&lt;@here&gt;" in escape_mrkdwn(shown["what broke"])
