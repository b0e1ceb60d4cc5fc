"""The flush's native work is its Python reference's: the draw of units into the watched
sample draws the same units, as the same members, as :func:`controller.core.stats.watched_members`,
and the adding of counts to a copy's lanes leaves the same words as
:func:`~controller.adapters.redis.cells.copies.added_lanes`.

MurmurHash3 reads 16 bytes a block and a tail of up to 15 byte by byte, so the units here
are of every length to past two blocks, in every width of UTF-8 and with lone surrogates
(which the Python draw hashes as ``surrogatepass`` writes them). Where the extension is not
installed these skip with SERVICE MISSING, and fail under CI (``make native`` builds it).
"""

from __future__ import annotations

import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.adapters.redis.cells import copies, native
from controller.adapters.redis.cells.copies import added_lanes
from controller.adapters.redis.cells.layout import LANE_COUNT, lane_of_slots
from controller.core.stats import WATCH_DRAW, WATCH_SEED, watched_members

pytestmark = pytest.mark.usefixtures("fold_native")


def native_draw(units: object) -> list[str]:
    assert native.NATIVE_DRAW is not None
    return native.NATIVE_DRAW(units)  # type: ignore[arg-type]


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
    assert native_draw(units) == watched_members(units)


def test_the_native_draw_of_a_set_walks_it_in_its_own_order() -> None:
    units = {f"user-{i}" for i in range(5_000)}
    drawn = native_draw(units)
    assert drawn == watched_members(units)
    assert 1_000 < len(drawn) < 1_500  # one in four


def test_the_native_draw_agrees_on_many_generated_units() -> None:
    rng = random.Random(20261127)
    units = [
        "".join(_character(rng) for _ in range(length)) for length in range(70) for _ in range(40)
    ]
    assert native_draw(units) == watched_members(units)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=48), max_size=20))
def test_the_native_draw_agrees_on_any_text(units: list[str]) -> None:
    assert native_draw(units) == watched_members(units)


def test_a_unit_that_is_not_text_is_refused() -> None:
    with pytest.raises(TypeError):
        native_draw([b"user-1"])


def test_the_flush_draws_natively_where_the_extension_is_installed() -> None:
    assert native.watched is native.NATIVE_DRAW
    assert (WATCH_SEED, WATCH_DRAW) == (0x5EED_0A75, 3)


LANE_OF = lane_of_slots()
COUNTED = [slot for slot, lane in enumerate(LANE_OF) if lane < LANE_COUNT]
"""The slots that hold counts (a float sum's names the lane past the last)."""


def both_ways(
    low: list[int], high: list[int], counts: dict[int, int]
) -> tuple[tuple[bool | None, list[int], list[int]], tuple[bool | None, list[int], list[int]]]:
    """What the native adding and the Python one leave, each on its own arrays."""
    adder = native.native_lanes(LANE_OF)
    assert adder is not None
    out = []
    for add in (adder, added_lanes):
        words, highs = array("H", low), array("I", high)
        carried = add(words, highs, counts)
        out.append((carried, words.tolist(), highs.tolist()))
    return out[0], out[1]


@pytest.mark.parametrize(
    ("low", "high", "counts"),
    [
        pytest.param([], [], {}, id="nothing to add"),
        pytest.param([], [], {COUNTED[0]: 1}, id="the first lane from nothing"),
        pytest.param([], [], {COUNTED[-1]: 3}, id="the last lane grows the string whole"),
        pytest.param([5] * 10, [], {COUNTED[3]: 7, COUNTED[40]: 2}, id="within and past"),
        pytest.param([0xFFFF] * 4, [], {COUNTED[2]: 1}, id="a wrap grows the high words"),
        pytest.param([0xFFFE] * 4, [1, 2, 3], {COUNTED[1]: 0x2_0003}, id="a wrap of several"),
        pytest.param([0] * 4, [0] * 4, {COUNTED[3]: 0xFFFF_FFFF * 0x1_0000}, id="high at most"),
        pytest.param(
            [0xFFFF] * 4, [0xFFFF_FFFF] * 4, {COUNTED[0]: 5, COUNTED[2]: 1}, id="high overflows"
        ),
    ],
)
def test_the_native_adding_of_lanes_is_the_python_adding(
    low: list[int], high: list[int], counts: dict[int, int]
) -> None:
    made, reference = both_ways(low, high, counts)
    if reference[0] is None:
        assert made[0] is None  # either is let go half added to: its words are not read
    else:
        assert made == reference


def test_the_native_adding_agrees_on_many_generated_flushes() -> None:
    rng = random.Random(7)
    for _ in range(500):
        size = rng.choice((0, 1, 64, len(LANE_OF) // 2, LANE_COUNT))
        low = [rng.choice((0, 1, 0xFFF0, 0xFFFF)) for _ in range(size)]
        high = [rng.randrange(0, 50) for _ in range(rng.randrange(0, size + 1))]
        counts = {s: rng.choice((1, 3, 40, 70_000)) for s in rng.sample(COUNTED, 60)}
        made, reference = both_ways(low, high, counts)
        assert made == reference


def test_the_flush_adds_lanes_natively_where_the_extension_is_installed() -> None:
    assert copies._add_lanes is not added_lanes
