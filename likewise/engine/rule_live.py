"""The incremental evaluator of a rule audience: each arriving event is applied as it comes, so a
qualifying event makes its user a member within seconds, an exclusion event removes them, and a
sweep at :meth:`LiveAudience.next_change` removes members whose last qualifying event has left
the window, on time, without a recompute over the event log.

It reads the same :class:`~likewise.domain.rules.Plan` as the batch evaluator
(:mod:`likewise.engine.rule_sql`) and must give the same members for the same usable events and
``as_of`` (``tests/engine/test_rule_agreement.py``). The meaning, decided once for both:

- an event qualifies for a rule when it is the advertiser's (or, for ``sources.organic``, stored
  under advertiser 0 and naming one of ``sources.ids``), names one of ``sources.ids`` in
  ``sources.match_field`` when both are given, has its ``channel`` in ``event.channels`` and its
  ``event`` in ``event.names``, passes the play-depth thresholds (missing fails) and every
  parameter filter, and ``as_of - lookback_days * 86400 < event_time <= as_of``;
- parameter filters: values are OR-ed; a negative operator is the negation of its positive
  (``NOT_EQUAL`` is "equals none", ``DOES_NOT_CONTAIN`` is "contains none"); a missing field
  (null, or an empty list) fails a positive operator and passes a negative one; a list field
  matches when any element does; text comparisons (``EQ``, ``NOT_EQUAL``, ``CONTAINS``,
  ``DOES_NOT_CONTAIN``, on every text field) ignore case, both sides lower-cased alike, and
  ``CONTAINS`` is a plain substring test (``%`` and ``_`` are literal), as the batch evaluator
  decided; numeric comparisons read ``ParamFilter.numbers``, and a text field compared as a
  number counts only where its text is a decimal number (surrounding spaces allowed), else it
  is missing;
- a user matches a rule with at least ``min_count`` qualifying events in the window and, with
  ``min_value``, their summed ``value`` (a missing value counts as 0) at least that; with
  ``top_share``, of the n users matching so, the :func:`~likewise.engine.rule_sql.top_count`
  (``ceil(top_share * n)`` without floating-point noise) with the highest sums (ties: lower uid
  first);
- day-2 retention (``event.retained_on_day``): the qualifying events are the launches (the rule's
  names) on the UTC day ``retained_on_day`` days after a qualifying install
  (:data:`~likewise.engine.rule_sql.INSTALL_EVENTS`, same sources, channels and parameter
  filters), both in the window (UTC day: ``floor(event_time / 86400)``); they are what
  ``min_count`` and ``min_value`` count;
- members: users matching any inclusion rule (every one with ``Combine.ALL``) and no exclusion
  rule.

State, per rule: the qualifying events that may still count, as three parallel arrays (uid as
uint32, event time as float64, value as float64 only when the rule sums values), sorted by
(uid, time): 12 or 20 bytes an event and no Python object per user. Events of a batch are
appended unsorted and merged in at the next query. Each query at ``as_of`` makes ``as_of`` the
pruning reference P: events at or before ``P - lookback`` can never count again and are
dropped, and where no value is summed only each user's ``min_count`` latest events at or before P
are kept (for any later ``as_of`` an older one is in the window only if all of those are); the
pass that drops them runs at most every :data:`PRUNE_EVERY_SECONDS`. A query recomputes only
the users with new events or with an event that crossed a window edge since the last query
(top shares and retention sequences, which depend on everyone, are recomputed whole). So
:meth:`LiveAudience.members` is exact for any ``as_of`` at or after the newest one it was asked
about, and refuses an earlier one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import BitMap

from likewise.domain.rules import (
    NEGATIVE_OPERATORS,
    Combine,
    Operator,
    ParamFilter,
    Plan,
    Rule,
)
from likewise.engine.rule_sql import INSTALL_EVENTS, top_count

DAY = 86_400.0
# Text that counts as a number in a numeric comparison (what a careful TRY_CAST accepts).
_DECIMAL = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_LIST_FIELDS = frozenset({"prices", "content_ids", "content_categories"})
_COMPARE = {
    Operator.GT: pc.greater,
    Operator.GTE: pc.greater_equal,
    Operator.LT: pc.less,
    Operator.LTE: pc.less_equal,
    Operator.EQ: pc.equal,
    Operator.NOT_EQUAL: pc.equal,  # negated afterwards, as a whole
}

UIntArray = npt.NDArray[np.uint32]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


# --- the qualifying predicate, vectorised over a batch --------------------------------------------


class _Batch:
    """One Arrow table of events, with each column read once (as one contiguous array, nulls
    for a column the table lacks: a batch of web events need not carry ``live_id``)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.n = table.num_rows
        self._columns: dict[str, pa.Array] = {}
        self._ints: dict[str, npt.NDArray[np.int64]] = {}
        self._in: dict[tuple[str, frozenset[int | str]], BoolArray] = {}

    def is_in(self, name: str, values: Iterable[int | str]) -> BoolArray:
        """Whether each event's ``name`` is one of ``values`` (kept: audiences share rules'
        sources, channels and event names, and a batch is read once for all of them)."""
        key = (name, frozenset(values))
        found = self._in.get(key)
        if found is None:
            found = self._in[key] = _in(self.column(name), key[1])
        return found

    def column(self, name: str) -> pa.Array:
        found = self._columns.get(name)
        if found is None:
            if name in self.table.column_names:
                found = self.table.column(name).combine_chunks()
                if pa.types.is_dictionary(found.type):
                    found = found.dictionary_decode()
            else:
                found = pa.nulls(self.n)
            self._columns[name] = found
        return found

    def ints(self, name: str) -> npt.NDArray[np.int64]:
        """An integer column as int64 (ids: float64 would merge ids past 2**53), missing
        values as -1 (no id is negative)."""
        found = self._ints.get(name)
        if found is None:
            column = self.column(name)
            if pa.types.is_null(column.type):
                found = np.full(self.n, -1, dtype=np.int64)
            else:
                filled = pc.fill_null(pc.cast(column, pa.int64()), -1)
                found = np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.int64)
            self._ints[name] = found
        return found

    def floats(self, name: str) -> FloatArray:
        """A numeric column as float64, missing values as NaN."""
        column = self.column(name)
        if pa.types.is_null(column.type):
            return np.full(self.n, np.nan)
        return _to_numpy(pc.cast(column, pa.float64()))


def _to_numpy(array: pa.Array) -> FloatArray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)


def _mask(array: pa.Array | pa.ChunkedArray) -> BoolArray:
    """A boolean Arrow result as numpy, null as false (a missing field never satisfies a test
    by itself; negative operators get their "passes" by negating a false)."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _in(column: pa.Array, values: Iterable[int | str]) -> BoolArray:
    wanted = list(values)
    if pa.types.is_null(column.type):
        return np.zeros(len(column), dtype=np.bool_)
    if pa.types.is_integer(column.type):
        # Source ids are ints; a text id that is not a number can name no such event.
        ints = [int(v) for v in wanted if isinstance(v, int) or str(v).lstrip("-").isdigit()]
        value_set = pa.array(ints, pa.int64()).cast(column.type, safe=False)
    else:
        value_set = pa.array([str(v) for v in wanted], pa.string()).cast(column.type)
    return _mask(pc.is_in(column, value_set=value_set))


def _as_numbers(values: pa.Array) -> pa.Array:
    """Values compared as numbers: numeric types as they are, text only where it is a decimal
    number (anything else is missing, so it fails every ordering operator)."""
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return pc.cast(values, pa.float64())
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), pa.float64())
    text = pc.cast(values, pa.string())
    numeric = pc.fill_null(pc.match_substring_regex(text, _DECIMAL), False)
    kept = pc.if_else(numeric, pc.utf8_trim_whitespace(text), pa.scalar(None, pa.string()))
    return pc.cast(kept, pa.float64())


def _positive(values: pa.Array, f: ParamFilter) -> BoolArray:
    """Whether each value satisfies the filter's positive form (any of its values)."""
    hit = np.zeros(len(values), dtype=np.bool_)
    if len(values) == 0 or pa.types.is_null(values.type):
        return hit
    if f.numeric:
        numbers = _as_numbers(values)
        compare = _COMPARE[f.operator]
        for number in f.numbers:
            hit |= _mask(compare(numbers, pa.scalar(number, pa.float64())))
        return hit
    # Both sides through one lower-casing (not RE2's case folding, which differs from SQL's
    # LOWER on a few letters), so "ignores case" means the same here and in the batch SQL.
    text = pc.utf8_lower(pc.cast(values, pa.string()))
    wanted = pc.utf8_lower(pa.array(list(f.values), pa.string()))
    if f.operator in (Operator.CONTAINS, Operator.DOES_NOT_CONTAIN):
        for value in wanted.to_pylist():
            hit |= _mask(pc.match_substring(text, value))
        return hit
    # EQ / NOT_EQUAL on text. (Ordering operators always carry numbers.)
    return _mask(pc.is_in(text, value_set=wanted))


def _filter_mask(batch: _Batch, f: ParamFilter) -> BoolArray:
    column = batch.column(f.record_field)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        # Any element decides; an empty or null list has no element, so it is "missing".
        elements = pc.list_flatten(column)
        parents = np.asarray(pc.list_parent_indices(column).to_numpy(zero_copy_only=False))
        hit = np.zeros(batch.n, dtype=np.bool_)
        hit[parents[_positive(elements, f)]] = True
    elif f.record_field in _LIST_FIELDS and pa.types.is_null(column.type):
        hit = np.zeros(batch.n, dtype=np.bool_)
    else:
        hit = _positive(column, f)
    return ~hit if f.operator in NEGATIVE_OPERATORS else hit


def _qualifying(batch: _Batch, rule: Rule, advertiser_id: int, names: frozenset[str]) -> BoolArray:
    """Which events of the batch qualify for the rule, the window aside, for event ``names``."""
    sources = rule.sources
    advertiser = batch.ints("advertiser_id")
    keep = advertiser == advertiser_id
    if sources.match_field is not None and not sources.ids:
        # No ids: every source of the kind, so the event must name one (an ad group, a form).
        keep &= _mask(pc.is_valid(batch.column(sources.match_field)))
    if sources.match_field is not None and sources.ids:
        named = batch.is_in(sources.match_field, sources.ids)
        keep &= named
        if sources.organic:
            organic = (advertiser == 0) & named
            if sources.creators and organic.any():
                organic &= batch.is_in("creator_id", sources.creators)
            keep |= organic
    if not keep.any():
        return keep
    keep &= batch.is_in("channel", rule.event.channels)
    keep &= batch.is_in("event", names)
    # NaN compares false: a play without the measure fails a play-depth threshold.
    if rule.event.min_watched_seconds is not None:
        keep &= batch.floats("watched_seconds") >= rule.event.min_watched_seconds
    if rule.event.min_watched_percent is not None:
        keep &= batch.floats("watched_percent") >= rule.event.min_watched_percent
    for f in rule.filters:
        if not keep.any():
            break
        keep &= _filter_mask(batch, f)
    return keep


# --- per-rule state -------------------------------------------------------------------------------

PRUNE_EVERY_SECONDS = 5.0  # pruning is a pass over all rows: not on every query


@dataclass
class _Rows:
    """Qualifying events of one rule (or one half of a retention sequence) that may still
    count: parallel arrays sorted by (uid, time). New batches wait in ``pending`` until the next
    query, which merges them in one linear pass (both sides are sorted: a stable sort of the
    two runs is a merge)."""

    with_value: bool
    uid: UIntArray = field(default_factory=lambda: np.empty(0, np.uint32))
    time: FloatArray = field(default_factory=lambda: np.empty(0, np.float64))
    value: FloatArray = field(default_factory=lambda: np.empty(0, np.float64))
    pending: list[tuple[UIntArray, FloatArray, FloatArray]] = field(default_factory=list)
    # Users with rows merged in since take_touched() was last called.
    touched: list[UIntArray] = field(default_factory=list)

    def add(self, uid: UIntArray, time: FloatArray, value: FloatArray) -> None:
        if len(uid):
            self.pending.append((uid, time, value if self.with_value else value[:0]))

    def take_touched(self) -> UIntArray:
        """Users with new rows since the last call (sorted, unique)."""
        self.settle()
        touched = np.unique(np.concatenate(self.touched)) if self.touched else self.uid[:0]
        self.touched.clear()
        return touched

    def settle(self) -> None:
        """Merge the pending rows in."""
        if not self.pending:
            return
        p_uid = np.concatenate([p[0] for p in self.pending])
        p_time = np.concatenate([p[1] for p in self.pending])
        p_value = np.concatenate([p[2] for p in self.pending])
        self.pending.clear()
        order = np.lexsort((p_time, p_uid))
        p_uid, p_time = p_uid[order], p_time[order]
        if self.with_value:
            p_value = p_value[order]
        uid = np.concatenate([self.uid, p_uid])
        time = np.concatenate([self.time, p_time])
        value = np.concatenate([self.value, p_value])
        order = np.argsort(uid, kind="stable")
        uid, time = uid[order], time[order]
        if self.with_value:
            value = value[order]
        # A user's old rows come before their new ones: out of time order only where a new
        # event is older than a stored one (a late event). Those users' rows are sorted again.
        late = (uid[1:] == uid[:-1]) & (time[1:] < time[:-1])
        if late.any():
            rows = np.flatnonzero(np.isin(uid, uid[1:][late]))
            again = rows[np.lexsort((time[rows], uid[rows]))]
            time[rows] = time[again]
            if self.with_value:
                value[rows] = value[again]
        self.uid, self.time, self.value = uid, time, value
        self.touched.append(p_uid)

    def keep(self, mask: BoolArray) -> None:
        if mask.all():
            return
        self.uid, self.time = self.uid[mask], self.time[mask]
        if self.with_value:
            self.value = self.value[mask]

    def prune(self, reference: float, lookback: float, latest: int | None) -> None:
        """Drop what no query at or after ``reference`` can count: events that left the window
        and, with ``latest``, all but each user's ``latest`` newest events at or before it."""
        keep = self.time > reference - lookback
        if latest is not None:
            old = np.flatnonzero(keep & (self.time <= reference))
            if len(old):
                users = self.uid[old]
                last = np.r_[users[1:] != users[:-1], True]  # sorted: a user's old rows are a run
                group_end = np.flatnonzero(last)[np.cumsum(np.r_[False, last[:-1]])]
                keep[old[group_end - np.arange(len(old)) >= latest]] = False
        self.keep(keep)

    def forget(self, uids: UIntArray) -> None:
        self.settle()
        self.keep(~np.isin(self.uid, uids))

    def window(self, as_of: float, lookback: float) -> BoolArray:
        return (self.time > as_of - lookback) & (self.time <= as_of)

    def crossing(self, before: float, as_of: float, lookback: float) -> UIntArray:
        """Users with an event that left the window or entered it (stamped in the future)
        between ``before`` and ``as_of``: the only ones whose standing can change without a
        new event."""
        t = self.time
        moved = ((t > before - lookback) & (t <= as_of - lookback)) | ((t > before) & (t <= as_of))
        return np.unique(self.uid[moved])

    def rows_of(self, users: UIntArray) -> npt.NDArray[np.intp]:
        """Indices of these (sorted) users' rows, in row order."""
        lo = np.searchsorted(self.uid, users, "left")
        hi = np.searchsorted(self.uid, users, "right")
        lengths = hi - lo
        total = int(lengths.sum())
        if not total:
            return np.empty(0, np.intp)
        starts = np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
        return starts + np.arange(total)

    def next_point(self, reference: float, lookback: float) -> float | None:
        """The first time after ``reference`` when an event leaves the window or enters it."""
        t = self.time
        points = []
        counting = t[t > reference - lookback]
        if len(counting):
            points.append(float(counting.min()) + lookback)
        future = t[t > reference]
        if len(future):
            points.append(float(future.min()))
        return min(points) if points else None


class _RuleState:
    def __init__(self, rule: Rule, advertiser_id: int) -> None:
        self.rule = rule
        self.advertiser_id = advertiser_id
        self.lookback = rule.lookback_days * DAY
        self.with_value = rule.min_value is not None or rule.top_share is not None
        self.sequence = rule.event.retained_on_day
        # Members follow from each user's own events, except for a share of everyone (top
        # share) or a sequence of two event kinds: those are computed whole at each query.
        self.incremental = rule.top_share is None and self.sequence is None
        # The newest as_of asked about (LiveAudience's): events at or before reference - lookback
        # can never count again.
        self.reference = -math.inf
        self.pruned_at = -math.inf
        self.events = _Rows(self.with_value)
        # Retention: the installs a launch must follow; their values are never summed.
        self.installs = _Rows(False) if self.sequence is not None else None
        self.matched = BitMap()

    def apply(self, batch: _Batch, uid: UIntArray, time: FloatArray, value: FloatArray) -> None:
        live = self._fresh(time)
        parts = [(self.events, self.rule.event.names)]
        if self.installs is not None:
            parts.append((self.installs, INSTALL_EVENTS))
        for rows, names in parts:
            keep = live & _qualifying(batch, self.rule, self.advertiser_id, names)
            rows.add(uid[keep], time[keep], value[keep])

    def _fresh(self, time: FloatArray) -> BoolArray:
        # Events already out of every window still to be asked about are not even stored.
        return time > self.reference - self.lookback

    def forget(self, uids: UIntArray) -> None:
        self.events.forget(uids)
        if self.installs is not None:
            self.installs.forget(uids)
        self.matched = self.matched - BitMap(uids)

    def query(self, as_of: float) -> BitMap:
        """The users matching the rule at ``as_of`` (at or after the reference), which becomes
        the reference."""
        before, self.reference = self.reference, as_of
        touched = self.events.take_touched()
        if self.installs is not None:
            self.installs.take_touched()
        if self.incremental:
            # Only users with new events or an event crossing a window edge can change.
            users = np.union1d(touched, self.events.crossing(before, as_of, self.lookback))
        self._prune(as_of)
        if not self.incremental:
            self.matched = BitMap(self._all_matching(as_of))
        elif len(users):
            self.matched = (self.matched - BitMap(users)) | BitMap(self._matching(users, as_of))
        return self.matched

    def _prune(self, reference: float) -> None:
        if reference - self.pruned_at < PRUNE_EVERY_SECONDS:
            return
        self.pruned_at = reference
        # Only the count matters without values (and outside sequences): keep min_count.
        latest = None if self.with_value or self.sequence is not None else self.rule.min_count
        self.events.prune(reference, self.lookback, latest)
        if self.installs is not None:
            self.installs.prune(reference, self.lookback, None)

    def _matching(self, users: UIntArray, as_of: float) -> UIntArray:
        """Which of ``users`` (sorted) match at ``as_of``."""
        rows = self.events
        at = rows.rows_of(users)
        at = at[rows.window(as_of, self.lookback)[at]]
        return self._qualified(rows.uid[at], rows.value[at] if self.with_value else None)

    def _qualified(self, uid: UIntArray, value: FloatArray | None) -> UIntArray:
        """Users (of ``uid``, sorted) with enough counted events and value."""
        if not len(uid):
            return uid
        starts = np.flatnonzero(np.r_[True, uid[1:] != uid[:-1]])
        users = uid[starts]
        ok = np.diff(np.r_[starts, len(uid)]) >= self.rule.min_count
        if value is None:
            return users[ok]
        sums = np.add.reduceat(value, starts)
        if self.rule.min_value is not None:
            ok &= sums >= self.rule.min_value
        users, sums = users[ok], sums[ok]
        share = self.rule.top_share
        if share is None or not len(users):
            return users
        # Highest sum first, then lower uid (users are ascending; lexsort is stable).
        top = np.lexsort((users, -sums))[: top_count(share, len(users))]
        return np.sort(users[top])

    def _all_matching(self, as_of: float) -> UIntArray:
        """Every user matching at ``as_of`` (top shares, retention sequences)."""
        rows = self.events
        counted = rows.window(as_of, self.lookback)
        if self.installs is not None and self.sequence is not None:
            counted &= self._retained(as_of)
        return self._qualified(rows.uid[counted], rows.value[counted] if self.with_value else None)

    def _retained(self, as_of: float) -> BoolArray:
        """Which stored launches follow a qualifying install in the window by exactly
        ``retained_on_day`` UTC days."""
        assert self.installs is not None and self.sequence is not None
        installs = self.installs
        shown = installs.window(as_of, self.lookback)
        installed = _day_keys(installs.uid[shown], installs.time[shown])
        launches = self.events
        return np.isin(_day_keys(launches.uid, launches.time) - self.sequence, installed)

    def next_change(self) -> float | None:
        """The first time after the reference when this rule's result can change without new
        events: a stored event leaves its window, or an event stamped in the future enters it."""
        points = []
        for rows in (self.events, self.installs):
            if rows is not None:
                rows.settle()
                point = rows.next_point(self.reference, self.lookback)
                if point is not None:
                    points.append(point)
        return min(points) if points else None


def _day_keys(uid: UIntArray, time: FloatArray) -> npt.NDArray[np.int64]:
    # (uid, UTC day) as one int64: 2**24 days is far beyond any event time.
    return uid.astype(np.int64) * (1 << 24) + np.floor(time / DAY).astype(np.int64)


class PreparedEvents:
    """A batch of usable events with the columns every audience reads converted once, and the
    rule tests they share remembered (:meth:`_Batch.is_in`)."""

    def __init__(self, events: pa.Table) -> None:
        batch = _Batch(events)
        uid_column = batch.column("uid")
        known = _mask(pc.is_valid(uid_column)) & ~np.isnan(batch.floats("event_time"))
        if not known.all():  # unresolved or timeless rows cannot belong to anyone's window
            batch = _Batch(events.filter(pa.array(known)))
            uid_column = batch.column("uid")
        self.batch = batch
        self.uid = np.asarray(pc.cast(uid_column, pa.uint32()).to_numpy(), dtype=np.uint32)
        self.time = batch.floats("event_time")
        self.value = np.nan_to_num(batch.floats("value"), nan=0.0)  # missing counts as 0


# --- the audience ---------------------------------------------------------------------------------


class LiveAudience:
    """Membership of one rule audience, kept up to date event by event.

    :meth:`apply` takes usable events (``usable_events_sql``'s rows: the stored event columns
    and ``uid``), in any order and with any ``event_time``: a late event, or one whose user was
    resolved only now, counts exactly as if it had arrived in time (unless it is already out of
    every window still to be asked about). Apply each stored event once: the store has
    deduplicated them, so this does not again. :meth:`members` answers for any ``as_of`` at or
    after the newest it was already asked about; :meth:`next_change` says when to sweep next.
    """

    def __init__(self, plan: Plan, *, advertiser_id: int) -> None:
        self.plan = plan
        self.advertiser_id = advertiser_id
        self._inclusion = [_RuleState(r, advertiser_id) for r in plan.inclusion]
        self._exclusion = [_RuleState(r, advertiser_id) for r in plan.exclusion]
        self._reference = -math.inf  # the newest as_of asked about: state is pruned to it

    @property
    def advertiser_ids(self) -> frozenset[int]:
        """Whose events can count: the advertiser's, and organic activity (``0``) when a rule
        reads it (what :class:`likewise.ingest.live.LiveFeed` routes here)."""
        rules = (*self.plan.inclusion, *self.plan.exclusion)
        organic = any(r.sources.organic and r.sources.ids for r in rules)
        return frozenset({self.advertiser_id, 0} if organic else {self.advertiser_id})

    @property
    def horizon_days(self) -> int:
        return self.plan.horizon_days

    @property
    def _states(self) -> list[_RuleState]:
        return [*self._inclusion, *self._exclusion]

    @property
    def as_of(self) -> float:
        """The newest ``as_of`` asked about; :meth:`members` refuses earlier ones."""
        return self._reference

    @staticmethod
    def prepare(events: pa.Table) -> PreparedEvents:
        """``events`` read once, to apply to many audiences (see :meth:`apply`)."""
        return PreparedEvents(events)

    def apply(self, events: pa.Table | PreparedEvents) -> None:
        """Count a batch of usable events (a ``uid`` column plus the stored event columns),
        as a table or :meth:`prepared <prepare>`."""
        prepared = events if isinstance(events, PreparedEvents) else PreparedEvents(events)
        if prepared.batch.n == 0:
            return
        for state in self._states:
            state.apply(prepared.batch, prepared.uid, prepared.time, prepared.value)

    def forget(self, uids: BitMap) -> None:
        """Stop counting these users' events (opted out, erased): their events are no longer
        usable, so the batch evaluator would not see them either."""
        gone = np.fromiter(uids, dtype=np.uint32, count=len(uids))
        for state in self._states:
            state.forget(gone)

    def members(self, as_of: float) -> BitMap:
        """The members at ``as_of`` (Unix seconds). Makes ``as_of`` the pruning reference."""
        if as_of < self._reference:
            raise ValueError(
                f"as_of {as_of} is before {self._reference}, the newest time already asked "
                "about: the events that could count then have been pruned"
            )
        self._reference = as_of
        included = [state.query(as_of) for state in self._inclusion]
        excluded = [state.query(as_of) for state in self._exclusion]
        # New bitmaps, never a rule's own: callers keep what they are given.
        if self.plan.combine is Combine.ALL:
            kept = BitMap.intersection(*included) if len(included) > 1 else BitMap(included[0])
        else:
            kept = BitMap.union(*included) if len(included) > 1 else BitMap(included[0])
        for users in excluded:
            kept -= users
        return kept

    def next_change(self) -> float | None:
        """The earliest time after the newest ``as_of`` asked about at which the members may
        change without a new event (an event leaving a rule's window — a member's qualification
        expiring, or an exclusion lapsing — or a future-stamped event entering it), or None when
        nothing is pending. A sweep then may find no change (the user had other events); it never
        misses one. Events applied since the last :meth:`members` call count too."""
        points = [p for p in (state.next_change() for state in self._states) if p is not None]
        return min(points) if points else None
