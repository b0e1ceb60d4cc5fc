"""The ports ``dev up`` gives the controller: its HTTP port and, beside it, the health
listener's, so two dev stacks, or one with ``--port``, never collide."""

from __future__ import annotations

import itertools

import pytest

from controller.demo.devstack import dev_config, http_ports

FREE_FROM = 40_000
"""Where the stand-in for "any free port" starts drawing."""


@pytest.mark.parametrize(
    ("requested", "taken", "expected"),
    [
        pytest.param(None, set(), (8000, 8001), id="the defaults, where rolloutctl looks"),
        pytest.param(9000, set(), (9000, 9001), id="--port: the health port follows"),
        pytest.param(9000, {8001}, (9000, 9001), id="--port beside a first stack"),
        pytest.param(None, {8000, 8001}, (FREE_FROM, FREE_FROM + 1), id="a second stack"),
        pytest.param(9000, {9001}, (9000, FREE_FROM), id="the port beside taken"),
        pytest.param(65535, set(), (65535, FREE_FROM), id="no port beside the last"),
    ],
)
def test_the_health_port_follows_the_http_port(
    requested: int | None, taken: set[int], expected: tuple[int, int]
) -> None:
    drawn = itertools.count(FREE_FROM)
    ports = http_ports(
        requested, is_free=lambda port: port not in taken, any_free=lambda: next(drawn)
    )
    assert ports == expected


def test_a_free_port_drawn_for_the_health_listener_is_never_the_http_one() -> None:
    drawn = iter([9000, 9002])
    assert http_ports(9000, is_free=lambda port: port != 9001, any_free=lambda: next(drawn)) == (
        9000,
        9002,
    )


def test_the_controller_is_given_both_ports() -> None:
    config = dev_config(
        {"kafka": "k:1", "redis": "redis://r"}, public_key="p", ports=(9000, 9001), token="t"
    )
    assert (config["http"]["port"], config["http"]["health_port"]) == (9000, 9001)
