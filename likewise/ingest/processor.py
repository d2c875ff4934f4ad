"""The event processor: from the durable log to the event store.

Runs in a background thread. For each sealed log segment, oldest first: read it as one Arrow
table, count every event in the statistics, drop test events (counted, never stored), apply
TikTok's deduplication, write the rest as Parquet parts, commit the state, delete the segment.
The work is columnar (Arrow, DuckDB), so it runs mostly outside the interpreter lock, beside the
request path; only repeated event ids go through the sequential rules in Python.

Deduplication follows TikTok's rules (:mod:`likewise.ingest.dedup`).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from likewise.ingest.dedup import DEDUP_SECONDS, SeenKeys, dedup
from likewise.ingest.identity import CANDIDATE_COLUMNS, NONE_RESOLVED, EventResolver
from likewise.ingest.queries import usable_rows_sql
from likewise.ingest.records import EventRecord
from likewise.store.eventlog import EventLog, SealedSegments, read_segment
from likewise.store.events import EventStore

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 3600  # how often dedup keys past the window are forgotten
PENDING_EVERY_SECONDS = 30  # how often unresolved events are tried again (imports, links)
COMPACT_EVERY_SECONDS = 60  # how often partitions with many small parts are merged
# Sealed segments processed in one pass when processing is behind: a pass has fixed costs (a
# transaction, an identity graph lookup, a file per partition), so a backlog is caught up in
# fewer, larger passes.
MAX_SEGMENTS_PER_PASS = 16
MAX_BYTES_PER_PASS = 64 << 20
FIELDS = EventRecord.__struct_fields__

# Column types, in EventRecord field order: the JSON reader's schema and the Parquet parts'.
TYPES: dict[str, pa.DataType] = {
    "source_id": pa.int64(),
    "advertiser_id": pa.int64(),
    "channel": pa.string(),
    "event": pa.string(),
    "event_time": pa.float64(),
    "received_at": pa.float64(),
    "event_id": pa.string(),
    "test": pa.bool_(),
    "limited": pa.bool_(),
    "email": pa.list_(pa.string()),
    "phone": pa.list_(pa.string()),
    "external_id": pa.list_(pa.string()),
    "ttclid": pa.string(),
    "ttp": pa.string(),
    "idfa": pa.string(),
    "gaid": pa.string(),
    "url": pa.string(),
    "referrer": pa.string(),
    "value": pa.float64(),
    "currency": pa.string(),
    "content_type": pa.string(),
    "content_ids": pa.list_(pa.string()),
    "content_categories": pa.list_(pa.string()),
    "prices": pa.list_(pa.float64()),
    "app_id": pa.string(),
    "ad_id": pa.string(),
    "lead_id": pa.string(),
    "properties": pa.string(),
    "user_ref": pa.string(),
    "adgroup_id": pa.string(),
    "campaign_id": pa.string(),
    "content_id": pa.string(),
    "creator_id": pa.string(),
    "category": pa.string(),
    "account_id": pa.string(),
    "live_id": pa.string(),
    "form_id": pa.string(),
    "product_id": pa.string(),
    "watched_seconds": pa.float64(),
    "watched_percent": pa.float64(),
}
assert tuple(TYPES) == FIELDS, "TYPES must list EventRecord's fields in order"
# Stored beside the record's fields. advertiser_id and day are the partition (folder) keys.
STORED = [f for f in FIELDS if f not in ("advertiser_id", "test")]
SCHEMA = pa.schema(list(TYPES.items()))


class EventProcessor:
    def __init__(
        self,
        log_: EventLog | SealedSegments,
        store: EventStore,
        *,
        interval: float = 0.5,
        clock: Callable[[], float] = time.time,
        resolver: EventResolver | None = None,
        retention_days: int | None = None,
    ) -> None:
        self.log = log_
        self.store = store
        self.interval = interval
        self.clock = clock
        self.resolver = resolver
        self.retention_days = retention_days  # days of events kept (the longest lookback)
        # Told of events that just became usable (resolved, not limited, not merged copies),
        # each an Arrow table of stored event columns plus ``uid`` (live audiences).
        self.on_usable: Callable[[pa.Table], None] | None = None
        self.on_erased: Callable[[list[int]], None] | None = None  # users erased
        self.on_tick: Callable[[], None] | None = None  # after each background pass
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pass = threading.Lock()  # one pass at a time (background thread or flush)
        # Parts may exist of a pass that did not commit (a crash, or a failure before it):
        # checked at the first pass and after any failure.
        self._dirty = True
        # The dedup keys' hashes (see SeenKeys), loaded at the first pass; dropped after a
        # failed one, which may have stored keys without adding them.
        self._seen_keys: SeenKeys | None = None
        self._compacting = False
        self._thread: threading.Thread | None = None
        # The first purge an hour after start, not at once.
        self._last_purge = self._last_pending = self._last_compact = clock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="event-processor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def flush(self) -> int:
        """Process everything acknowledged so far and retry unresolved events (tests, CLI)."""
        self.log.rotate()
        stored = self.run_once()
        self.resolve_pending()
        return stored

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.log.rotate()
            self.tick()

    def tick(self) -> None:
        """One background pass: process sealed segments; now and then retry unresolved events
        and purge what is past its window. Errors are logged: the segment is retried next time."""
        try:
            self.run_once()
            now = self.clock()
            if now - self._last_pending > PENDING_EVERY_SECONDS:
                self.resolve_pending(everything=False)
                self._last_pending = now
            if now - self._last_compact > COMPACT_EVERY_SECONDS and not self._compacting:
                # In the background: merging writes whole files, and live audiences must not
                # wait for it.
                self._compacting = True
                threading.Thread(target=self._compact_in_background, daemon=True).start()
                self._last_compact = now
            if now - self._last_purge > PURGE_EVERY_SECONDS:
                self.purge_seen(now)
                if self.retention_days is not None:
                    self.purge_expired(now, self.retention_days)
                self._last_purge = now
        except Exception:
            log.exception("event processing failed; will retry")
        if self.on_tick is not None:
            try:
                self.on_tick()
            except Exception:
                log.exception("after-pass hook failed")

    def run_once(self) -> int:
        """Process every sealed segment; returns how many events were stored."""
        with self._pass:
            stored = 0
            group: list[Path] = []
            size = 0
            for segment in self.log.sealed():
                grows = segment.stat().st_size
                if group and (
                    len(group) == MAX_SEGMENTS_PER_PASS or size + grows > MAX_BYTES_PER_PASS
                ):
                    stored += self._segments(group)
                    group, size = [], 0
                group.append(segment)
                size += grows
            if group:
                stored += self._segments(group)
            return stored

    # --- one pass ----------------------------------------------------------------------------

    def _segments(self, segments: list[Path]) -> int:
        """Store the events of ``segments`` (consecutive, oldest first) in one transaction."""
        try:
            return self._store_segments(segments)
        except BaseException:
            self._seen_keys = None  # it may lack keys the pass stored: loaded again
            raise

    def _store_segments(self, segments: list[Path]) -> int:
        with self.store.state() as con:
            done = self.store.meta(con, "last_segment")
            for segment in [s for s in segments if int(s.stem) <= done]:
                segment.unlink(missing_ok=True)  # done before a crash that kept the file
            segments = [s for s in segments if int(s.stem) > done]
            if not segments:
                return 0
            if self._dirty:
                # Parts of a pass that failed before its commit: the retry may group segments
                # differently, so they would not be overwritten.
                self.store.drop_parts_after(done)
                self._dirty = False
            seq = int(segments[-1].stem)
            next_eid = self.store.meta(con, "next_eid", 1)
            marks: dict[str, int] = {}
            if next_eid == 1 and self.resolver is not None:
                # The store's first events, resolved against the graph as it is now: the
                # background retry has nothing to catch up on until the graph changes.
                marks["pending_graph"] = self.resolver.graph_mark()
            events = read_segments(con, segments, self.store.folder / "reading.jsonl")
            if self._seen_keys is None:
                self._seen_keys = SeenKeys.load(con)
            batch, next_eid, hashes = dedup(con, events, next_eid, self._seen_keys)
            # Usually every event is kept: no copy of every column then.
            kept = batch if pc.all(batch["kept"]).as_py() else batch.filter(batch["kept"])
            self._dirty = True
            for (advertiser_id, day), part in _partitions(kept):
                self.store.write_part(
                    advertiser_id, day, str(seq), part.select([*STORED, "eid", "merged_into"])
                )
            con.execute("BEGIN TRANSACTION")
            con.register("batch", batch)
            try:
                con.execute(_SAVE_SEEN)
                con.execute(_SAVE_STATS)
            finally:
                con.unregister("batch")
            resolved = NONE_RESOLVED
            if self.resolver is not None:
                # Only the columns resolution reads, and no copy when nothing is limited.
                usable = kept.select(list(CANDIDATE_COLUMNS))
                if pc.any(kept["limited"]).as_py():
                    usable = usable.filter(pc.invert(kept["limited"]))
                resolved = self.resolver.resolve(con, usable, self.clock())
            self.store.set_meta(con, "next_eid", next_eid, last_segment=seq, **marks)
            con.execute("COMMIT")
            self._dirty = False
            # What _SAVE_SEEN stored.
            saved = pc.and_(
                pc.and_(batch["kept"], batch["event_id"].is_valid()), batch["merged_into"].is_null()
            ).to_numpy(zero_copy_only=False)
            self._seen_keys.add(hashes[saved], batch["received_at"].to_numpy()[saved])
            usable_now = self._usable_rows(con, resolved, kept)
        for segment in segments:
            segment.unlink(missing_ok=True)
        self._tell(usable_now)
        return kept.num_rows

    def compact(self) -> int:
        """Merge the small parts of busy partitions (see :meth:`EventStore.compact`); returns
        how many parts were merged away. Files are written without holding up processing;
        only the swap waits for a pass to end."""
        with self._pass, self.store.state() as con:
            groups = self.store.compactable(self.store.meta(con, "last_segment"))
        merged = 0
        for parts in groups:
            staged = self.store.stage_merge(parts)
            with self._pass, self.store.state():
                if self.store.publish_merge(staged) is not None:
                    merged += len(parts)
        return merged

    def _compact_in_background(self) -> None:
        try:
            self.compact()
        except Exception:
            log.exception("merging event parts failed; tried again later")
        finally:
            self._compacting = False

    def resolve_pending(self, *, everything: bool = True) -> int:
        """Try again to resolve stored events that have no user yet.

        ``everything=False`` (the background pass) looks only where something new could match:
        all unresolved events when the identity graph changed since the last pass (an import),
        otherwise only those carrying a browser, external or click id learned since then. A
        blind retry of every unresolved event (most anonymous visits stay so) would cost more
        with every day of retention."""
        if self.resolver is None:
            return 0
        with self._pass:
            source = self.store.sql_source()
            if source is None:
                return 0
            with self.store.state() as con:
                graph_mark = self.resolver.graph_mark()
                since = self.store.meta(con, "pending_links_ms") / 1000
                now = self.clock()
                narrow = not everything and graph_mark == self.store.meta(con, "pending_graph")
                learned = con.execute("SELECT count(*) FROM links WHERE seen_at >= ?", [since])
                if narrow and not learned.fetchall()[0][0]:
                    # Nothing learned, nothing changed: no scan of the store (the common case
                    # for servers without browser ids; the scan grows with the store).
                    self.store.set_meta(con, "pending_links_ms", int(now * 1000))
                    return 0
                candidates = con.sql(
                    f"""SELECT {", ".join(CANDIDATE_COLUMNS)}
                    FROM (SELECT {_present(con, source, CANDIDATE_COLUMNS)}, limited FROM {source})
                    WHERE NOT limited AND eid NOT IN (SELECT eid FROM event_uid)
                      AND {_NEW_LINKS if narrow else _ANY_KEY}""",
                    params=[since] * 3 if narrow else None,
                ).to_arrow_table()  # columnar: a retry after an import can be millions of rows
                candidates = candidates.cast(pa.schema(CANDIDATE_TYPES.items()))
                con.execute("BEGIN TRANSACTION")
                resolved = self.resolver.resolve(con, candidates, now)
                self.store.set_meta(
                    con, "pending_graph", graph_mark, pending_links_ms=int(now * 1000)
                )
                con.execute("COMMIT")
                usable_now = self._usable_rows(con, resolved, None)
        self._tell(usable_now)
        return resolved.num_rows

    def _usable_rows(
        self, con: duckdb.DuckDBPyConnection, resolved: pa.Table, batch: pa.Table | None
    ) -> list[pa.Table]:
        """The events resolved just now that may build audiences, with their ``uid``: rows of
        ``batch`` (the segment just stored, still in memory) or, for older events (late
        resolutions, events a merged copy resolved), read back from the store."""
        if self.on_usable is None or resolved.num_rows == 0:
            return []
        found = []
        older = resolved
        if batch is not None:
            at = pc.index_in(batch["eid"], value_set=resolved["eid"])  # null: not resolved
            usable = pc.and_(pc.invert(batch["limited"]), pc.is_null(batch["merged_into"]))
            keep = pc.and_(pc.is_valid(at), usable)
            rows = batch.filter(keep)
            found.append(rows.append_column("uid", resolved["uid"].take(at.filter(keep))))
            older = resolved.filter(pc.invert(pc.is_in(resolved["eid"], value_set=batch["eid"])))
        source = self.store.sql_source()
        if older.num_rows and source is not None:
            con.register("older_uid", older)
            try:
                found.append(
                    con.sql(
                        f"{usable_rows_sql(source)} AND e.eid IN (SELECT eid FROM older_uid)"
                    ).to_arrow_table()
                )
            finally:
                con.unregister("older_uid")
        return found

    def _tell(self, tables: list[pa.Table]) -> None:
        # Outside the state database's lock: the hook's owner takes its own lock, and reading
        # history for a new view takes this one.
        if self.on_usable is not None:
            for table in tables:
                if table.num_rows:
                    self.on_usable(table)

    def erase(self, uids: list[int], user_refs: Collection[str] = ()) -> int:
        """Remove erased users' events: their rows (and copies merged into them) leave the
        Parquet parts, and their resolutions and learned links (browser, external and click
        ids) are deleted. ``user_refs`` (their platform user ids) also catches engagement
        events not resolved to them (yet). Returns the number of events removed."""
        if not uids and not user_refs:
            return 0
        with self._pass, self.store.state() as con:
            con.register("gone_users", pa.table({"uid": pa.array(uids, pa.uint32())}))
            eids = [
                int(e)
                for (e,) in con.execute(
                    "SELECT eid FROM event_uid WHERE uid IN (SELECT uid FROM gone_users)"
                ).fetchall()
            ]
            source = self.store.sql_source()
            if user_refs and source is not None:
                refs = pa.table({"ref": pa.array(list(user_refs), pa.string())})
                con.register("gone_refs", refs)
                eids += [
                    int(e)
                    for (e,) in con.execute(
                        f"""SELECT eid FROM (SELECT {_present(con, source, ("eid", "user_ref"))}
                        FROM {source}) WHERE user_ref IN (SELECT ref FROM gone_refs)"""
                    ).fetchall()
                ]
                con.unregister("gone_refs")
            removed = self.store.remove_events(eids)
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM event_uid WHERE uid IN (SELECT uid FROM gone_users)")
            con.execute("DELETE FROM links WHERE uid IN (SELECT uid FROM gone_users)")
            con.execute("COMMIT")
            con.unregister("gone_users")
        if self.on_erased is not None and uids:
            self.on_erased(list(uids))
        return removed

    def purge_expired(self, now: float, retention_days: int) -> int:
        """Drop whole days older than the retention (by event time), with their resolutions,
        and forget learned links (browser, external and click ids) not seen within it.
        Returns the number of day partitions dropped."""
        cutoff = _day(now - retention_days * 86400)
        with self._pass:
            with self.store.state() as con:
                con.execute("DELETE FROM links WHERE seen_at < ?", [now - retention_days * 86400])
            old = self.store.partitions_before(cutoff)
            if not old:
                return 0
            eids: list[int] = []
            reader = duckdb.connect()  # its own: the module's default one is shared
            try:
                for folder in old:
                    pattern = str(folder / "*.parquet").replace("'", "''")
                    if any(folder.glob("*.parquet")):
                        eids += [
                            int(e)
                            for (e,) in reader.execute(
                                f"SELECT eid FROM read_parquet('{pattern}', union_by_name = true)"
                            ).fetchall()
                        ]
            finally:
                reader.close()
            with self.store.state() as con:
                con.register("old_eids", pa.table({"eid": pa.array(eids, pa.int64())}))
                con.execute("DELETE FROM event_uid WHERE eid IN (SELECT eid FROM old_eids)")
                con.unregister("old_eids")
            for folder in old:
                self.store.drop_partition(folder)
            return len(old)

    def purge_seen(self, now: float) -> None:
        """Forget dedup keys older than the 48-hour window."""
        with self._pass, self.store.state() as con:
            con.execute("DELETE FROM seen WHERE received_at < ?", [now - DEDUP_SECONDS])
            if self._seen_keys is not None:
                self._seen_keys.forget_before(now - DEDUP_SECONDS)


CANDIDATE_TYPES = {
    name: TYPES.get(name, pa.int64())  # eid and merged_into: int64
    for name in CANDIDATE_COLUMNS
}


def read_segments(con: duckdb.DuckDBPyConnection, segments: list[Path], scratch: Path) -> pa.Table:
    """The events of ``segments`` as one Arrow table, in arrival order, with the defaults the
    encoder left out filled in.

    Both readers parse off the interpreter lock. DuckDB's takes about a third of the CPU of
    Arrow's per event (1.5 against 4.4 µs) but costs 3-8 ms a query to plan, so Arrow's reads
    small passes (a quiet server's, single-event requests) and DuckDB's large ones. DuckDB reads
    the segments where they lie when they are JSON lines throughout (see
    :mod:`likewise.store.eventlog`), or else a copy of their intact records in ``scratch`` (a
    torn tail after a crash, segments of the first log format)."""
    read = [read_segment(segment) for segment in segments]
    size = sum(r.size for r in read)
    if size == 0:
        return SCHEMA.empty_table()
    if size < DUCKDB_READ_BYTES:
        return _read_with_arrow(b"".join(p for r in read for p in r.payloads))
    if all(r.whole and all(p[-1:] == b"\n" for p in r.payloads) for r in read):
        return _read_with_duckdb(con, segments)
    with scratch.open("wb") as out:
        out.writelines(p for r in read for p in r.payloads)
    del read
    try:
        return _read_with_duckdb(con, [scratch])
    finally:
        scratch.unlink(missing_ok=True)


DUCKDB_READ_BYTES = 1 << 20  # about 2,000 events: where DuckDB's planning starts to pay


def _read_with_arrow(data: bytes) -> pa.Table:
    raw = pj.read_json(io.BytesIO(data), read_options=_JSON_READ, parse_options=_JSON_PARSE)
    columns = []
    for name, typ in TYPES.items():
        col = raw.column(name)
        if pa.types.is_list(typ):
            col = pc.if_else(col.is_null(), pa.scalar([], typ), col)
        elif pa.types.is_boolean(typ):
            col = pc.fill_null(col, False)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _read_with_duckdb(con: duckdb.DuckDBPyConnection, files: list[Path]) -> pa.Table:
    paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    # The log's header lines are rows without a source (every event has one).
    table = con.sql(
        f"""SELECT {_READ_COLUMNS} FROM read_json([{paths}], format = 'newline_delimited',
        columns = {_JSON_COLUMNS}, maximum_object_size = {_MAX_LINE})
        WHERE source_id IS NOT NULL"""
    ).to_arrow_table()
    return table.cast(SCHEMA)


_JSON_READ = pj.ReadOptions(block_size=1 << 22)  # larger than any one record can be
_JSON_PARSE = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="error")
_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.list_(pa.string()): "VARCHAR[]",
    pa.list_(pa.float64()): "DOUBLE[]",
}
_JSON_COLUMNS = "{" + ", ".join(f"'{n}': '{_SQL_TYPES[t]}'" for n, t in TYPES.items()) + "}"
# Fields the encoder leaves out are NULL in the reader: lists default to [], flags to false.
_READ_COLUMNS = ", ".join(
    f"coalesce({n}, []::{_SQL_TYPES[t]}) AS {n}"
    if pa.types.is_list(t)
    else f"coalesce({n}, false) AS {n}"
    if pa.types.is_boolean(t)
    else n
    for n, t in TYPES.items()
)
# Larger than any line (one event) can be: its fields are bounded (texts of 4 KiB, 100 contents,
# properties of 16 KiB) to well under 2 MiB. DuckDB sizes its buffers by it.
_MAX_LINE = 16 << 20


# Unresolved events worth another try: any that carries a key at all ...
_ANY_KEY = """(len(email) > 0 OR len(phone) > 0 OR idfa IS NOT NULL OR gaid IS NOT NULL
  OR ttp IS NOT NULL OR len(external_id) > 0 OR ttclid IS NOT NULL OR user_ref IS NOT NULL)"""
# ... or, when the graph is unchanged, those with an id a link learned since the last try.
_NEW_LINKS = """(ttp IN (SELECT value FROM links WHERE kind = 'ttp' AND seen_at >= ?)
  OR ttclid IN (SELECT value FROM links WHERE kind = 'ttclid' AND seen_at >= ?)
  OR list_has_any(external_id, (SELECT coalesce(list(value), []) FROM links
                                WHERE kind = 'external_id' AND seen_at >= ?)))"""

# Every first copy, appended: a key stored again (a first copy 48 hours after the last) has
# more than one row until the purge, and the latest (by eid, in arrival order) is the one that
# counts (see dedup._REPEATS).
_SAVE_SEEN = """
INSERT INTO seen
SELECT key_hi, key_lo, eid, channel, received_at FROM batch
WHERE kept AND event_id IS NOT NULL AND merged_into IS NULL
"""

_SAVE_STATS = """
INSERT INTO stats
SELECT source_id, day, event, count(*), count(*) FILTER (test), count(*) FILTER (dropped),
  count(*) FILTER (merged_into IS NOT NULL), count(*) FILTER (kept AND limited)
FROM batch GROUP BY source_id, day, event
ON CONFLICT (source_id, day, event) DO UPDATE SET
  received = stats.received + excluded.received,
  test = stats.test + excluded.test,
  deduplicated = stats.deduplicated + excluded.deduplicated,
  merged = stats.merged + excluded.merged,
  limited = stats.limited + excluded.limited
"""


def _partitions(kept: pa.Table) -> Iterator[tuple[tuple[int, date], pa.Table]]:
    """Kept events split by (advertiser, day), each in arrival order."""
    if kept.num_rows == 0:
        return
    adv, day = kept["advertiser_id"], kept["day"]
    if pc.count_distinct(adv).as_py() == 1 and pc.count_distinct(day).as_py() == 1:
        # The usual segment: one advertiser, one day. No sort (it copies every column).
        yield (adv[0].as_py(), day[0].as_py()), kept
        return
    kept = kept.sort_by([("advertiser_id", "ascending"), ("day", "ascending"), ("n", "ascending")])
    adv = kept["advertiser_id"].to_numpy()
    day = kept["day"].cast(pa.int32()).to_numpy()
    cuts = (np.flatnonzero((adv[1:] != adv[:-1]) | (day[1:] != day[:-1])) + 1).tolist()
    for start, end in zip([0, *cuts], [*cuts, kept.num_rows], strict=True):
        yield (
            (int(adv[start]), EPOCH + timedelta(days=int(day[start]))),
            kept.slice(start, end - start),
        )


EPOCH = date(1970, 1, 1)


def _present(con: duckdb.DuckDBPyConnection, source: str, columns: Sequence[str]) -> str:
    """A select list of ``columns``, typed NULL for those no part has: parts written before a
    field was appended to :class:`EventRecord` lack its column (all of them, in an old store)."""
    have = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    return ", ".join(
        c if c in have else f"NULL::{_SQL_TYPES[CANDIDATE_TYPES[c]]} AS {c}" for c in columns
    )


def _day(t: float) -> date:
    return datetime.fromtimestamp(t, UTC).date()
