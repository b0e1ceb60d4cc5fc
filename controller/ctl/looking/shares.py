"""A share as an operator writes it on the command line: ``1%`` or ``0.01``."""

from __future__ import annotations

import re

from controller.ctl.usage import UsageError

_SHARE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(%?)\s*$")


def share(text: str, option: str) -> float:
    """``1%`` or ``0.01`` as a share."""
    match = _SHARE.match(text)
    if not match:
        raise UsageError(f"{option} {text!r}: give a share, 1% or 0.01")
    value = float(match.group(1)) / (100.0 if match.group(2) else 1.0)
    if not value > 0:
        raise UsageError(f"{option} {text!r}: must be above 0")
    return value
