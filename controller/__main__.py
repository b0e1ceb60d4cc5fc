"""``python -m controller``: the ``rollout-controller`` command."""

import sys

from controller.cli import main

sys.exit(main())
