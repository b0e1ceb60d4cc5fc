"""``rolloutctl plan validate``'s checks of the queries a plan sends to Prometheus.

Each template is filled for the flag given with ``--flag`` (a placeholder key
without it): a key that could not be filled safely is an error naming it. With a
server (``--prometheus URL``, or ``prometheus.url`` in ``--config``) each filled
query is also sent to be *parsed*, never run, and each one the server refuses is
an error naming its field. A server that gives no usable answer (down, a
closed port, a login page) is an error too: the check was asked for and not
made, and a plan whose queries nobody parsed must not read as valid.
"""

from __future__ import annotations

import argparse

from controller.core.machine import plan_queries
from controller.core.metrics_source import UnsafeValue
from controller.core.rollouts import Finding, Plan
from controller.settings import PrometheusSettings, load_settings

EXAMPLE_FLAG = "example-flag"
"""What ``{{flag}}`` becomes for the checks when no ``--flag`` is given."""


def server(args: argparse.Namespace) -> PrometheusSettings | None:
    """The server the queries are checked against, if any."""
    if args.prometheus:
        return PrometheusSettings(url=args.prometheus)
    if args.config:
        configured = load_settings(args.config).prometheus
        return configured if configured.enabled else None
    return None


def query_findings(plan: Plan, args: argparse.Namespace) -> list[Finding]:
    """What is wrong with the plan's queries for this flag and, given one, this server."""
    flag = args.flag or EXAMPLE_FLAG
    try:
        queries = plan_queries(plan, flag)
    except UnsafeValue as exc:
        return [Finding("error", "--flag", str(exc))]
    settings = server(args) if queries else None
    if settings is None:
        return []
    from controller.adapters.prometheus import (  # noqa: PLC0415 - keep `--help` fast
        SourceUnavailable,
        check_syntax,
    )

    found: list[Finding] = []
    for field, promql in queries:
        try:
            refused = check_syntax(settings, promql)
        except SourceUnavailable as exc:
            reason = (
                f"not checked: {settings.url} gave no usable answer ({exc}), so the"
                " syntax check asked for was not made"
            )
            return [*found, Finding("error", field, reason)]
        if refused is not None:
            found.append(Finding("error", field, f"Prometheus refuses it: {refused}"))
    return found
