"""The audiences of each user, as one fixed-width row per user over all audiences.

A roaring bitmap answers "is U in audience A" in about 0.1 µs when the bitmap is in the CPU
cache. An ad server asks about many audiences (10,000 and more), so the bitmap it needs is
rarely cached and a lookup costs a dozen cache misses (the bitmap object, the binary search
over its container keys, the container): about 1.6 µs. This index turns the question around:
row ``uid`` holds the sorted slots of the audiences the user is in, so a check is a short
binary search inside one row (two cache lines, fetched together; compiled, in ``_rows.pyx``),
and "which audiences is U in" is a slice instead of a lookup in every bitmap.

Rows have one width for all users (enough for all but about one user in a thousand, within
twice the bytes of a compressed layout), so finding a row is arithmetic, not a read: a
compressed sparse row layout needs an offsets read first, a second cache miss on every check.
A row holds its user's smallest slots; users in more audiences keep the rest in ``overflow``.

The index is immutable and built from one version of every audience's members; an audience
whose members changed since is *stale* and answered from its bitmap until the next build
(:class:`IndexView` says which audiences the index may answer for). Member bitmaps are values
throughout Likewise (a change publishes a new bitmap, never edits one handed out), so "the
same bitmap object as indexed" means "the same members".
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from pyroaring import BitMap

from likewise.targeting._rows import Rows

ROW_QUANTUM = 8  # wider rows are multiples of this many slots; narrower ones powers of two
ROW_SHARE = 0.999  # the share of users whose audiences fit in their row
# Rows take at most this many times the bytes of a compressed sparse row layout (offsets and
# slots): a few users in thousands of audiences go to the overflow instead of widening every
# row, and a platform of many users in few audiences gets narrow rows.
MAX_ROW_FACTOR = 2
ROW_ALIGN = 128  # two cache lines: the pair the L2 prefetcher fetches together


@dataclass(frozen=True, eq=False)
class UserIndex:
    audiences: np.ndarray  # slot -> audience id (int64), ascending
    members: Mapping[int, BitMap]  # the member bitmaps indexed (identity tells staleness)
    rows: np.ndarray  # (users * width,) uint16/uint32: per user its smallest slots, then PAD
    width: int
    overflow: Overflow  # the slots beyond the row of users in more than ``width`` audiences
    size: int  # memberships indexed
    built_at: float = field(default_factory=time.monotonic)
    # Scalar reads from memoryviews give Python ints at a fraction of numpy's cost.
    row_at: memoryview = field(init=False, repr=False)
    pad: int = field(init=False, repr=False)  # fills rows; above every slot
    users: int = field(init=False)
    lookup: Rows = field(init=False, repr=False)  # compiled single checks

    def __post_init__(self) -> None:
        object.__setattr__(self, "row_at", memoryview(self.rows))
        object.__setattr__(self, "pad", int(np.iinfo(self.rows.dtype).max))
        object.__setattr__(self, "users", len(self.rows) // self.width)
        object.__setattr__(self, "lookup", Rows(self.rows, self.width, self.overflow))

    @property
    def nbytes(self) -> int:
        return int(self.rows.nbytes + self.overflow.nbytes)

    @staticmethod
    def build(members: Mapping[int, BitMap], width: int | None = None) -> UserIndex:
        """Two passes over the bitmaps: count each user's audiences (which sets the width,
        unless given), then place the slots. Audiences are placed in slot order, so each row
        comes out sorted and holds its user's smallest slots."""
        members = dict(members)  # a stable copy: the caller's mapping may be replaced
        ids = sorted(members)
        users = max((members[a].max() + 1 for a in ids if members[a]), default=0)
        counts = np.zeros(users, np.int32)
        for a in ids:
            counts[_array(members[a])] += 1  # a bitmap's values are distinct
        total = int(counts.sum())
        dtype = np.uint16 if len(ids) < np.iinfo(np.uint16).max else np.uint32
        width = width or _width(counts, total, np.dtype(dtype).itemsize)
        rows = _aligned(users * width, dtype)
        rows.fill(np.iinfo(dtype).max)
        spills = bool((counts > width).any())
        del counts
        cursor = np.zeros(users, np.int32)
        extra_users: list[np.ndarray] = []
        extra_slots: list[np.ndarray] = []
        for slot, a in enumerate(ids):
            uids = _array(members[a]).astype(np.int64)
            at = cursor[uids]
            cursor[uids] = at + 1
            if spills:
                fits = at < width
                if not fits.all():
                    extra_users.append(uids[~fits])
                    extra_slots.append(np.full(len(extra_users[-1]), slot, dtype))
                    uids, at = uids[fits], at[fits]
            rows[uids * width + at] = slot
        del cursor
        return UserIndex(
            np.array(ids, np.int64),
            members,
            rows,
            width,
            Overflow.of(extra_users, extra_slots, dtype),
            total,
        )

    def slots_of(self, uid: int) -> np.ndarray:
        """The slots of the audiences the user is in (empty for users beyond the index)."""
        if not 0 <= uid < self.users:
            return self.rows[:0]
        start = uid * self.width
        end = bisect_left(self.row_at, self.pad, start, start + self.width)
        more = self.overflow.slots_of(uid) if end == start + self.width else None
        if more is None:
            return self.rows[start:end]
        return np.concatenate([self.rows[start:end], more])

    def has(self, uid: int, slot: int) -> bool:
        return self.lookup.has(uid, slot)


@dataclass(frozen=True, eq=False)
class Overflow:
    """The slots beyond their row of users in more audiences than a row holds, as a compressed
    sparse row over those users only (a dict would cost ~250 bytes a user)."""

    users: np.ndarray  # int64, ascending
    offsets: np.ndarray  # (len(users) + 1,) int64: the user's slots are slots[o[j]:o[j + 1]]
    slots: np.ndarray  # uint16/uint32, sorted per user
    user_at: memoryview = field(init=False, repr=False)
    offset_at: memoryview = field(init=False, repr=False)
    slot_at: memoryview = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_at", memoryview(self.users))
        object.__setattr__(self, "offset_at", memoryview(self.offsets))
        object.__setattr__(self, "slot_at", memoryview(self.slots))

    @staticmethod
    def of(
        extra_users: list[np.ndarray], extra_slots: list[np.ndarray], dtype: type[np.generic]
    ) -> Overflow:
        """From (user, slot) pairs found in slot order: a stable sort by user keeps each
        user's slots sorted."""
        if not extra_users:
            return Overflow(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, dtype))
        uids = np.concatenate(extra_users)
        slots = np.concatenate(extra_slots).astype(dtype)
        order = np.argsort(uids, kind="stable")
        uids, slots = uids[order], slots[order]
        starts = np.flatnonzero(np.r_[True, uids[1:] != uids[:-1]])
        return Overflow(uids[starts], np.r_[starts, len(uids)].astype(np.int64), slots)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def nbytes(self) -> int:
        return int(self.users.nbytes + self.offsets.nbytes + self.slots.nbytes)

    def _span(self, uid: int) -> tuple[int, int] | None:
        j = bisect_left(self.user_at, uid)
        if j == len(self.users) or self.user_at[j] != uid:
            return None
        return self.offset_at[j], self.offset_at[j + 1]

    def slots_of(self, uid: int) -> np.ndarray | None:
        span = self._span(uid)
        return None if span is None else self.slots[span[0] : span[1]]

    def has(self, uid: int, slot: int) -> bool:
        span = self._span(uid)
        if span is None:
            return False
        lo, hi = span
        i = bisect_left(self.slot_at, slot, lo, hi)
        return i < hi and self.slot_at[i] == slot


def _width(counts: np.ndarray, total: int, itemsize: int) -> int:
    """Slots per row: enough for all but about one user in a thousand, within
    ``MAX_ROW_FACTOR`` times the bytes of a compressed layout; a power of two up to
    ``ROW_QUANTUM``, a multiple of it above."""
    users = len(counts)
    if not users or not total:
        return 1
    wanted = int(np.quantile(counts, ROW_SHARE, method="higher"))
    budget = MAX_ROW_FACTOR * (total * itemsize + users * 4)
    most = max(1, int(budget // (users * itemsize)))
    width = max(1, min(wanted, most))
    if width > ROW_QUANTUM:  # round up to the quantum if the budget allows, else down
        up = -(-width // ROW_QUANTUM) * ROW_QUANTUM
        return up if up <= most else width // ROW_QUANTUM * ROW_QUANTUM
    up = 1 << (width - 1).bit_length()
    return up if up <= most else up >> 1


def _aligned(n: int, dtype: type[np.generic]) -> np.ndarray:
    """An empty array starting on a cache-line pair, so that a row spans as few as it can."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n * itemsize + ROW_ALIGN, np.uint8)
    skip = -raw.ctypes.data % ROW_ALIGN
    return raw[skip : skip + n * itemsize].view(dtype)


@dataclass(frozen=True, eq=False)
class IndexView:
    """What a snapshot may ask the index: the audiences whose indexed members are still the
    snapshot's, and what to do about the rest."""

    index: UserIndex | None
    current: dict[int, int]  # audience id -> slot: indexed members are the snapshot's
    # Audience id -> slot for single checks: current and usable. (With the check compiled, the
    # row answers faster than a bitmap even for the few audiences active ad groups use, whose
    # bitmaps stay in the CPU cache: 1.8M/s against 1.4M/s.)
    checks: dict[int, int]
    servable_slot: np.ndarray  # (slots,) bool: current and usable
    stale_servable: tuple[int, ...]  # usable audiences the index cannot answer for
    stale_size: int  # memberships of every audience it cannot answer for (usable or not)
    # Ad-group planning: per slot, the plan column of its audience (-1: none), and the plan
    # columns the index cannot answer for, with their bitmaps.
    plan_column: np.ndarray
    plan_stale: tuple[tuple[int, BitMap], ...]

    @staticmethod
    def none() -> IndexView:
        """No index: every answer comes from the bitmaps."""
        return IndexView(None, {}, {}, np.zeros(0, bool), (), 0, np.zeros(0, np.int32), ())

    @staticmethod
    def of(
        index: UserIndex | None,
        members: Mapping[int, BitMap],
        usable: frozenset[int],
        plan_audiences: list[BitMap],
        plan_columns: Mapping[int, int],
    ) -> IndexView:
        if index is None:
            return IndexView.none()
        indexed = index.members
        current = {
            a: s for s, a in enumerate(index.audiences.tolist()) if members.get(a) is indexed[a]
        }
        mask = np.zeros(len(index.audiences), bool)
        mask[[s for a, s in current.items() if a in usable]] = True
        checks = {a: s for a, s in current.items() if a in usable}
        stale = tuple(sorted(a for a in members if a in usable and a not in current))
        column = np.full(len(index.audiences), -1, np.int32)
        plan_stale = []
        for a, j in plan_columns.items():
            if a in current:
                column[current[a]] = j
            else:
                plan_stale.append((j, plan_audiences[j]))
        return IndexView(
            index,
            current,
            checks,
            mask,
            stale,
            sum(len(b) for a, b in members.items() if a not in current),
            column,
            tuple(plan_stale),
        )


def _array(members: BitMap) -> np.ndarray:
    return np.frombuffer(members.to_array(), np.uint32)
