"""Before ``apply`` sends anything: whether the controller would admit every command now.

Every command of every object is asked of ``POST /commands/check``, signed as it will be
sent, in chunks of at most :data:`~controller.core.reading.MAX_CHECKED_COMMANDS` commands
and :data:`CHUNK_BYTES`. The controller checks each as its command intake does on arrival
(key, signature, freshness, environment, the key's roles) and decides none, so apply sends
the set only when every object would be admitted: a key allowed part of a directory
sends none of it.
"""

from __future__ import annotations

import orjson

from controller.adapters import http_client
from controller.core.common import ControllerError
from controller.core.reading import MAX_CHECK_BYTES, MAX_CHECKED_COMMANDS, CommandChecks
from controller.core.wire import JsonObject, sent_object
from controller.ctl.gitops.commanding import Batch
from controller.ctl.looking import diagnosis

PATH = "/commands/check"
CHUNK_BYTES = MAX_CHECK_BYTES // 2
"""The most one request carries, well inside what the controller takes."""
TIMEOUT_S = 30.0


def refusals(base: str, batches: list[Batch]) -> list[str | None]:
    """Per batch, why the controller would refuse it now (its first command refused), or
    None: every command of it would be admitted. Raises :class:`ControllerError` when the
    controller cannot say (unreachable, or too old to check)."""
    asked = [(at, sent_object(c)) for at, batch in enumerate(batches) for c in batch.commands]
    found: list[str | None] = [None] * len(batches)
    for chunk in _chunks(asked):
        answers = _ask(base, [command for _, command in chunk])
        for (at, _), answer in zip(chunk, answers.results, strict=True):
            if not answer.allowed and found[at] is None:
                found[at] = answer.reason or "refused"
    return found


def _chunks(asked: list[tuple[int, JsonObject]]) -> list[list[tuple[int, JsonObject]]]:
    chunks: list[list[tuple[int, JsonObject]]] = [[]]
    size = 0
    for entry in asked:
        length = len(orjson.dumps(entry[1])) + 1
        full = len(chunks[-1]) >= MAX_CHECKED_COMMANDS or size + length > CHUNK_BYTES
        if chunks[-1] and full:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += length
    return [chunk for chunk in chunks if chunk]


def _ask(base: str, commands: list[JsonObject]) -> CommandChecks:
    body = orjson.dumps({"commands": commands})
    try:
        answer = http_client.post(
            base + PATH, body, timeout_s=TIMEOUT_S, headers=diagnosis.token_headers()
        )
    except http_client.Unreachable as exc:
        raise diagnosis.unreachable(base, exc) from exc
    if answer.status in (404, 405):
        raise ControllerError(
            f"the controller at {base} does not check commands before they are sent (it is "
            "older than this rolloutctl), so apply cannot send the directory whole: upgrade it"
        )
    if answer.status != 200:
        raise diagnosis.refused(base, PATH, answer)
    checks = diagnosis.read_answer(CommandChecks, answer, base + PATH, "check of commands")
    if len(checks.results) != len(commands):
        raise ControllerError(
            f"{base}{PATH} answered {len(checks.results)} results for {len(commands)} commands"
        )
    return checks
