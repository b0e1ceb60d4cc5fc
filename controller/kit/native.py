"""The events fold's optional Rust extension, ``rollout_fold_native`` (``make native``).

It decodes and folds the events stream (:mod:`controller.daemon.ingest.native_fold`) and
does a flush's per-unit work (:mod:`controller.adapters.redis.cells.native`); each side
checks for the parts it uses, so an older build serves what it has. Without it, or with
``ROLLOUT_NATIVE_FOLD=0`` (benchmarks that compare both paths in one sitting), the
Python paths do everything.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

SWITCH = "ROLLOUT_NATIVE_FOLD"
"""Set to ``0`` to leave the extension unused."""


def fold_extension() -> ModuleType | None:
    """The extension, or None where it is not installed or switched off."""
    if os.environ.get(SWITCH, "1") == "0":
        return None
    try:
        return importlib.import_module("rollout_fold_native")
    except ImportError:
        return None
