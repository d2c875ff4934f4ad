"""TikTok's deduplication of events (reference section 5.4), keyed on source + ``event`` +
``event_id``:

* a copy arriving within 48 hours of the first from the same side (browser/browser or
  server/server) is dropped;
* a browser (pixel) and a server copy arriving within 5 minutes of each other are merged: the
  later copy is stored with ``merged_into`` set to the first's ``eid``, so its extra match keys
  can enrich the first, and it is not counted as an event of its own;
* after 5 minutes (and within 48 hours) the later copy is dropped.

The first copies of the last 48 hours are in the state database's ``seen`` table, each by its
key's 128-bit hash (``_dedup``: two keys share one with a chance of about 1e-24 among ten
million), its ``eid``, channel and arrival time. Two integers a row, not the key's texts, make
storing a pass's keys a third of the cost (the texts cost most at DuckDB's checkpoints, where
they are compressed), and loading them at start a read, not a hashing. DuckDB has no index
join, so looking a batch's keys up there scans all of ``seen``: 30 ms a pass at a million keys,
400 ms at twenty million, on every pass however small. :class:`SeenKeys` holds the hashes' high
halves and the arrival time of each key in memory (16 bytes a key), so a pass goes to ``seen``
only for the keys that may be there (a half seen before), and only for the rows stored since
the earliest of those keys arrived: ``seen`` is appended in arrival order, so DuckDB skips the
older row groups by their minimum and maximum. A batch without repeats, the usual one, does not
query ``seen`` at all.
"""

from __future__ import annotations

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from likewise.ingest._dedup import key_hashes as _key_hashes
from likewise.store.events import SEEN_SCHEMA

DEDUP_SECONDS = 48 * 3600
MERGE_SECONDS = 5 * 60

Hashes = npt.NDArray[np.uint64]
Times = npt.NDArray[np.float64]


def key_hashes(source_id: pa.Array, event: pa.Array, event_id: pa.Array) -> tuple[Hashes, Hashes]:
    """The 128-bit hash of each row's key (none of the three may be null): high and low
    halves."""
    ids = pc.cast(source_id, pa.int64()).to_numpy(zero_copy_only=False)
    hi = np.empty(len(ids), dtype=np.uint64)
    lo = np.empty(len(ids), dtype=np.uint64)
    _key_hashes(
        np.ascontiguousarray(ids, dtype=np.int64), *_strings(event), *_strings(event_id), hi, lo
    )
    return hi, lo


def _strings(column: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """A string column's offsets (as int64, from zero) and data, as numpy views or copies."""
    column = pc.cast(column, pa.large_string())
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    _, offsets, data = column.buffers()
    start = column.offset
    bounds = np.frombuffer(offsets, dtype=np.int64)[start : start + len(column) + 1]
    # At least one byte: the compiled code takes the address of the first.
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None and data.size else _EMPTY
    return np.ascontiguousarray(bounds), raw


_EMPTY = np.zeros(1, dtype=np.uint8)


class SeenKeys:
    """The hashes of the keys in ``seen``, each with its first copy's arrival time: a superset
    of ``seen`` (a key forgotten there may still be here), so a hash not here is a key never
    seen within the window.

    Most keys sit in one array sorted by hash; a pass's new keys go to a small sorted array of
    their own, merged into the large one when the small ones add up to an eighth of it."""

    def __init__(self) -> None:
        self._hashes: Hashes = np.empty(0, dtype=np.uint64)
        self._times: Times = np.empty(0, dtype=np.float64)
        self._recent: list[tuple[Hashes, Times]] = []

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> SeenKeys:
        upgrade_seen(con)
        keys = con.sql("SELECT key_hi, received_at FROM seen").fetchnumpy()
        index = cls()
        index.add(np.asarray(keys["key_hi"], np.uint64), np.asarray(keys["received_at"]))
        return index

    def __len__(self) -> int:
        return len(self._hashes) + sum(len(h) for h, _ in self._recent)

    def earliest(self, hashes: Hashes) -> Times:
        """For each hash (sorted), the earliest arrival of a key with that hash, or NaN."""
        out = np.full(len(hashes), np.nan)
        for known, times in [(self._hashes, self._times), *self._recent]:
            if len(known):
                out = np.fmin(out, _earliest(known, times, hashes))
        return out

    def add(self, hashes: Hashes, times: Times) -> None:
        if not len(hashes):
            return
        order = np.argsort(hashes, kind="stable")
        self._recent.append((hashes[order], np.asarray(times, dtype=np.float64)[order]))
        if sum(len(h) for h, _ in self._recent) * 8 > max(len(self._hashes), 1 << 19):
            self._merge()

    def forget_before(self, cutoff: float) -> None:
        """Drop the keys that arrived before ``cutoff`` (``seen`` has done the same)."""
        self._merge()
        keep = self._times >= cutoff
        self._hashes, self._times = self._hashes[keep], self._times[keep]

    def _merge(self) -> None:
        hashes = np.concatenate([self._hashes, *(h for h, _ in self._recent)])
        times = np.concatenate([self._times, *(t for _, t in self._recent)])
        order = np.argsort(hashes, kind="stable")  # runs of sorted hashes: merged, not sorted
        self._hashes, self._times, self._recent = hashes[order], times[order], []


def _earliest(known: Hashes, times: Times, hashes: Hashes) -> Times:
    """The earliest time of each of ``hashes`` in ``known`` (both sorted), NaN where it is
    not there. Sorted queries make the binary searches' memory reads close to each other."""
    at = np.searchsorted(known, hashes)
    hit = at < len(known)
    hit[hit] = known[at[hit]] == hashes[hit]
    out = np.full(len(hashes), np.nan)
    out[hit] = times[at[hit]]
    more = hit & (at + 1 < len(known))
    more[more] = known[at[more] + 1] == hashes[more]
    for i in np.flatnonzero(more):  # a key stored twice, or two keys with one hash: rare
        end = np.searchsorted(known, hashes[i], side="right")
        out[i] = times[at[i] : end].min()
    return out


def upgrade_seen(con: duckdb.DuckDBPyConnection) -> None:
    """Convert a ``seen`` table of the earlier layout (the key's texts: ``source_id``,
    ``event``, ``event_id``) to the hashed one, in arrival order. Once, at the first pass."""
    columns = {row[0] for row in con.execute("DESCRIBE seen").fetchall()}
    if "event_id" not in columns:
        return
    old = con.sql(
        "SELECT source_id, event, event_id, eid, channel, received_at FROM seen ORDER BY eid"
    ).to_arrow_table()
    hi, lo = key_hashes(old["source_id"], old["event"], old["event_id"])
    rows = pa.table(
        {
            "key_hi": hi,
            "key_lo": lo,
            "eid": old["eid"],
            "channel": old["channel"],
            "received_at": old["received_at"],
        }
    )
    con.execute("BEGIN TRANSACTION")
    con.execute("DROP TABLE seen")
    con.execute(SEEN_SCHEMA)
    con.register("old_seen", rows)
    try:
        con.execute("INSERT INTO seen SELECT * FROM old_seen")
    finally:
        con.unregister("old_seen")
    con.execute("COMMIT")


# Keyed copies that need the sequential rules: a key seen before, or repeated in this batch.
# ``candidates`` holds only rows whose key may be one of those (see the module's docstring);
# ``seen`` is read from the earliest arrival any of them may have. A key stored twice (first
# copies more than 48 hours apart) has two rows there: the latest counts.
_REPEATS = """
WITH k AS (
  SELECT *, count(*) OVER (PARTITION BY source_id, event, event_id) AS copies
  FROM candidates)
SELECT k.n, k.source_id, k.event, k.event_id, k.channel, k.received_at,
  s.eid, s.channel, s.received_at
FROM k LEFT JOIN seen s
  ON k.key_hi = s.key_hi AND k.key_lo = s.key_lo AND s.received_at >= ?
WHERE k.copies > 1 OR s.eid IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY k.n ORDER BY s.eid DESC NULLS LAST) = 1
ORDER BY k.n
"""


def dedup(
    con: duckdb.DuckDBPyConnection, batch: pa.Table, next_eid: int, seen: SeenKeys
) -> tuple[pa.Table, int, Hashes]:
    """``batch`` with the deduplication outcome added (``n`` arrival order, ``day``, ``kept``,
    ``dropped``, ``eid`` of kept events, ``merged_into``, the key's hash ``key_hi`` and
    ``key_lo``: 0 for rows without a key), the next free eid, and the hashes' high halves."""
    n = batch.num_rows
    order = pa.array(np.arange(n, dtype=np.int64))
    keyed_rows = np.flatnonzero(
        pc.and_(pc.is_valid(batch["event_id"]), pc.invert(batch["test"]))
        .to_numpy(zero_copy_only=False)
        .astype(bool)
    )
    hashes = np.zeros(n, dtype=np.uint64)
    lows = np.zeros(n, dtype=np.uint64)
    repeats: list[tuple] = []
    if len(keyed_rows):
        keyed = batch.select(["source_id", "event", "event_id", "channel", "received_at"])
        if len(keyed_rows) < n:  # usually every row has a key: no copy
            keyed = keyed.take(keyed_rows)
        keyed_hashes, keyed_lows = key_hashes(keyed["source_id"], keyed["event"], keyed["event_id"])
        hashes[keyed_rows] = keyed_hashes
        lows[keyed_rows] = keyed_lows
        by_hash = np.argsort(keyed_hashes)
        ordered = keyed_hashes[by_hash]
        earliest = np.empty(len(by_hash))
        earliest[by_hash] = seen.earliest(ordered)
        known = ~np.isnan(earliest)
        same = ordered[1:] == ordered[:-1]  # a hash more than once in this batch
        again = np.zeros(len(by_hash), dtype=bool)
        again[by_hash[1:][same]] = again[by_hash[:-1][same]] = True
        maybe = np.flatnonzero(known | again)
        if len(maybe):
            candidates = (
                keyed.take(maybe)
                .append_column("n", pa.array(keyed_rows[maybe]))
                .append_column("key_hi", pa.array(keyed_hashes[maybe]))
                .append_column("key_lo", pa.array(keyed_lows[maybe]))
            )
            since = float(earliest[known].min()) if known.any() else float("inf")
            con.register("candidates", candidates)
            try:
                repeats = con.execute(_REPEATS, [since]).fetchall()
            finally:
                con.unregister("candidates")
    dropped = np.zeros(n, dtype=bool)
    merged_to: dict[int, tuple[bool, int]] = {}  # row -> (True, eid) or (False, first's row)
    first_copy: dict[tuple[int, str, str], tuple[tuple[bool, int], str, float] | None] = {}
    for row, src, evt, event_id, channel, now, s_eid, s_channel, s_time in repeats:
        key = (src, evt, event_id)
        if key not in first_copy:
            first_copy[key] = ((True, s_eid), s_channel, s_time) if s_eid is not None else None
        f = first_copy[key]
        if f is not None and now - f[2] <= DEDUP_SECONDS:
            crossed = (f[1] == "pixel") != (channel == "pixel")  # browser vs server
            if crossed and now - f[2] <= MERGE_SECONDS:
                merged_to[row] = f[0]
            else:
                dropped[row] = True
            continue
        first_copy[key] = ((False, row), channel, now)  # a new first copy
    kept = ~batch["test"].to_numpy(zero_copy_only=False) & ~dropped
    eids = np.full(n, -1, dtype=np.int64)
    eids[kept] = next_eid + np.arange(int(kept.sum()), dtype=np.int64)
    merged = np.full(n, -1, dtype=np.int64)
    for row, (is_eid, ref) in merged_to.items():
        merged[row] = ref if is_eid else eids[ref]
    days = pc.cast(pc.floor(pc.divide(batch["event_time"], 86400.0)), pa.int32())
    out = (
        batch.append_column("n", order)
        .append_column("day", days.cast(pa.date32()))
        .append_column("kept", pa.array(kept))
        .append_column("dropped", pa.array(dropped))
        .append_column("eid", pa.array(eids, mask=~kept))
        .append_column("merged_into", pa.array(merged, mask=merged < 0))
        .append_column("key_hi", pa.array(hashes))
        .append_column("key_lo", pa.array(lows))
    )
    return out, next_eid + int(kept.sum()), hashes
