"""App keys, pure: who may use a route (key, scope, origin), preflights, and what a command does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.trust import signing
from controller.core.trust.app_keys import (
    AppKey,
    AppKeyCommand,
    Policy,
    Refused,
    Scope,
    access,
    audit,
    bearer,
    by_digest,
    decide,
    digest,
    parsed,
    preflight,
    refusal,
)
from controller.core.wire.messages import Decision

SITE = "https://shop.example.com"
NOW_MS = 1_763_900_000_000


def key(
    name: str, secret: str, *scopes: Scope, client: bool = False, revoked: bool = False
) -> AppKey:
    return AppKey(
        id=digest(name)[:16],
        name=name,
        scopes=frozenset(scopes),
        client=client,
        secret_sha256=digest(secret),
        created_ms=NOW_MS,
        created_by="ana",
        revoked_ms=NOW_MS + 1 if revoked else None,
        revoked_by="ana" if revoked else None,
    )


BOOK = by_digest(
    [
        key("both", "s-both", Scope.EVALUATE, Scope.EVENTS),
        key("eval-only", "s-eval", Scope.EVALUATE),
        key("events-only", "s-events", Scope.EVENTS),
        key("web", "s-web", Scope.EVALUATE, Scope.EVENTS, client=True),
        key("gone", "s-gone", Scope.EVALUATE, Scope.EVENTS, revoked=True),
    ]
)
REQUIRED = Policy(require_keys=True, origins=frozenset({SITE}))
OPEN = Policy(require_keys=False, origins=frozenset({SITE}))

# credentials, another scheme sent, origin, scope, policy -> (status, outcome) or "ok"
ACCESS: list[tuple[str, str | None, bool, str | None, Scope, Policy, Any]] = [
    ("no key, required", None, False, None, Scope.EVALUATE, REQUIRED, (401, "no_key")),
    ("no key, open", None, False, None, Scope.EVENTS, OPEN, "ok"),
    ("basic auth", None, True, None, Scope.EVALUATE, OPEN, (401, "no_key")),
    ("unknown key", "s-nope", False, None, Scope.EVALUATE, OPEN, (401, "unknown_key")),
    ("huge key", "x" * 10_000, False, None, Scope.EVALUATE, OPEN, (401, "unknown_key")),
    ("revoked", "s-gone", False, None, Scope.EVALUATE, REQUIRED, (401, "revoked_key")),
    ("both scopes", "s-both", False, None, Scope.EVENTS, REQUIRED, "ok"),
    ("evaluate key evaluates", "s-eval", False, None, Scope.EVALUATE, REQUIRED, "ok"),
    ("evaluate key sends", "s-eval", False, None, Scope.EVENTS, REQUIRED, (403, "wrong_scope")),
    (
        "events key evaluates",
        "s-events",
        False,
        None,
        Scope.EVALUATE,
        REQUIRED,
        (403, "wrong_scope"),
    ),
    ("client key, no origin", "s-web", False, None, Scope.EVENTS, REQUIRED, "ok"),
    ("client key, listed origin", "s-web", False, SITE, Scope.EVALUATE, REQUIRED, "ok"),
    (
        "client key, other origin",
        "s-web",
        False,
        "https://evil.example",
        Scope.EVALUATE,
        REQUIRED,
        (403, "origin"),
    ),
    (
        "server key from a browser",
        "s-both",
        False,
        SITE,
        Scope.EVALUATE,
        REQUIRED,
        (403, "server_key_in_browser"),
    ),
    ("no key, listed origin, open", None, False, SITE, Scope.EVALUATE, OPEN, "ok"),
    ("no key, other origin, open", None, False, "null", Scope.EVALUATE, OPEN, (403, "origin")),
]


@pytest.mark.parametrize(
    ("credentials", "other_scheme", "origin", "scope", "policy", "expected"),
    [case[1:] for case in ACCESS],
    ids=[case[0] for case in ACCESS],
)
def test_access(
    credentials: str | None,
    other_scheme: bool,
    origin: str | None,
    scope: Scope,
    policy: Policy,
    expected: Any,
) -> None:
    found = access(
        credentials=credentials,
        scheme_given=other_scheme,
        origin=origin,
        scope=scope,
        keys=BOOK,
        policy=policy,
    )
    if expected == "ok":
        assert not isinstance(found, Refused), found
    else:
        assert isinstance(found, Refused)
        assert (found.status, found.outcome) == expected
        assert found.reason


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("Bearer", None),
        ("Basic dXNlcjpwYXNz", None),
    ],
)
def test_bearer(header: str | None, expected: str | None) -> None:
    assert bearer(header) == expected


@pytest.mark.parametrize(
    ("origin", "expected"),
    [(SITE, None), ("https://evil.example", 403), (None, 400), (SITE + "/", 403)],
)
def test_preflight(origin: str | None, expected: int | None) -> None:
    refused = preflight(origin, REQUIRED)
    assert (refused.status if refused else None) == expected


def command(action: str, target: str, **fields: Any) -> AppKeyCommand:
    return AppKeyCommand.model_validate(
        {
            "type": "app_key",
            "v": 1,
            "id": f"c-{target}",
            "ts": NOW_MS,
            "action": action,
            "target": target,
            "actor": "ana",
            **fields,
        }
    )


def create(name: str, secret: str, **fields: Any) -> AppKeyCommand:
    return command(
        "create", name, app_key=digest("id" + name)[:16], secret_sha256=digest(secret), **fields
    )


LIVE = {k.id: k for k in BOOK.values()}

# command -> the refusal's words, or the key's (name, scopes, revoked)
DECISIONS: list[tuple[str, AppKeyCommand, Any]] = [
    ("create", create("new", "s-new", scopes=["events"]), ("new", {"events"}, False)),
    (
        "client key has both scopes",
        create("spa", "s-spa", client=True, scopes=["evaluate"]),
        ("spa", {"evaluate", "events"}, False),
    ),
    ("no scope", create("new", "s-new"), "at least one scope"),
    ("bad name", create("no spaces", "s-new", scopes=["events"]), "invalid key name"),
    ("live name taken", create("both", "s-new", scopes=["events"]), "a live app key is named"),
    (
        "revoked name reused",
        create("gone", "s-new", scopes=["events"]),
        ("gone", {"events"}, False),
    ),
    ("secret reused", create("new", "s-both", scopes=["events"]), "secret was used before"),
    ("create without hash", command("create", "new", scopes=["events"]), "needs app_key"),
    ("revoke by name", command("revoke", "both"), ("both", {"evaluate", "events"}, True)),
    ("revoke by id", command("revoke", digest("web")[:16]), ("web", {"evaluate", "events"}, True)),
    ("revoke unknown", command("revoke", "nobody"), "no app key named"),
    ("revoke twice", command("revoke", "gone"), "already revoked"),
]


@pytest.mark.parametrize(
    ("given", "expected"), [c[1:] for c in DECISIONS], ids=[c[0] for c in DECISIONS]
)
def test_decide(given: AppKeyCommand, expected: Any) -> None:
    found = decide(LIVE, given, now_ms=NOW_MS + 5)
    if isinstance(expected, str):
        assert isinstance(found, str)
        assert expected in found
        return
    assert isinstance(found, AppKey), found
    name, scopes, revoked = expected
    assert (found.name, {s.value for s in found.scopes}, not found.live) == (name, scopes, revoked)


def test_the_audit_is_a_decision_that_never_shows_the_hash() -> None:
    given = create("new", "s-new", scopes=["evaluate"])
    made = decide(LIVE, given, now_ms=NOW_MS)
    published = audit(given, made, now_ms=NOW_MS)
    decision = Decision.model_validate(published)
    assert (decision.kind, decision.outcome, decision.flag) == ("app_key", "applied", "app-key:new")
    assert digest("s-new") not in str(published)
    assert audit(given, made, now_ms=NOW_MS + 9)["id"] == published["id"]  # deduplicated
    refused = Decision.model_validate(audit(given, "bad signature", now_ms=NOW_MS, refused="x"))
    assert (refused.outcome, refused.reason) == ("rejected", "x")


def test_signed_fresh_commands_pass_and_others_say_why() -> None:
    private, public_text = signing.generate_key()
    keys = {"ops": signing.load_public_key(public_text)}
    now = datetime.fromtimestamp(NOW_MS / 1000, UTC)
    raw: dict[str, Any] = {
        **create("new", "s", scopes=["events"]).model_dump(mode="json"),
        "key_id": "ops",
    }
    raw["sig"] = signing.sign(raw, private)
    found = parsed(__import__("orjson").dumps(raw))
    assert found is not None
    good, signed_raw = found

    def why(c: AppKeyCommand, r: dict[str, Any], at: datetime = now) -> str | None:
        return refusal(c, r, keys=keys, now=at, max_age_seconds=300)

    assert why(good, signed_raw) is None
    assert why(good, {**signed_raw, "target": "other"}) == "bad signature"
    assert why(good, signed_raw, now + timedelta(hours=1)).startswith("stale command")  # type: ignore[union-attr]
    unsigned = good.model_copy(update={"sig": None})
    assert why(unsigned, signed_raw) == "unsigned command"
    assert parsed(b'{"type": "command"}') is None
