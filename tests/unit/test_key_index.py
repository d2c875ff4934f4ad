"""The in-memory key index (compiled buckets) against a plain reference: every key, kind mask,
shared key and absent key; and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from likewise.store import _keys
from likewise.store.key_index import ENTRY, NO_USER, KeyIndex

U64 = st.integers(0, 2**64 - 1)


def reference(
    rows: list[tuple[int, int, int, int]], queries: list[tuple[int, int, int]]
) -> list[int]:
    out = []
    for hi, lo, mask in queries:
        uids = [u for h, l_, k, u in rows if h == hi and l_ == lo and (mask >> k) & 1]
        out.append(min(uids) if uids else NO_USER)
    return out


def build(rows: list[tuple[int, int, int, int]]) -> KeyIndex:
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return KeyIndex.build(
        np.array(cols[0], np.uint64),
        np.array(cols[1], np.uint64),
        np.array(cols[2], np.uint8),
        np.array(cols[3], np.uint32),
        generation=3,
    )


def ask(index: KeyIndex, queries: list[tuple[int, int, int]]) -> list[int]:
    cols = list(zip(*queries, strict=True)) if queries else [(), (), ()]
    return index.lookup(
        np.array(cols[0], np.uint64), np.array(cols[1], np.uint64), np.array(cols[2], np.uint8)
    ).tolist()


def test_every_key_kind_and_user() -> None:
    rng = np.random.default_rng(5)
    n = 5000
    hi = rng.integers(0, 2**64, n, dtype=np.uint64)
    hi[:1000] = hi[:1000] & np.uint64(0xFF00_0000_0000_0000)  # crowded buckets
    hi[1000:1100] = np.uint64(2**64 - 1)  # the last bucket
    lo = rng.integers(0, 2**64, n, dtype=np.uint64)
    kind = rng.integers(1, 5, n).astype(np.uint8)
    uid = rng.permutation(n).astype(np.uint32)
    # The same key held by several users (a shared e-mail) and under two kinds.
    hi[2000:2010], lo[2000:2010] = hi[2000], lo[2000]
    rows = list(zip(hi.tolist(), lo.tolist(), kind.tolist(), uid.tolist(), strict=True))
    index = KeyIndex.build(hi, lo, kind, uid, generation=1)
    assert len(index) == n and index.generation == 1
    starts = index.starts
    assert starts[0] == 0 and starts[-1] == n and (np.diff(starts.astype(np.int64)) >= 0).all()
    queries = [(h, lo_, mask) for h, lo_, _, _ in rows for mask in (0xFF, 1 << 1, 0)]
    queries += [(h, lo_ ^ 1, 0xFF) for h, lo_, _, _ in rows[:300]]  # same bucket, other key
    queries += [(h ^ 1, lo_, 0xFF) for h, lo_, _, _ in rows[:300]]
    assert ask(index, queries) == reference(rows, queries)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(U64, U64, st.integers(0, 7), st.integers(0, 2**32 - 2)), max_size=60),
    extra=st.lists(st.tuples(U64, U64, st.integers(0, 255)), max_size=20),
    data=st.data(),
)
def test_agrees_with_the_reference(
    rows: list[tuple[int, int, int, int]], extra: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    masks = st.integers(0, 255)
    queries = [(h, lo, data.draw(masks)) for h, lo, _, _ in rows] + extra
    assert ask(build(rows), queries) == reference(rows, queries)


def test_empty() -> None:
    index = build([])
    assert len(index) == 0
    assert ask(index, [(1, 2, 0xFF), (0, 0, 0xFF)]) == [NO_USER, NO_USER]
    assert ask(index, []) == []


def test_refuses_what_does_not_fit() -> None:
    index = build([(1, 2, 1, 7), (2**63, 5, 2, 8)])
    hi, lo, kind, uid = (np.zeros(3, t) for t in (np.uint64, np.uint64, np.uint8, np.uint32))
    counts = np.zeros(2, np.uint32)
    with pytest.raises(ValueError, match="bits"):
        _keys.count(hi, 0, counts)
    with pytest.raises(ValueError, match="bits"):
        _keys.count(hi, 33, counts)
    with pytest.raises(ValueError, match="counts"):
        _keys.count(hi, 2, counts)
    with pytest.raises(ValueError, match="dtype mismatch"):
        _keys.count(hi.astype(np.int64), 1, counts)
    _keys.count(hi, 1, counts)
    assert counts.tolist() == [3, 0]
    starts = np.array([0, 3, 3], np.uint32)
    out = np.empty(3, ENTRY)
    with pytest.raises(ValueError, match="length"):
        _keys.scatter(hi, lo[:2], kind, uid, 1, starts, starts[:-1].copy(), out)
    with pytest.raises(ValueError, match="cursor"):
        _keys.scatter(hi, lo, kind, uid, 2, starts, starts[:-1].copy(), out)
    with pytest.raises(ValueError, match="beyond"):
        _keys.scatter(hi, lo, kind, uid, 1, starts, starts[:-1].copy(), out[:2])
    too_few = np.array([0, 2, 3], np.uint32)  # says two keys in bucket 0: there are three
    with pytest.raises(ValueError, match="more keys than counted"):
        _keys.scatter(hi, lo, kind, uid, 1, too_few, too_few[:-1].copy(), out)
    q = np.zeros(2, np.uint64)
    mask, found = np.zeros(2, np.uint8), np.empty(2, np.uint32)
    with pytest.raises(ValueError, match="length"):
        _keys.lookup(index.keys, index.starts, index.bits, q, q[:1], mask, found)
    with pytest.raises(ValueError, match="fit"):
        _keys.lookup(index.keys, index.starts, index.bits + 1, q, q, mask, found)
    with pytest.raises(ValueError, match="describe"):
        _keys.lookup(index.keys[:1], index.starts, index.bits, q, q, mask, found)
