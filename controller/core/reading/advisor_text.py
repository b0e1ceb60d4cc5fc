"""How every output names the advisor and quotes its opinion: one wording, one place.

An advisory opinion (a decision's ``evidence.advisor``) is shown on the console, in
``rolloutctl`` and in reports, on the demo's screens and in alerts: each names the
advisor the same way, says plainly when its model is too small for the opinion to carry
weight, and quotes its rationale as the model's own words, never one found incoherent.
Pure; the opinion may come from a topic, so its fields are read defensively.
"""

from __future__ import annotations

import math
from typing import Any

from controller.core.rollouts import rationale_problem
from controller.core.wire import AdvisorReply

SMALL_MODEL_NOTE = (
    "a model this small cannot weigh the evidence: its opinion is shown to demonstrate "
    "the wiring and carries no weight"
)
"""What to say next to the opinion of a model too small to judge a rollout."""
SMALL_MODEL_MAX_BILLIONS = 1.0
"""Below this many billion parameters a model's opinion is called too small to carry weight."""


def model_billions(model: str) -> float | None:
    """The parameter count a model's name states (``smollm2-135m`` → 0.135), if any."""
    for part in model.lower().replace("_", "-").replace(":", "-").split("-"):
        for suffix, scale in (("m", 0.001), ("b", 1.0)):
            digits = part.removesuffix(suffix)
            if digits != part and _decimal(digits):
                return float(digits) * scale
    return None


def listed_billions(listing: object, model: str) -> float | None:
    """The parameter count a server's ``/v1/models`` answer gives ``model``, if any.

    llama.cpp's server lists its model with ``meta.n_params``; the entry whose
    ``id`` is ``model`` is read, else the only entry (that server answers to any
    name). Other servers list no size: None.
    """
    entries = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(entries, list):
        return None
    named = [e for e in entries if isinstance(e, dict) and e.get("id") == model]
    entry = named[0] if named else entries[0] if len(entries) == 1 else None
    meta = entry.get("meta") if isinstance(entry, dict) else None
    params = meta.get("n_params") if isinstance(meta, dict) else None
    if not isinstance(params, int) or isinstance(params, bool) or params <= 0:
        return None
    return params / 1e9


def too_small(model: str) -> bool:
    """Whether a model's name says it is too small for its opinion to carry weight."""
    size = model_billions(model)
    return size is not None and size < SMALL_MODEL_MAX_BILLIONS


def advisor_name(model: Any) -> str:
    """``advisor``, saying plainly when its model is too small for the opinion to count."""
    if isinstance(model, str) and too_small(model):
        return f"advisor ({model[:64]}, too small for its opinion to carry weight)"
    return "advisor"


def advice_text(advice: AdvisorReply, *, rationale_chars: int = 160) -> str:
    """An advisor's opinion (a decision's ``evidence.advisor``) in one line.

    The rationale is labelled as the model's own words, so it is not read as
    the controller's action: "advisor says advance (confidence 0.9, 5.5 s);
    advisor's rationale: ...".
    """
    name = advisor_name(advice.model)
    seconds = _seconds(advice.latency_ms)
    if advice.status != "ok":
        return f"{name} unavailable after {seconds:.1f} s: {(advice.cause or '')[:200]}"
    confidence = advice.confidence
    sure = f"confidence {confidence:g}, " if _confidence(confidence) else ""
    line = f"{name} says {(advice.action or '?')[:20]} ({sure}{seconds:.1f} s)"
    rationale, why = quotable_rationale(advice)
    if why:
        return f"{line}; {INCOHERENT}: {why}"
    rationale = rationale[:rationale_chars]
    return f"{line}; advisor's rationale: {rationale}" if rationale else line


INCOHERENT = "incoherent, rationale not quoted"
"""What every surface says in place of an incoherent advisor's rationale."""


def quotable_rationale(advice: AdvisorReply) -> tuple[str, str]:
    """The rationale of an opinion to quote, or ``""`` and why it is incoherent.

    Reads the opinion's recorded ``coherent`` and ``incoherence``; an opinion
    recorded before they were is checked here with
    :func:`controller.core.rollouts.advice.rationale_problem`.
    """
    rationale = " ".join((advice.rationale or "").split())
    if advice.coherent is True:
        return rationale, ""
    if advice.coherent is False:
        why = advice.incoherence
        return "", why[:120] if why else "its rationale is incoherent"
    why = rationale_problem((advice.action or "")[:20], rationale)
    return ("", why) if why else (rationale, "")


def _confidence(value: Any) -> bool:
    """Whether a confidence read from JSON is a number to show (finite, 0 to 100)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 100
    )


def _seconds(latency_ms: Any) -> float:
    ok = isinstance(latency_ms, int | float) and not isinstance(latency_ms, bool)
    return float(latency_ms) / 1000 if ok and math.isfinite(latency_ms) else 0.0


def _decimal(text: str) -> bool:
    head, _, tail = text.partition(".")
    return head.isdigit() and (tail == "" or tail.isdigit()) and len(text) <= 8
