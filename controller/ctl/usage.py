"""The error of a command line that makes no valid command: exit code 2.

Apart from :mod:`controller.ctl.terminal`, which tells it, because it is a
:class:`~controller.core.common.errors.ControllerError` and so loads the core's shared
vocabulary: the terminal loads none of the core until an error is told.
"""

from __future__ import annotations

from controller.core.common import ControllerError


class UsageError(ControllerError):
    """The arguments do not make a valid command; exit code 2."""
