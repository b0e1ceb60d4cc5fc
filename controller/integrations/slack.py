"""The pure parts of forwarding alerts to a Slack-compatible webhook.

The payload an alert becomes (every untrusted string escaped, within Slack's
block limits), the bounded ledger of delivered alert ids and its file format,
what an HTTP status means for a delivery, the wait a ``Retry-After`` asks for,
and the webhook URL with its secret hidden. No I/O: ``controller.ctl.alerts.alerts``
does the consuming, the POSTs and the state file.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote, urlsplit

import orjson
from pydantic import ValidationError

from controller.core.common import as_datetime, displayable
from controller.core.reading import (
    GuardrailTest,
    failure_text,
    guardrail_state,
    guardrail_text,
    label_of,
)
from controller.core.wire import Alert, FailureSeen, JsonObject, JsonValue

LEDGER_CAPACITY = 10_000
EMOJI = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
MAX_FIELDS = 10  # Slack's limit on the fields of one section
MAX_VALUE_CHARS = 200


# -- the Slack payload ------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """``text`` with ``& < >`` escaped, so it cannot form Slack links or mentions.

    Control and bidirectional characters are replaced first (:mod:`controller.core.common.text`).
    """
    return displayable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert, *, console_url: str | None = None) -> JsonObject:
    """The webhook body for ``alert``: a ``text`` fallback and Slack ``blocks``.

    Every string taken from the message is escaped: flag, summary, details, ids.
    With ``console_url`` (the console's public base URL, ``http.console_url``)
    the alert links to its flag's page there.
    """
    emoji, flag = EMOJI[alert.severity], escape_mrkdwn(alert.flag or "no flag")
    summary = escape_mrkdwn(alert.summary) or "(no summary)"
    blocks: list[JsonValue] = [
        _section(f"{emoji} *{alert.severity.upper()}* · *{alert.kind}* · `{flag}`"),
        _section(summary),
    ]
    fields = [f"*{escape_mrkdwn(k)}*\n{escape_mrkdwn(v)}" for k, v in key_details(alert.details)]
    if fields:
        blocks.append({"type": "section", "fields": [_mrkdwn(f) for f in fields]})
    rollout = escape_mrkdwn(alert.rollout_id or "none")
    context = [f"rollout `{rollout}`", f"alert `{escape_mrkdwn(alert.id)}`", _when(alert.ts)]
    if console_url and alert.flag:
        context.insert(0, f"<{flag_page(console_url, alert.flag)}|open in the console>")
    blocks.append({"type": "context", "elements": [_mrkdwn(c) for c in context]})
    return {"text": f"{emoji} [{alert.severity}] {alert.kind} {flag}: {summary}", "blocks": blocks}


def key_details(details: Mapping[str, object]) -> list[tuple[str, str]]:
    """The details worth a glance, at most ten: the top-level values, the breached
    guardrail's test, what broke (the failure the evidence names first), the SRM check when
    it flagged, and the units per arm."""
    shown = [(key, _show(value)) for key, value in details.items() if _scalar(value)]
    # The stage as every text says it (1-based, "stage 3/5 (25%)"), not its 0-based index.
    label = label_of({"stage": details.get("stage"), "details": details})
    shown = [(key, label if key == "stage" and label else value) for key, value in shown]
    guardrails, breach = details.get("guardrails"), details.get("breach")
    if isinstance(guardrails, dict) and isinstance(breach, str):
        # Δ with its interval and the guardrail's state as every text writes them; p as
        # measured.
        test = guardrails.get(breach)
        if isinstance(test, dict):
            state = guardrail_state(GuardrailTest.model_validate(test)).text
            said = guardrail_text(breach, test, details.get("arms"))
            shown.append((breach[:96], f"{said}, {state}"))
        shown += _picked(test, breach, ("p_value",))
    failures = details.get("failures")
    if isinstance(failures, list) and failures:  # the most telling first
        with suppress(ValidationError):  # a part of another shape is not said
            shown.append(("what broke", failure_text(FailureSeen.model_validate(failures[0]))))
    srm = details.get("srm")
    if isinstance(srm, dict) and srm.get("flagged") is True:
        shown += _picked(srm, "srm", ("sequential_p_value", "expected_treatment_share"))
    arms = details.get("arms")
    for arm, counts in arms.items() if isinstance(arms, dict) else ():
        shown += _picked(counts, str(arm), ("units",))
    return shown[:MAX_FIELDS]


def _picked(source: object, prefix: str, keys: Sequence[str]) -> list[tuple[str, str]]:
    if not isinstance(source, dict):
        return []
    return [(f"{prefix} {k}", _show(source[k])) for k in keys if _scalar(source.get(k, []))]


def _scalar(value: object) -> bool:
    """A value one field can show: a number, a text, or a list of texts (key ids, changes)."""
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return value is None or isinstance(value, str | int | float)


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return (", ".join(value) or "-")[:MAX_VALUE_CHARS]
    return str(value)[:MAX_VALUE_CHARS]


def flag_page(console_url: str, flag: str) -> str:
    """The flag's page on the console: the flag percent-encoded whole, so it cannot end the link."""
    return f"{console_url.rstrip('/')}/ui/rollouts/{quote(flag, safe='')}"


def _when(ts: int | datetime) -> str:
    return as_datetime(ts).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _section(text: str) -> JsonObject:
    return {"type": "section", "text": _mrkdwn(text)}


def _mrkdwn(text: str) -> JsonObject:
    return {"type": "mrkdwn", "text": text}


# -- the ledger, statuses, secrets ------------------------------------------------


class Ledger:
    """The ids of the last ``capacity`` delivered alerts; the oldest is dropped first."""

    def __init__(self, ids: Iterable[str] = (), *, capacity: int = LEDGER_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"a ledger holds at least one id, not {capacity}")
        self._capacity = capacity
        self._ids: dict[str, None] = {}  # a dict keeps insertion order: an ordered set
        for alert_id in ids:
            self.add(alert_id)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, alert_id: str) -> None:
        """Remember ``alert_id``; forget the oldest id if that makes one too many."""
        if alert_id in self._ids:
            return
        self._ids[alert_id] = None
        if len(self._ids) > self._capacity:
            del self._ids[next(iter(self._ids))]

    def ids(self) -> list[str]:
        """The ids, oldest first."""
        return list(self._ids)


def encode_ledger(ledger: Ledger) -> bytes:
    """The state file's contents: ``{"v": 1, "ids": [oldest, ..., newest]}``."""
    return orjson.dumps({"v": 1, "ids": ledger.ids()})


def decode_ledger(data: bytes, *, capacity: int = LEDGER_CAPACITY) -> Ledger:
    """The ledger in ``data`` (its newest ``capacity`` ids); ValueError if it is not one."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(parsed, dict) or parsed.get("v") != 1:
        raise ValueError('expected an object with "v": 1')
    ids = parsed.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError('"ids" must be a list of strings')
    return Ledger(ids, capacity=capacity)


def classify_status(status: int) -> Literal["delivered", "retry", "refused"]:
    """2xx delivered; 429 and 5xx may succeed later; anything else is a refusal."""
    if 200 <= status < 300:
        return "delivered"
    if status == 429 or status >= 500:
        return "retry"
    return "refused"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC in an HTTP date
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def is_webhook_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def mask_webhook(url: str) -> str:
    """The webhook URL with its secret path hidden: ``https://hooks.slack.com/***``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/***" if parts.netloc else "***"
