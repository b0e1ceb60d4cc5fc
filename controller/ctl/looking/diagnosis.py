"""The controller's own word on why it does not serve: its ``/readyz`` reason.

When a call to the controller fails (no answer, or a 5xx), ``rolloutctl``
asks ``/readyz`` and prints its reason, which names the dependency that is
down and the setting that points at it ("Redis at redis://… does not answer
(setting redis.url)"). While the controller starts, only the health listener
answers, so the reason is asked of the main port first, then of the health
port: ``$ROLLOUTCTL_HEALTH_URL``, by default the main port plus one (8001
beside 8000, as ``http.health_port`` beside ``http.port`` by default).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError

from controller.adapters import http_client
from controller.core.common import ControllerError
from controller.ctl.terminal import ENV_TOKEN

ENV_HEALTH_URL = "ROLLOUTCTL_HEALTH_URL"
MAX_REASON_CHARS = 500
"""A reason is a sentence; a longer one is cut, since the answer is not ours."""
_M = TypeVar("_M", bound=BaseModel)


def health_url(base: str) -> str | None:
    """The health listener beside ``base``: the environment's, or the next port."""
    if given := os.environ.get(ENV_HEALTH_URL):
        return given.rstrip("/")
    parts = urlsplit(base)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None or port is None or port >= 65535:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit((parts.scheme, f"{host}:{port + 1}", "", "", ""))


def not_ready_reason(base: str, *, timeout_s: float = 3) -> str | None:
    """Why the controller at ``base`` is not ready, in its own words; None if it says
    nothing (it is ready, or neither port answers with a reason)."""
    for root in (base, health_url(base)):
        if root is None:
            continue
        try:
            answer = http_client.get(f"{root}/readyz", timeout_s=timeout_s)
            body = answer.json()
        except (http_client.Unreachable, ValueError):
            continue
        reason = body.get("reason") if isinstance(body, dict) else None
        if answer.status != 200 and isinstance(reason, str):
            return reason[:MAX_REASON_CHARS]
        if answer.status == 200:
            return None
    return None


def explained(message: str, base: str) -> str:
    """``message``, followed by the controller's readiness reason when it gives one."""
    reason = not_ready_reason(base)
    if reason is None:
        return message
    return f"{message}; the controller is up but not ready: {reason}"


def unreachable(base: str, exc: Exception) -> ControllerError:
    """The error for a call to ``base`` that got no answer."""
    return ControllerError(explained(f"cannot reach the controller at {base}: {exc}", base))


def refused(base: str, path: str, answer: http_client.Answer) -> ControllerError:
    """The error for an unexpected answer to ``path``: a 5xx carries the readiness reason."""
    head = f"{base}{path} answered {answer.status}"
    if answer.status >= 500 and (reason := not_ready_reason(base)) is not None:
        return ControllerError(f"{head}; the controller is up but not ready: {reason}")
    return ControllerError(f"{head}: {answer.text[:200]}")


def token_headers() -> dict[str, str] | None:
    """``Authorization: Bearer $ROLLOUTCTL_TOKEN``; None where the variable is unset."""
    token = os.environ.get(ENV_TOKEN, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else None


MAX_RETRY_AFTER_S = 10.0
"""The longest a read waits to ask again after the controller's 429."""


def fetch(
    base: str, path: str, *, timeout_s: float, headers: Mapping[str, str] | None = None
) -> http_client.Answer:
    """The controller's answer at ``path`` (no answer is :func:`unreachable`). Over its read
    rate (429: a report across environments, or an agent's tools, read several things at
    once) it asks again after the ``Retry-After`` it was given, within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = http_client.get(
                base + path, timeout_s=timeout_s, headers=headers or token_headers()
            )
        except http_client.Unreachable as exc:
            raise unreachable(base, exc) from exc
        wait = retry_after(answer.headers.get("Retry-After")) if answer.status == 429 else None
        if wait is None or time.monotonic() + wait > deadline:
            return answer
        time.sleep(wait)


def retry_after(header: str | None) -> float | None:
    """The seconds a 429's ``Retry-After`` asks to wait (1 when it says none it can be read as,
    at most :data:`MAX_RETRY_AFTER_S`)."""
    try:
        seconds = float(header) if header is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else 1.0


def get_json(
    base: str,
    path: str,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
    missing_ok: bool = False,
) -> Any:
    """The JSON the controller at ``base`` serves at ``path``; None for a 404 when ``missing_ok``.

    ``headers`` default to :func:`token_headers`. No answer is :func:`unreachable`, any
    other answer :func:`refused`; a 429 is asked again as :func:`fetch` says.
    """
    answer = fetch(base, path, timeout_s=timeout_s, headers=headers)
    if answer.status == 404 and missing_ok:
        return None
    if answer.status != 200:
        raise refused(base, path, answer)
    return answer.json()


def served(model: type[_M], body: object, url: str, what: str) -> _M:
    """``body``, what the controller served at ``url``, read into ``model`` once, where it
    comes in; an answer of another shape is a :class:`ControllerError` naming the first
    field that does not fit (``what``: the model in words, ``pipeline run``).

    Fields the model does not know are passed over, at any depth: a controller newer than
    this rolloutctl may serve more than the schema it was built with, and what it served
    before still reads as it did. A known field of the wrong shape is still an error.
    """
    try:
        return model.model_validate(body, extra="ignore")
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "the answer"
        raise ControllerError(f"{url} served no {what}: {where}: {problem['msg']}") from exc


def read_answer(model: type[_M], answer: http_client.Answer, url: str, what: str) -> _M:
    """The JSON body of ``answer``, from ``url``, read into ``model`` (:func:`served`); an
    answer that is no JSON is a :class:`ControllerError` too."""
    try:
        body = answer.json()
    except ValueError as exc:
        raise ControllerError(f"{url} answered with something other than JSON") from exc
    return served(model, body, url, what)
