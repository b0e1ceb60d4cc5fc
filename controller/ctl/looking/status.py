"""``rolloutctl status``: every rollout, or one in detail, from the controller's HTTP API.

It reads ``/rollouts`` (or ``/rollouts/FLAG``) into its view models
(:mod:`controller.core.reading.views`) and prints the table or the one rollout. It loads
what that takes and no more: no broker client, no signing, no settings file.
"""

from __future__ import annotations

import argparse

from controller.core.reading import RolloutList, RolloutStatus
from controller.ctl.exits import EXIT_FAILURE
from controller.ctl.looking import diagnosis, views
from controller.ctl.looking.shares import share
from controller.ctl.terminal import env_url, print_json, warn

STATUS_TIMEOUT_S = 10.0
"""How long one ``status`` may take, its asking again after a 429 included."""


def status(args: argparse.Namespace) -> int:
    """The status table, or one rollout in detail, from the controller's HTTP API."""
    base = env_url(args.url)
    path = f"/rollouts/{args.flag}" if args.flag else "/rollouts"
    # Over the controller's read rate (several rolloutctl at once, from one address) the
    # read is asked again after the Retry-After it was given.
    answer = diagnosis.fetch(base, path, timeout_s=STATUS_TIMEOUT_S)
    if answer.status == 404 and args.flag:
        warn(f"no rollout for flag {args.flag!r}")
        return EXIT_FAILURE
    if answer.status != 200:
        raise diagnosis.refused(base, path, answer)
    body = answer.json()
    if args.json:
        print_json(body)  # as served, by whichever version of the controller
    elif args.flag:
        status = diagnosis.served(RolloutStatus, body, base + path, "RolloutStatus")
        effect = share(args.effect, "--effect")
        print(views.status_detail(status, effect=effect))
    else:
        listing = diagnosis.served(RolloutList, body, base + path, "RolloutList")
        print(views.status_table(listing.rollouts))
    return 0
