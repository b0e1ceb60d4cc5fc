"""The pure parts of OFREP's event streams: events, resumption, stream tokens, per-place tags."""

from __future__ import annotations

import pytest

from controller.adapters.ofrep.streams import missed, refetch_event
from controller.core.trust import Admitted, Refused, stream_token, token_access, token_key
from controller.core.trust.app_keys import AppKey, Policy, Scope, by_digest, digest

BROWSER = "https://shop.example"
POLICY = Policy(require_keys=True, origins=frozenset({BROWSER}))


def key(n: int, *, client: bool = True, revoked: bool = False) -> AppKey:
    return AppKey(
        id=f"00000000000000a{n}",
        name=f"app-{n}",
        scopes=frozenset({Scope.EVALUATE}),
        client=client,
        secret_sha256=digest(f"secret-{n}"),
        created_ms=1,
        created_by="ana",
        revoked_ms=2 if revoked else None,
    )


def test_an_event_is_resumable_from_its_tag() -> None:
    assert refetch_event("abc") == b'id: abc\ndata: {"type":"refetchEvaluation","etag":"abc"}\n\n'


@pytest.mark.parametrize(
    ("seen", "current", "told"),
    [(None, "t2", False), ("t2", "t2", False), ("t1", "t2", True), ("", "t2", True)],
)
def test_a_reconnect_is_told_only_what_it_missed(
    seen: str | None, current: str, told: bool
) -> None:
    assert missed(seen, current) is told


GOOD, SERVER, REVOKED = key(1), key(2, client=False), key(3, revoked=True)
BOOK = by_digest([GOOD, SERVER, REVOKED])


@pytest.mark.parametrize(
    ("token", "environment", "origin", "verdict"),
    [
        (stream_token(GOOD, "production"), "production", BROWSER, "admitted"),
        (stream_token(GOOD, "production"), "production", None, "admitted"),
        (stream_token(GOOD, "staging"), "production", BROWSER, "unknown_key"),
        (stream_token(GOOD, "production"), "production", "https://evil.example", "origin"),
        (stream_token(SERVER, "production"), "production", BROWSER, "server_key_in_browser"),
        (stream_token(SERVER, "production"), "production", None, "admitted"),
        (stream_token(REVOKED, "production"), "production", None, "revoked_key"),
        (stream_token(GOOD, "production")[:-1] + "0", "production", None, "unknown_key"),
        ("00000000000000ff." + "0" * 32, "production", None, "unknown_key"),
        ("not a token", "production", None, "unknown_key"),
        ("x" * 10_000, "production", None, "unknown_key"),
    ],
)
def test_a_stream_token_opens_its_keys_environment_only(
    token: str, environment: str, origin: str | None, verdict: str
) -> None:
    found = token_access(token, environment, token_key(token, BOOK), origin=origin, policy=POLICY)
    got = "admitted" if isinstance(found, Admitted) else found.outcome
    assert got == verdict, found
    assert isinstance(found, Admitted | Refused)
