"""The interpreter shared by the daemon's threads: the event loop gets it back sooner.

The daemon's event loop (commands, kills, gates, ingest) shares one interpreter
with threads that work on their own: the HTTP intake's loop, OTLP decoding and
translating. Under a flood those threads want it all the time. CPython hands it
to a waiting thread only when the holder has run for the switch interval (5 ms
by default), so each time the loop wakes for a socket it can wait that long,
or more with several threads ahead of it; a kill passes through dozens of such
wake-ups. At 1 ms, with OTLP exports decoded natively beside it, a kill under
one export re-sent by six clients took 0.16-0.21 s at the 95th percentile on
2 cores, not 0.52-0.57 s (docs/benchmarks.md, *A kill under floods*). A process
with one busy thread never switches, so the interval costs it nothing.
"""

from __future__ import annotations

import sys
from typing import Final

SWITCH_INTERVAL_SECONDS: Final = 0.001
"""The longest a thread holds the interpreter while another waits for it."""


def favour_the_loop() -> None:
    """Set this process's switch interval to :data:`SWITCH_INTERVAL_SECONDS`."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
