"""The size of the model a server serves, from its ``/v1/models`` list (llama.cpp's ``n_params``).

Asked by the commands that skip a model too small for their task when its
name states no size (:mod:`controller.ctl.asking`). Bounded like every model
call: one deadline for the whole exchange, the answer read up to
:data:`MAX_LIST_BYTES`, nothing compressed, and no error escapes: a server
that does not answer, or lists no size, gives None.
"""

from __future__ import annotations

import httpx
import orjson

from controller.adapters.llm import model_client
from controller.core.reading import listed_billions
from controller.kit.deadlines import deadline, read_bounded
from controller.settings import LlmSettings

MAX_LIST_BYTES = 256 * 1024
"""A model list of a few entries fits many times over."""


async def served_billions(
    settings: LlmSettings, *, seconds: float, transport: httpx.AsyncBaseTransport | None = None
) -> float | None:
    """The parameter count (in billions) the server lists for ``settings.model``, or None."""
    try:
        async with (
            model_client(settings, transport, seconds=seconds) as http,
            deadline(seconds, "the model list"),
            http.stream("GET", "/models") as response,
        ):
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if response.status_code != httpx.codes.OK or encoding not in ("", "identity"):
                return None
            declared = response.headers.get("content-length")
            body = await read_bounded(response.aiter_raw(), MAX_LIST_BYTES, declared=declared)
        return listed_billions(orjson.loads(body), settings.model)
    except Exception:  # the contract: no list, no size
        return None
