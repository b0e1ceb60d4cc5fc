"""``rolloutctl app-key``: make, revoke and list the API keys of apps.

``create`` draws the secret here (32 random bytes, URL-safe base64, after
``rc_app_`` or ``rc_client_``) and a public id, signs a command carrying only
the secret's SHA-256, sends it and waits for the controller's decision; the
secret is printed once, when the key is in force. ``revoke`` sends the
revocation of a key named by its name or id. ``list`` reads ``GET /app-keys``
(names, ids, scopes, who made and revoked each and when; never a secret or
its hash) with the webhook token from ``$ROLLOUTCTL_TOKEN`` where the
controller wants it.
"""

from __future__ import annotations

import argparse
import secrets
from datetime import UTC, datetime
from typing import Any

from controller.core.trust import CLIENT_PREFIX, SERVER_PREFIX, AppKeyCommand, digest, signing
from controller.core.wire import AppKeyEvidence, Decision, JsonObject
from controller.ctl.exits import EXIT_NO_DECISION, EXIT_REJECTED
from controller.ctl.looking import diagnosis, views
from controller.ctl.operate.commands import contract_model, new_message, read_private_key
from controller.ctl.operate.handlers import actor_of, key_id_of, key_path_of, send_signed
from controller.ctl.terminal import env_url, print_json, warn
from controller.ctl.usage import UsageError

RECORD_KEY = b"app-keys"
"""The Kafka key of every app-key command: one partition, so they apply in order."""


def run(args: argparse.Namespace) -> int:
    """One ``app-key`` verb."""
    if args.app_key_command == "list":
        return _list(args)
    secret = None
    if args.app_key_command == "create":
        secret = (CLIENT_PREFIX if args.client else SERVER_PREFIX) + secrets.token_urlsafe(32)
    command = _signed(args, secret)
    answered = send_signed(args, command, key=RECORD_KEY)
    if answered is None:
        what = f"{command.action} {command.target} (command {command.id})"
        hint = f"; revoke key {command.app_key} if it appears" if secret else ""
        warn(f"sent {what}, but no decision came within {args.timeout:g}s{hint}")
        return EXIT_NO_DECISION
    applied = answered.decision.outcome == "applied"
    if args.json:
        print_json({**answered.published, **({"secret": secret} if secret and applied else {})})
    else:
        print(outcome_line(answered.decision, command.target))
        if secret and applied:
            print(secret)
            warn("the secret above is shown this once: store it now (Authorization: Bearer)")
    return 0 if applied else EXIT_REJECTED


def outcome_line(decision: Decision, target: str) -> str:
    """One line on a decision on an app-key command: the key made or revoked, or why not."""
    said = decision.evidence
    key = said.app_key if isinstance(said, AppKeyEvidence) else None
    verb = decision.action.removeprefix("app-key ")  # the daemon's action names the command
    what = f"app-key {verb} {key.name if key else target}"
    if decision.outcome != "applied" or key is None:
        return views.outcome_line(decision, what=what)
    kind = "client key" if key.client else "server key"
    scopes = ", ".join(key.scopes)
    where = f", in {key.environment} only" if key.environment else ""
    result = f"id {key.id}, {kind}: {scopes}{where}"
    return views.outcome_line(decision, what=what, result=result)


def command_of(
    action: str,
    target: str,
    *,
    actor: str,
    key_id: str,
    reason: str = "",
    secret: str | None = None,
    scopes: list[str] | None = None,
    client: bool = False,
    environment: str | None = None,
    applied: str | None = None,
) -> AppKeyCommand:
    """An unsigned app-key command, as the contract's model: a new key's id drawn here and
    its secret's hash where ``secret`` is given (``create``); ``applied``: the desired key's
    digest (``rolloutctl apply``)."""
    fields: JsonObject = {"type": "app_key", **new_message(), "action": action}
    fields |= {"target": target, "actor": actor, "reason": reason, "key_id": key_id}
    if secret is not None:
        fields |= {
            "app_key": secrets.token_hex(8),
            "scopes": [*sorted(set(scopes or []))],
            "client": client,
            "secret_sha256": digest(secret),
        }
        if environment is not None:
            fields["environment"] = environment
    if applied is not None:
        fields["applied"] = applied
    return contract_model(AppKeyCommand, fields)


def _signed(args: argparse.Namespace, secret: str | None) -> AppKeyCommand:
    key_id = key_id_of(args.key_id)
    if secret is not None and not args.client and not args.scope:
        raise UsageError("a key needs --scope evaluate, events or verdicts (or --client)")
    command = command_of(
        args.app_key_command,
        args.name if secret is not None else args.target,
        actor=actor_of(args.actor),
        key_id=key_id,
        reason=args.reason,
        secret=secret,
        scopes=getattr(args, "scope", None),
        client=getattr(args, "client", False),
        environment=getattr(args, "environment", None),
    )
    return signing.sign_command(command, read_private_key(key_path_of(args.key, key_id)))


def _list(args: argparse.Namespace) -> int:
    base = env_url(args.url)
    body = diagnosis.get_json(base, "/app-keys", timeout_s=10)
    keys: list[dict[str, Any]] = body.get("keys", [])
    if args.json:
        print_json({"keys": keys})
        return 0
    print(
        f"{'NAME':<24} {'ID':<16} {'SCOPES':<16} {'KIND':<6} {'ENVIRONMENT':<12} "
        f"{'CREATED':<20} REVOKED"
    )
    for key in keys:
        print(
            f"{key['name']:<24} {key['id']:<16} {','.join(key['scopes']):<16} "
            f"{'client' if key.get('client') else 'server':<6} "
            f"{key.get('environment') or '*':<12} "
            f"{_when(key.get('created_ms')):<20} {_when(key.get('revoked_ms')) or '-'}"
        )
    return 0


def _when(ms: object) -> str:
    if not isinstance(ms, int):
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
