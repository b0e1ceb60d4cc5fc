"""The native draw of units into the watched sample draws the same units, as the same members,
as the Python draw (:func:`controller.core.stats.watched_members`), which is the reference.

MurmurHash3 reads 16 bytes a block and a tail of up to 15 byte by byte, so the units here
are of every length to past two blocks, in every width of UTF-8 and with lone surrogates
(which the Python draw hashes as ``surrogatepass`` writes them). Where the extension is not
installed these skip with SERVICE MISSING, and fail under CI (``make native`` builds it).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.adapters.redis.cells import watch
from controller.core.stats import WATCH_DRAW, WATCH_SEED, watched_members

pytestmark = pytest.mark.usefixtures("fold_native")


def native(units: object) -> list[str]:
    assert watch.NATIVE_DRAW is not None
    return watch.NATIVE_DRAW(units)  # type: ignore[arg-type]


def _character(rng: random.Random) -> str:
    return chr(
        rng.choice(
            (
                rng.randrange(0x20, 0x7F),  # one byte
                rng.randrange(0x80, 0x800),  # two
                rng.randrange(0x800, 0xD800),  # three
                rng.randrange(0x10000, 0x110000),  # four
                rng.randrange(0xD800, 0xE000),  # a lone surrogate
            )
        )
    )


@pytest.mark.parametrize(
    "units",
    [
        pytest.param([], id="none"),
        pytest.param([""], id="empty id"),
        pytest.param(["user-1", "user-2", "user-3"], id="plain"),
        pytest.param(["a" * n for n in range(40)], id="every tail length"),
        pytest.param(["\ud800", "x\udfff", "\udc00" * 9], id="lone surrogates"),
        pytest.param(["é" * 8, "€" * 6, "😀" * 4, "😀" * 5], id="wide characters"),
    ],
)
def test_the_native_draw_is_the_python_draw(units: list[str]) -> None:
    assert native(units) == watched_members(units)


def test_the_native_draw_of_a_set_walks_it_in_its_own_order() -> None:
    units = {f"user-{i}" for i in range(5_000)}
    drawn = native(units)
    assert drawn == watched_members(units)
    assert 1_000 < len(drawn) < 1_500  # one in four


def test_the_native_draw_agrees_on_many_generated_units() -> None:
    rng = random.Random(20261127)
    units = [
        "".join(_character(rng) for _ in range(length)) for length in range(70) for _ in range(40)
    ]
    assert native(units) == watched_members(units)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=48), max_size=20))
def test_the_native_draw_agrees_on_any_text(units: list[str]) -> None:
    assert native(units) == watched_members(units)


def test_a_unit_that_is_not_text_is_refused() -> None:
    with pytest.raises(TypeError):
        native([b"user-1"])


def test_the_flush_draws_natively_where_the_extension_is_installed() -> None:
    assert watch.watched is watch.NATIVE_DRAW
    assert (WATCH_SEED, WATCH_DRAW) == (0x5EED_0A75, 3)
