"""The arguments of the audience commands: ``segment``, ``audience test``, ``rule draft``,
and the apps' keys (``app-key``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.ctl.arguments.models import add_model_arguments
from controller.ctl.options import add_url, broker_options, output_options, signing_options

Subparsers = argparse._SubParsersAction


def add_rule(commands: Subparsers[argparse.ArgumentParser]) -> None:
    rule = commands.add_parser("rule", help="work with audience rules")
    _add_rule_draft(rule.add_subparsers(dest="rule_command", required=True, metavar="VERB"))


def _add_rule_draft(verbs: Subparsers[argparse.ArgumentParser]) -> None:
    """``rule draft`` and its options, on the ``rule`` command's verbs."""
    sub = verbs.add_parser(
        "draft",
        help="have the configured model draft an audience rule or a ring plan, for review",
        description="Ask the configured model (the llm settings: config file, LLM_BASE_URL) "
        "for an audience rule matching the description, parse it, lint it against the "
        "attribute catalogue and count how many example contexts it matches. With --rings, "
        "ask for the rollout's rings instead and print them as a plan. Exit 1 when the model "
        "gave no rule (or no rings that make a plan) or a rule has lint errors. Nothing is "
        "applied.",
    )
    sub.add_argument(
        "description",
        metavar="DESCRIPTION",
        help="the audience (with --rings, the rings), in words",
    )
    sub.add_argument(
        "--rings",
        action="store_true",
        help="draft a ring plan: rings in order, each an audience (or everyone) and the percent "
        "of it served, checked to widen, each rule linted, previewed ring by ring, and printed "
        "as plan YAML for `rolloutctl start --plan` (e.g. 'staff first, then the beta list, "
        "then Thai users at 25%%, then everyone')",
    )
    sub.add_argument(
        "--catalogue",
        type=Path,
        metavar="FILE",
        help="YAML or JSON: attributes (name: string|number|bool|semver|date) and segments",
    )
    sub.add_argument(
        "--contexts", type=Path, metavar="FILE", help="example contexts, one JSON object a line"
    )
    sub.add_argument("--json", action="store_true", help="one JSON object on stdout")
    add_model_arguments(sub)


def add_segment(commands: Subparsers[argparse.ArgumentParser]) -> None:
    segment = commands.add_parser(
        "segment",
        help="put, delete, list and show segments (named audiences)",
        description="Segments are named audiences that rules share: a rule, or a list of "
        'unit ids (up to 1,000,000), as `user_id in segment("beta")`. Put and delete are '
        "signed commands, decided and audited like the action commands.",
    )
    verbs = segment.add_subparsers(dest="verb", required=True, metavar="VERB")
    changing = [signing_options(), broker_options(), output_options()]
    put = verbs.add_parser(
        "put",
        parents=changing,
        help="create or replace a segment (its version goes up)",
        description="Create or replace segment NAME: with --rule, an audience rule in its "
        "text form (it may not name a segment); with --ids-file, unit ids one per line, sent "
        "as signed parts that the controller checks against their count and SHA-256 before "
        "the new version replaces the old one.",
    )
    put.add_argument("name", metavar="NAME", help="the segment's name")
    put.add_argument("--rule", metavar="TEXT", help="a rule, e.g. 'plan in [\"pro\"]'")
    put.add_argument("--ids-file", type=Path, metavar="FILE", help="unit ids, one per line")
    delete = verbs.add_parser(
        "delete",
        parents=changing,
        help="delete a segment",
        description="Delete segment NAME: rules that name it no longer match through it "
        "(a deleted segment is unknown to them).",
    )
    delete.add_argument("name", metavar="NAME", help="the segment's name")
    for sub in (put, delete):
        sub.add_argument(
            "--timeout", type=float, default=60.0, metavar="SECONDS", help="wait this long (60)"
        )
        sub.add_argument("--no-wait", action="store_true", help="send and exit without waiting")
    reading = [output_options()]
    listing = verbs.add_parser(
        "list",
        parents=reading,
        help="list segments",
        description="List segments: name, "
        "version, and size or rule, from the controller's GET /v1/segments.",
    )
    show = verbs.add_parser(
        "show",
        parents=reading,
        help="show one segment",
        description="Show segment NAME: its version, its rule or its size and hash, its signer.",
    )
    show.add_argument("name", metavar="NAME", help="the segment's name")
    for sub in (listing, show):
        add_url(sub)


def add_audience(commands: Subparsers[argparse.ArgumentParser]) -> None:
    audience = commands.add_parser(
        "audience",
        help="test which arm a context gets from a targeted rollout, and why",
        description="Work with a flag's audience and rings as the controller serves them.",
    )
    verbs = audience.add_subparsers(dest="verb", required=True, metavar="VERB")
    test = verbs.add_parser(
        "test",
        parents=[output_options()],
        help="evaluate FLAG for a context and say why",
        description="Evaluate FLAG for the context as every app would (the flag state from "
        "GET /flags, the segments its rules name from GET /v1/segments/NAME) and print the "
        "arm, the reason, the cohort (compared, carried or outside), each rule in text with "
        "its truth for the context (true, false or unknown: unknown counts as no), each "
        "ring's share and whether the unit's bucket is below it.",
        epilog='Example: rolloutctl audience test checkout.new-flow --context \'{"country": '
        '"TH", "plan": "pro"}\' --unit user-42',
    )
    test.add_argument("flag", metavar="FLAG", help="the flag key")
    test.add_argument(
        "--context",
        required=True,
        metavar="JSON",
        help="the evaluation context, a JSON object of at most 16 KiB, 8 levels and "
        "1,000 values (its targetingKey is the unit unless --unit is given)",
    )
    test.add_argument("--unit", metavar="U", help="the unit (targeting key) to bucket")
    add_url(test)


def add_app_key(commands: Subparsers[argparse.ArgumentParser]) -> None:
    app_key = commands.add_parser(
        "app-key",
        help="make, revoke and list the API keys apps use for OFREP and POST /v1/events",
        description="App keys authenticate evaluation (OFREP), the event intake and deploy "
        "gates' reads of GET /rollouts/{flag}/verdict (Authorization: Bearer <key>). Made "
        "and revoked by signed commands; the secret is drawn here and printed once, and only "
        "its SHA-256 is sent.",
    )
    verbs = app_key.add_subparsers(dest="app_key_command", required=True, metavar="VERB")
    signed = [signing_options(), broker_options(), output_options()]
    create = verbs.add_parser(
        "create",
        parents=signed,
        help="make a key and print its secret once",
        description="Make an app key: exit 0 and the secret (shown this once) when applied, "
        "3 with the reason when rejected, 4 if no decision came in time.",
    )
    create.add_argument("name", metavar="NAME", help="the key's name, e.g. checkout-api")
    create.add_argument(
        "--scope",
        action="append",
        choices=["evaluate", "events", "verdicts"],
        default=[],
        help="what the key may do (repeat for several): evaluate flags, send events, or read "
        "rollouts' verdicts (a deploy gate's read-only key); a --client key has evaluate and "
        "events",
    )
    create.add_argument(
        "--client",
        action="store_true",
        help="a client (browser, phone) key: evaluate and events only, accepted from the "
        "origins in http.cors_origins",
    )
    create.add_argument(
        "--environment",
        metavar="NAME",
        help="bind the key to one environment: OFREP answers from it and its events must "
        "be its flags' (default: every environment)",
    )
    revoke = verbs.add_parser(
        "revoke", parents=signed, help="revoke a key", description="Revoke an app key now."
    )
    revoke.add_argument("target", metavar="NAME|ID", help="the key's name or id")
    for sub in (create, revoke):
        sub.add_argument(
            "--timeout", type=float, default=30.0, metavar="SECONDS", help="wait this long (30)"
        )
    listing = verbs.add_parser(
        "list",
        parents=[output_options()],
        help="list keys: names, ids, scopes, when made and revoked (never secrets)",
        description="List the app keys from the controller's HTTP API (GET /app-keys).",
    )
    add_url(listing)
