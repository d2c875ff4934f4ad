"""The per-user serving index agrees with the bitmaps it was built from."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from likewise.targeting.user_index import IndexView, UserIndex

members_st = st.dictionaries(
    st.integers(1, 10**9),
    st.builds(BitMap, st.lists(st.integers(0, 300), max_size=80)),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(members_st, st.sampled_from([None, 1, 2, 3]))
def test_index_answers_as_the_bitmaps(members: dict[int, BitMap], width: int | None) -> None:
    # Narrow rows send users in more audiences to the overflow: both paths must agree.
    index = UserIndex.build(members, width)
    ids = sorted(members)
    assert index.audiences.tolist() == ids
    assert index.size == sum(len(b) for b in members.values())
    for uid in [-2, -1, *range(0, 305), 2**31]:
        expected = [s for s, a in enumerate(ids) if 0 <= uid < 2**32 and uid in members[a]]
        assert index.slots_of(uid).tolist() == expected
        for s in range(len(ids)):
            assert index.has(uid, s) == (s in expected)
        assert not index.has(uid, len(ids))  # no such slot


def test_more_audiences_than_sixteen_bits_hold() -> None:
    members = {a: BitMap([a % 7, 100 + a % 3]) for a in range(70_000)}
    index = UserIndex.build(members)
    assert index.rows.dtype == np.uint32
    assert index.slots_of(100 + 1).tolist() == [a for a in range(70_000) if a % 3 == 1]
    assert index.has(3, 69_999 - (69_999 % 7) + 3) and not index.has(3, 69_998)


def test_row_width_follows_the_users_not_the_outliers() -> None:
    # 2,000 users in 5 audiences each, two users in all 300: rows of 8, the two in the overflow.
    members = {
        a: BitMap([u for u in range(2000) if u % 60 == a % 60] + [5000, 5001]) for a in range(300)
    }
    index = UserIndex.build(members)
    assert index.width == 8 and index.overflow.users.tolist() == [5000, 5001]
    assert index.slots_of(5000).tolist() == list(range(300))
    assert index.slots_of(7).tolist() == [7, 67, 127, 187, 247]
    assert index.has(5001, 299) and index.has(5001, 3) and not index.has(4999, 3)
    assert index.rows.ctypes.data % 128 == 0  # rows start on a cache-line pair
    assert index.nbytes == index.rows.nbytes + 2 * 8 + 3 * 8 + 2 * 292 * 2


def test_many_users_in_few_audiences_get_narrow_rows() -> None:
    # 200,000 users, 1,000 audiences of 20: most users in none, a few in two or more. Rows of
    # 8 would take 3.2 MB; a compressed layout about 0.84 MB.
    rng = np.random.default_rng(3)
    members = {
        a: BitMap(rng.choice(200_000, 20, replace=False).astype(np.uint32)) for a in range(1000)
    }
    index = UserIndex.build(members)
    assert index.width in (1, 2)
    assert index.nbytes <= 2 * (index.size * 2 + index.users * 4)
    assert len(index.overflow) > 0
    for uid in [int(u) for u in index.overflow.users[:50]] + list(range(0, 200_000, 997)):
        expected = [s for s in range(1000) if uid in members[s]]
        assert index.slots_of(uid).tolist() == expected
        assert all(index.has(uid, s) for s in expected)
        assert not any(index.has(uid, s) for s in range(1000) if s not in expected)


def test_empty() -> None:
    index = UserIndex.build({})
    assert index.users == 0 and not index.has(0, 0) and index.slots_of(0).tolist() == []
    index = UserIndex.build({5: BitMap()})
    assert index.users == 0 and index.slots_of(0).tolist() == []


def test_view_knows_which_audiences_changed() -> None:
    members = {1: BitMap([1, 2]), 2: BitMap([2, 3]), 3: BitMap([4])}
    index = UserIndex.build(members)
    now = dict(members)
    now[2] = BitMap([2, 3, 9])  # a new version since the index was built
    del now[3]  # gone
    now[4] = BitMap([1])  # new
    view = IndexView.of(index, now, frozenset({1, 2, 4}), [now[2]], {2: 0})
    assert view.current == {1: 0}
    assert view.checks == {1: 0}
    assert view.servable_slot.tolist() == [True, False, False]
    assert view.stale_servable == (2, 4)
    assert view.stale_size == 4
    assert view.plan_column.tolist() == [-1, -1, -1]
    assert [(j, list(b)) for j, b in view.plan_stale] == [(0, [2, 3, 9])]
    # Audiences active ad groups use are checked in the index too, while current.
    view = IndexView.of(index, now, frozenset({1, 2, 4}), [now[2], now[1]], {2: 0, 1: 1})
    assert view.checks == {1: 0} and view.servable_slot.tolist() == [True, False, False]
    assert view.plan_column.tolist() == [1, -1, -1]
