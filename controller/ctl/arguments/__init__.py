"""What each ``rolloutctl`` command takes: its arguments, options and help, and none of its work.

Building the parser (``rolloutctl --help``, shell completion, the command-line reference)
loads these modules and no more: argparse, the shared options and the terminal's names,
none of the core, no client library. A command's work is imported when it runs
(:mod:`controller.ctl.app`), so ``--help`` answers at once. Where an option names a value
the core owns (an action, a risk level, an audit type), it is written here and a test
keeps the two in step.
"""

from controller.ctl.arguments import (
    agent,
    alerts,
    audit,
    gitops,
    ingest,
    looking,
    models,
    pipelines,
    plans,
    reports,
    steering,
    targeting,
)
from controller.ctl.arguments.alerts import ENV_WEBHOOK
from controller.ctl.arguments.audit import MAX_LINE_BYTES
from controller.ctl.arguments.models import DEFAULT_DEADLINE, seconds
from controller.ctl.arguments.plans import DEFAULT_DESIGN_EFFECT, DEFAULT_REQUESTS_PER_UNIT

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_DESIGN_EFFECT",
    "DEFAULT_REQUESTS_PER_UNIT",
    "ENV_WEBHOOK",
    "MAX_LINE_BYTES",
    "agent",
    "alerts",
    "audit",
    "gitops",
    "ingest",
    "looking",
    "models",
    "pipelines",
    "plans",
    "reports",
    "seconds",
    "steering",
    "targeting",
]
