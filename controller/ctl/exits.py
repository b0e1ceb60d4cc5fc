"""The exit codes of ``rolloutctl`` and ``rolloutctl alerts``: defined here only."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
"""The broker or the controller is unreachable (a command was not sent), a signature is
invalid, an OS error."""
EXIT_USAGE = 2
EXIT_REJECTED = 3
"""The controller rejected the command."""
EXIT_NO_DECISION = 4
"""No decision came in time: the command was sent and may still apply (also when the
broker went away once it had the command)."""
EXIT_UNSEEN = 5
"""``diff``: the controller could not be read, so nothing was compared (1 means a difference)."""
EXIT_CONFIG = 78  # EX_CONFIG
"""Bad configuration, plan or key."""
EXIT_INTERRUPTED = 130
"""Ctrl-C: 128 + SIGINT, as a shell reports it."""
EXIT_READER_LEFT = 141
"""The reader of stdout went away (``| head``): 128 + SIGPIPE, as a shell reports it."""
