"""The event processor: from the durable log to the event store.

Runs in a background thread. For each sealed log segment, oldest first: decode its batches,
count every event in the statistics, drop test events (counted, never stored), apply TikTok's
deduplication, write the rest as Parquet parts, commit the state, delete the segment.

Deduplication (reference section 5.4), keyed on source + ``event`` + ``event_id``:

* a copy arriving within 48 hours of the first from the same side (browser/browser or
  server/server) is dropped;
* a browser (pixel) and a server copy arriving within 5 minutes of each other are merged: the
  later copy is stored with ``merged_into`` set to the first's ``eid``, so its extra match keys
  can enrich the first, and it is not counted as an event of its own;
* after 5 minutes (and within 48 hours) the later copy is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from likewise.ingest.identity import CANDIDATE_COLUMNS, EventResolver
from likewise.ingest.records import EventRecord
from likewise.store.eventlog import EventLog
from likewise.store.events import EventStore

log = logging.getLogger(__name__)

DEDUP_SECONDS = 48 * 3600
PURGE_EVERY_SECONDS = 3600  # how often dedup keys past the window are forgotten
PENDING_EVERY_SECONDS = 30  # how often unresolved events are tried again (imports, links)
MERGE_SECONDS = 5 * 60
FIELDS = EventRecord.__struct_fields__
_ROWS = msgspec.msgpack.Decoder()  # untyped: array-like records come back as plain lists

# Parquet column types, in EventRecord field order (rows are decoded as plain lists).
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
}
assert tuple(TYPES) == FIELDS, "TYPES must list EventRecord's fields in order"
I = {name: i for i, name in enumerate(FIELDS)}  # noqa: E741 - column index by name
# Stored beside the record's fields. advertiser_id and day are the partition (folder) keys.
STORED = [f for f in FIELDS if f not in ("advertiser_id", "test")]


class EventProcessor:
    def __init__(
        self,
        log_: EventLog,
        store: EventStore,
        *,
        interval: float = 0.5,
        on_stored: Callable[[set[int]], None] | None = None,
        clock: Callable[[], float] = time.time,
        resolver: EventResolver | None = None,
        retention_days: int | None = None,
    ) -> None:
        self.log = log_
        self.store = store
        self.interval = interval
        self.on_stored = on_stored  # called with the ids of sources that got new events
        self.clock = clock
        self.resolver = resolver
        self.retention_days = retention_days  # days of events kept (the longest lookback)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pass = threading.Lock()  # one pass at a time (background thread or flush)
        self._thread: threading.Thread | None = None

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
        last_purge = self.clock()  # the first purge an hour after start, not at once
        last_pending = last_purge
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.log.rotate()
                self.run_once()
                now = self.clock()
                if now - last_pending > PENDING_EVERY_SECONDS:
                    self.resolve_pending()
                    last_pending = now
                if now - last_purge > PURGE_EVERY_SECONDS:
                    self.purge_seen(now)
                    if self.retention_days is not None:
                        self.purge_expired(now, self.retention_days)
                    last_purge = now
            except Exception:  # keep the thread alive; the segment is retried next pass
                log.exception("event processing failed; will retry")

    def run_once(self) -> int:
        """Process every sealed segment; returns how many events were stored."""
        with self._pass:
            return sum(self._segment(segment) for segment in self.log.sealed())

    # --- one segment -------------------------------------------------------------------------

    def _segment(self, segment: Path) -> int:
        seq = int(segment.stem)
        with self.store.state() as con:
            if seq <= self.store.meta(con, "last_segment"):
                segment.unlink(missing_ok=True)  # done before a crash that kept the file
                return 0
            rows = [row for payload in EventLog.records(segment) for row in _ROWS.decode(payload)]
            next_eid = self.store.meta(con, "next_eid", 1)
            keep, stats, seen_rows, next_eid = self._dedup(con, rows, next_eid)
            partitions: dict[tuple[int, date], list[list[Any]]] = defaultdict(list)
            for row in keep:
                partitions[(row[I["advertiser_id"]], _day(row[I["event_time"]]))].append(row)
            for (advertiser_id, day), part in partitions.items():
                self.store.write_part(advertiser_id, day, segment.stem, _table(part))
            con.execute("BEGIN TRANSACTION")
            if seen_rows:
                con.register("new_seen", pa.table(_columns(seen_rows, SEEN_TYPES)))
                con.execute("INSERT OR REPLACE INTO seen SELECT * FROM new_seen")
                con.unregister("new_seen")
            if stats:
                con.register("new_stats", pa.table(_stats_columns(stats)))
                con.execute(
                    """INSERT INTO stats SELECT * FROM new_stats
                    ON CONFLICT (source_id, day, event) DO UPDATE SET
                      received = stats.received + excluded.received,
                      test = stats.test + excluded.test,
                      deduplicated = stats.deduplicated + excluded.deduplicated,
                      merged = stats.merged + excluded.merged,
                      limited = stats.limited + excluded.limited"""
                )
                con.unregister("new_stats")
            if self.resolver is not None:
                self.resolver.resolve(con, _candidates(keep), self.clock())
            self.store.set_meta(con, "next_eid", next_eid)
            self.store.set_meta(con, "last_segment", seq)
            con.execute("COMMIT")
        segment.unlink(missing_ok=True)
        if keep and self.on_stored is not None:
            self.on_stored({row[I["source_id"]] for row in keep})
        return len(keep)

    def _dedup(
        self, con: Any, rows: list[list[Any]], next_eid: int
    ) -> tuple[list[list[Any]], dict[tuple[int, date, str], list[int]], list[list[Any]], int]:
        """Rows to store (with ``eid`` and ``merged_into`` appended), statistics, new ``seen``
        keys, and the next free eid."""
        src, evt, eid_, test = I["source_id"], I["event"], I["event_id"], I["test"]
        keyed = {(r[src], r[evt], r[eid_]) for r in rows if r[eid_] is not None and not r[test]}
        seen: dict[tuple[int, str, str], tuple[int, str, float]] = {}
        if keyed:
            con.register("batch_keys", pa.table(_columns(list(keyed), KEY_TYPES)))
            for s, e, i, eid, channel, t in con.execute(
                """SELECT k.* , s.eid, s.channel, s.received_at FROM batch_keys k
                JOIN seen s USING (source_id, event, event_id)"""
            ).fetchall():
                seen[(s, e, i)] = (eid, channel, t)
            con.unregister("batch_keys")
        keep: list[list[Any]] = []
        new_seen: list[list[Any]] = []
        stats: dict[tuple[int, date, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        days: dict[int, date] = {}
        # Column positions as locals (above too): this loop runs for every event.
        recv, chan, lim, etime = I["received_at"], I["channel"], I["limited"], I["event_time"]
        for row in rows:
            day_no = int(row[etime] // 86400)
            day = days.get(day_no)
            if day is None:
                day = days[day_no] = _day(row[etime])
            counters = stats[(row[src], day, row[evt])]
            counters[0] += 1  # received
            if row[test]:
                counters[1] += 1
                continue
            merged_into = None
            key = (row[src], row[evt], row[eid_])
            first = seen.get(key) if key[2] is not None else None
            now = row[recv]
            if first is not None and now - first[2] <= DEDUP_SECONDS:
                crossed = (first[1] == "pixel") != (row[chan] == "pixel")  # browser vs server
                if crossed and now - first[2] <= MERGE_SECONDS:
                    merged_into = first[0]
                    counters[3] += 1
                else:
                    counters[2] += 1
                    continue
            if row[lim]:
                counters[4] += 1
            eid = next_eid
            next_eid += 1
            if key[2] is not None and merged_into is None:
                seen[key] = (eid, row[chan], now)
                new_seen.append([*key, eid, row[chan], now])
            row.append(eid)
            row.append(merged_into)
            keep.append(row)
        return keep, stats, new_seen, next_eid

    def resolve_pending(self) -> int:
        """Try again to resolve stored events that have no user yet."""
        if self.resolver is None:
            return 0
        with self._pass:
            source = self.store.sql_source()
            if source is None:
                return 0
            with self.store.state() as con:
                rows = con.execute(
                    f"""SELECT {", ".join(CANDIDATE_COLUMNS)} FROM {source}
                    WHERE NOT limited AND eid NOT IN (SELECT eid FROM event_uid)
                      AND (len(email) > 0 OR len(phone) > 0 OR idfa IS NOT NULL
                           OR gaid IS NOT NULL OR ttp IS NOT NULL OR len(external_id) > 0)"""
                ).fetchall()
                candidates = pa.table(_columns(rows, CANDIDATE_TYPES))
                if candidates.num_rows == 0:
                    return 0
                con.execute("BEGIN TRANSACTION")
                resolved = self.resolver.resolve(con, candidates, self.clock())
                con.execute("COMMIT")
                return resolved

    def erase(self, uids: list[int]) -> int:
        """Remove erased users' events: their rows (and copies merged into them) leave the
        Parquet parts, and their resolutions and learned links are deleted. Returns the number
        of events removed."""
        if not uids:
            return 0
        with self._pass, self.store.state() as con:
            con.register("gone_users", pa.table({"uid": pa.array(uids, pa.uint32())}))
            eids = [
                int(e)
                for (e,) in con.execute(
                    "SELECT eid FROM event_uid WHERE uid IN (SELECT uid FROM gone_users)"
                ).fetchall()
            ]
            removed = self.store.remove_events(eids)
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM event_uid WHERE uid IN (SELECT uid FROM gone_users)")
            con.execute("DELETE FROM links WHERE uid IN (SELECT uid FROM gone_users)")
            con.execute("COMMIT")
            con.unregister("gone_users")
            return removed

    def purge_expired(self, now: float, retention_days: int) -> int:
        """Drop whole days older than the retention (by event time), with their resolutions.
        Returns the number of day partitions dropped."""
        cutoff = _day(now - retention_days * 86400)
        with self._pass:
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
        with self.store.state() as con:
            con.execute("DELETE FROM seen WHERE received_at < ?", [now - DEDUP_SECONDS])


KEY_TYPES = {"source_id": pa.int64(), "event": pa.string(), "event_id": pa.string()}
SEEN_TYPES = {
    **KEY_TYPES,
    "eid": pa.int64(),
    "channel": pa.string(),
    "received_at": pa.float64(),
}


CANDIDATE_TYPES = {
    "eid": pa.int64(),
    "advertiser_id": pa.int64(),
    "email": pa.list_(pa.string()),
    "phone": pa.list_(pa.string()),
    "idfa": pa.string(),
    "gaid": pa.string(),
    "ttp": pa.string(),
    "external_id": pa.list_(pa.string()),
    "merged_into": pa.int64(),
}
_EID, _MERGED = len(FIELDS), len(FIELDS) + 1  # appended to each kept row by _dedup


def _candidates(keep: list[list[Any]]) -> pa.Table:
    """The kept rows a resolver may use (not those with limited data use)."""
    rows = [
        [
            r[_EID],
            r[I["advertiser_id"]],
            r[I["email"]],
            r[I["phone"]],
            r[I["idfa"]],
            r[I["gaid"]],
            r[I["ttp"]],
            r[I["external_id"]],
            r[_MERGED],
        ]
        for r in keep
        if not r[I["limited"]]
    ]
    return pa.table(_columns(rows, CANDIDATE_TYPES))


def _day(t: float) -> date:
    return datetime.fromtimestamp(t, UTC).date()


def _columns(rows: list[Any], types: dict[str, pa.DataType]) -> dict[str, pa.Array]:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in types]
    return {name: pa.array(col, type=t) for (name, t), col in zip(types.items(), cols, strict=True)}


def _table(rows: list[list[Any]]) -> pa.Table:
    types = {**TYPES, "eid": pa.int64(), "merged_into": pa.int64()}
    cols = _columns(rows, types)
    return pa.table({name: cols[name] for name in [*STORED, "eid", "merged_into"]})


def _stats_columns(stats: dict[tuple[int, date, str], list[int]]) -> dict[str, pa.Array]:
    rows = [[*k, *v] for k, v in stats.items()]
    return _columns(
        rows,
        {
            "source_id": pa.int64(),
            "day": pa.date32(),
            "event": pa.string(),
            "received": pa.int64(),
            "test": pa.int64(),
            "deduplicated": pa.int64(),
            "merged": pa.int64(),
            "limited": pa.int64(),
        },
    )
