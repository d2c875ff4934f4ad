"""The compiled single check (``likewise.targeting._rows``): odd arguments and bad buffers."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from pyroaring import BitMap

from likewise.targeting._rows import Contains, Rows
from likewise.targeting.user_index import UserIndex

MEMBERS = {10: BitMap([0, 2, 5]), 20: BitMap([2, 3]), 30: BitMap([1, 2, 5])}


@pytest.fixture
def index() -> UserIndex:
    return UserIndex.build(MEMBERS, width=2)  # user 2 is in three audiences: one overflows


def test_rows_answer_for_every_user_and_slot(index: UserIndex) -> None:
    assert len(index.overflow) == 1
    for uid in range(-3, 9):
        for slot, audience in enumerate(sorted(MEMBERS)):
            assert index.lookup.has(uid, slot) == (uid >= 0 and uid in MEMBERS[audience])


def test_odd_user_ids(index: UserIndex) -> None:
    rows = index.lookup
    assert rows.has(np.int64(5), 0) and rows.has(np.uint32(2), 2)  # NumPy integers
    assert rows.has(True, 2)  # an int subclass, as Python's own indexing takes it
    assert not rows.has(2**70, 0) and not rows.has(-(2**70), 0)  # beyond any index
    with pytest.raises(TypeError):
        rows.has(1.0, 0)
    with pytest.raises(TypeError):
        rows.has("1", 0)


def test_slots_outside_the_rows(index: UserIndex) -> None:
    rows = index.lookup
    assert not rows.has(2, -1)
    assert not rows.has(2, 3)  # no such audience: past a full row, not in the overflow either
    assert not rows.has(2, 2**40)


@pytest.mark.parametrize(
    ("array", "width", "error"),
    [
        (np.zeros(4, np.uint16), 0, ValueError),
        (np.zeros(4, np.float32), 2, TypeError),
        (np.zeros(4, np.int16), 2, TypeError),
        (np.zeros(4, np.uint64), 2, TypeError),
        (np.zeros((2, 2), np.uint16), 2, TypeError),
        (np.zeros(8, np.uint16)[::2], 2, ValueError),  # not contiguous
    ],
)
def test_bad_rows_are_refused(array: np.ndarray, width: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        Rows(array, width, None)


def test_rows_keep_their_buffer_alive() -> None:
    array = np.array([1, 3, 65535, 65535], np.uint16)
    alive = weakref.ref(array)
    rows = Rows(array, 2, None)
    del array
    gc.collect()
    assert alive() is not None  # the Rows object holds the buffer, so the array lives on
    assert rows.users == 2 and rows.has(0, 3) and rows.has(0, 1) and not rows.has(1, 3)
    del rows
    gc.collect()
    assert alive() is None  # and releases it with itself


def test_contains_uses_rows_bitmaps_and_exclusions(index: UserIndex) -> None:
    excluded = BitMap([5])
    servable = {40: BitMap([7, 5])}
    check = Contains({10: 0, 30: 2}, index.lookup, excluded, servable)
    assert check(10, 0) and check(30, 2) and not check(10, 1)
    assert not check(10, 5)  # a member, but opted out
    assert not check(20, 2)  # neither indexed nor servable
    assert check(40, 7) and not check(40, 5) and not check(40, 8)  # from the bitmap
    assert not check(10, 2**70) and not check(10, -1)
    excluded.add(0)  # exclusions are read live, not copied
    assert not check(10, 0)
    with pytest.raises(TypeError):
        Contains({}, "rows", excluded, servable)  # type: ignore[arg-type]
