"""The server's per-connection limits against the clients that talk to it."""

import httpx
import pytest

from controller.adapters.http.server import _handler_args
from controller.settings import HttpSettings

# How long common HTTP clients keep an idle connection before they drop it themselves:
# httpx's default pool (read from the installed package), Node's fetch (undici, 4 s)
# and its global http.Agent (keep-alive on by default since Node 19, 5 s).
CLIENT_IDLE_SECONDS = [
    pytest.param(httpx.Limits().keepalive_expiry, id="httpx"),
    pytest.param(4.0, id="node-fetch"),
    pytest.param(5.0, id="node-http-agent"),
]


@pytest.mark.parametrize("client_idle", CLIENT_IDLE_SECONDS)
def test_an_idle_connection_is_dropped_by_the_client_before_the_server(
    client_idle: float | None,
) -> None:
    # A server that closes an idle connection no later than the client does races the
    # client's next request on it: the request is sent as the server closes, and fails.
    idle = _handler_args(HttpSettings())["keepalive_timeout"]
    assert client_idle is not None
    assert idle >= client_idle + 5


def test_the_idle_limit_is_the_setting() -> None:
    assert _handler_args(HttpSettings(header_timeout_seconds=2.5))["keepalive_timeout"] == 2.5
