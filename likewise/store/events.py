"""The event store: compacted events as Parquet, partitioned by advertiser and day, plus the
processing state (deduplication keys, per-source statistics) in a small DuckDB database.

Layout under ``data_dir/events``::

    log/                          the durable log (store.eventlog), not yet compacted
    data/advertiser_id=A/day=D/   Parquet parts, one per log segment and partition
    state.duckdb                  seen (dedup keys), stats, meta (watermarks), event_uid
                                  (which user an event is), links (learned browser, external,
                                  click ids)

A segment's parts are named after the segment, so processing it again after a crash rewrites
the same files instead of adding copies; its state changes commit in one transaction with the
watermark that marks it done.

A segment is sealed every half second, so a busy partition gains thousands of small parts a day;
:meth:`EventStore.compact` merges the small parts of processed segments into one file, so scans
open a few files instead. A manifest written first makes the merge safe to interrupt.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

# The dedup keys: each first copy of the last 48 hours by its key's 128-bit hash (see
# likewise.ingest.dedup, which also converts tables of the earlier layout, keyed by the texts).
SEEN_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
  key_hi UBIGINT NOT NULL, key_lo UBIGINT NOT NULL, eid BIGINT NOT NULL,
  channel VARCHAR NOT NULL, received_at DOUBLE NOT NULL
);
"""
STATE_SCHEMA = (
    SEEN_SCHEMA
    + """
CREATE TABLE IF NOT EXISTS stats (
  source_id BIGINT NOT NULL, day DATE NOT NULL, event VARCHAR NOT NULL,
  received BIGINT NOT NULL, test BIGINT NOT NULL, deduplicated BIGINT NOT NULL,
  merged BIGINT NOT NULL, limited BIGINT NOT NULL,
  PRIMARY KEY (source_id, day, event)
);
CREATE TABLE IF NOT EXISTS meta (k VARCHAR PRIMARY KEY, v BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS event_uid (eid BIGINT PRIMARY KEY, uid UINTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS links (
  advertiser_id BIGINT NOT NULL, kind VARCHAR NOT NULL, value VARCHAR NOT NULL,
  uid UINTEGER NOT NULL, seen_at DOUBLE NOT NULL,
  PRIMARY KEY (advertiser_id, kind, value)
);
"""
)


# Dictionary-encoded in parts: the columns with few distinct values. For the others (ids, hashed
# keys, URLs, properties) a dictionary only costs: without one, a pass's part is written in a
# quarter less CPU and is a third of the size (zstd compresses the plain values better).
DICTIONARY_COLUMNS = frozenset(
    {"source_id", "channel", "event", "currency", "content_type", "app_id", "category"}
)


def _statistics_columns(schema: pa.Schema) -> list[str]:
    """The columns whose minimum and maximum a part records: numbers, times and the few-valued
    texts, which let a reader skip a part. Those of hashed keys, ids, URLs and lists would span
    nearly everything, prune nothing, and cost a fifth of writing the part."""
    return [
        f.name
        for f in schema
        if f.name in DICTIONARY_COLUMNS
        or not (pa.types.is_string(f.type) or pa.types.is_list(f.type))
    ]


COMPACT_MIN_PARTS = 32  # a partition with fewer small parts is left alone
COMPACT_SMALL_BYTES = 16 << 20  # parts this large are done: merging them again only costs
MANIFEST = ".compact.json"  # the parts a merge replaces, written before it is published


@dataclass(frozen=True)
class StagedMerge:
    parts: list[Path]
    fingerprints: list[tuple[int, int] | None]
    tmp: Path
    target: Path


def _fingerprint(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns)


def part_seq(path: Path) -> int:
    """The last log segment a part holds events of (parts are ``<seq>.parquet`` or, merged,
    ``<last seq>-m<n>.parquet``)."""
    return int(path.stem.split("-")[0])


class EventStore:
    def __init__(self, folder: Path, *, threads: int = 2, memory_limit: str = "1GB") -> None:
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.threads = threads
        self.memory_limit = memory_limit
        self._lock = threading.Lock()  # one user of the state connection at a time
        self._con: duckdb.DuckDBPyConnection | None = None

    @contextmanager
    def state(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The state database, exclusively. One connection stays open: opening and closing a
        DuckDB file (a checkpoint each time) would cost more than a processing pass."""
        with self._lock:
            if self._con is None:
                self._con = self._connect()
                self._con.execute(STATE_SCHEMA)
                # Closed at exit at the latest: a DuckDB connection torn down during interpreter
                # shutdown can crash the process.
                weakref.finalize(self, self._con.close)
            try:
                yield self._con
            except BaseException:
                self._rollback()
                raise

    def _connect(self, wait_seconds: float = 60.0) -> duckdb.DuckDBPyConnection:
        """Open the state database, waiting while another process still holds it (an event
        worker of a server that was killed finishes its pass before it notices and exits)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                return duckdb.connect(
                    str(self.folder / "state.duckdb"),
                    config={"threads": self.threads, "memory_limit": self.memory_limit},
                )
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _rollback(self) -> None:
        assert self._con is not None
        with contextlib.suppress(duckdb.Error):  # no transaction was open
            self._con.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def meta(self, con: duckdb.DuckDBPyConnection, key: str, default: int = 0) -> int:
        rows = con.execute("SELECT v FROM meta WHERE k = ?", [key]).fetchall()
        return int(rows[0][0]) if rows else default

    @staticmethod
    def set_meta(con: duckdb.DuckDBPyConnection, key: str, value: int, **more: int) -> None:
        """Set ``key`` (and the keys of ``more``): an UPDATE, and an insert only for keys not
        there yet. (An upsert, ``ON CONFLICT DO UPDATE``, took 5 ms to the UPDATE's 1 on every
        pass: DuckDB's conflict handling has a fixed cost.)"""
        items = {key: value, **more}
        names = list(items)
        pairs = [x for item in items.items() for x in item]
        cases = " ".join("WHEN ? THEN ?::BIGINT" for _ in names)
        marks = ", ".join("?" for _ in names)
        (updated,) = con.execute(
            f"UPDATE meta SET v = CASE k {cases} END WHERE k IN ({marks})", pairs + names
        ).fetchall()[0]
        if updated < len(names):
            con.execute(
                "INSERT OR IGNORE INTO meta VALUES " + ", ".join("(?, ?)" for _ in names), pairs
            )

    # --- parts -------------------------------------------------------------------------------

    def partition(self, advertiser_id: int, day: date) -> Path:
        return self.data / f"advertiser_id={advertiser_id}" / f"day={day.isoformat()}"

    def write_part(self, advertiser_id: int, day: date, name: str, table: pa.Table) -> Path:
        """Write (or rewrite) one part atomically: readers never see half a file."""
        folder = self.partition(advertiser_id, day)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.parquet"
        tmp = folder / f".{name}.parquet.tmp"
        dictionary = [c for c in table.column_names if c in DICTIONARY_COLUMNS]
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            use_dictionary=dictionary,
            write_statistics=_statistics_columns(table.schema),
        )
        _publish(tmp, target)
        return target

    def parts(self, advertiser_id: int | None = None) -> list[Path]:
        base = self.data if advertiser_id is None else self.data / f"advertiser_id={advertiser_id}"
        return sorted(base.glob("**/*.parquet"))

    def sql_source(self, advertiser_id: int | None = None) -> str | None:
        """A ``read_parquet`` expression over the stored events (None when there are none)."""
        base = self.data if advertiser_id is None else self.data / f"advertiser_id={advertiser_id}"
        if next(base.glob("**/*.parquet"), None) is None:  # stops at the first part
            return None
        pattern = str(base / "**" / "*.parquet").replace("'", "''")
        return f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"

    def remove_events(self, eids: list[int]) -> int:
        """Rewrite the parts holding these events (or copies merged into them) without them;
        each part is replaced atomically. Returns how many rows were removed."""
        source = self.sql_source()
        if not eids or source is None:
            return 0
        con = duckdb.connect(config={"threads": self.threads})
        try:
            con.register("gone", pa.table({"eid": pa.array(eids, pa.int64())}))
            pattern = str(self.data / "**" / "*.parquet").replace("'", "''")
            parts = [
                Path(f)
                for (f,) in con.execute(
                    f"""SELECT DISTINCT filename FROM read_parquet('{pattern}', filename = true,
                          union_by_name = true)
                    WHERE eid IN (SELECT eid FROM gone) OR merged_into IN (SELECT eid FROM gone)"""
                ).fetchall()
            ]
            removed = 0
            keep = """WHERE eid NOT IN (SELECT eid FROM gone)
                      AND (merged_into IS NULL OR merged_into NOT IN (SELECT eid FROM gone))"""
            for part in parts:
                src = str(part).replace("'", "''")
                before, after = con.execute(
                    f"""SELECT count(*), count(*) FILTER ({keep.removeprefix("WHERE ")})
                    FROM read_parquet('{src}')"""
                ).fetchall()[0]
                removed += int(before) - int(after)
                if after == 0:
                    part.unlink()
                    continue
                tmp = part.with_name(f".{part.name}.tmp")
                target = str(tmp).replace("'", "''")
                con.execute(
                    f"""COPY (SELECT * FROM read_parquet('{src}') {keep})
                    TO '{target}' (FORMAT parquet, COMPRESSION zstd)"""
                )
                _publish(tmp, part)
            return removed
        finally:
            con.close()

    def drop_parts_after(self, done_seq: int) -> int:
        """Remove parts of segments after ``done_seq``: written by a pass that never committed
        (the retry writes them again). Returns how many."""
        dropped = 0
        for part in self.data.glob("advertiser_id=*/day=*/*.parquet"):
            if part_seq(part) > done_seq:
                part.unlink(missing_ok=True)
                dropped += 1
        return dropped

    def compactable(self, done_seq: int) -> list[list[Path]]:
        """Per partition with many of them, the small parts of segments up to ``done_seq``
        (a later segment's part may be rewritten if its processing is retried)."""
        groups = []
        for folder in self.data.glob("advertiser_id=*/day=*"):
            self._recover(folder)
            parts = sorted(
                (
                    p
                    for p in folder.glob("*.parquet")
                    if part_seq(p) <= done_seq and p.stat().st_size < COMPACT_SMALL_BYTES
                ),
                key=part_seq,
            )
            if len(parts) >= COMPACT_MIN_PARTS:
                groups.append(parts)
        return groups

    def compact(self, parts: list[Path]) -> Path:
        """Merge ``parts`` (of one partition) into one file and remove them. The caller keeps
        readers out meanwhile (the state lock)."""
        staged = self.stage_merge(parts)
        published = self.publish_merge(staged)
        assert published is not None, "the parts changed while nothing else ran"
        return published

    def stage_merge(self, parts: list[Path]) -> StagedMerge:
        """Write the merge of ``parts`` beside them, not yet visible: the slow half of
        :meth:`compact`, which needs no lock (parts are never changed in place, only replaced
        or removed, and :meth:`publish_merge` checks for that)."""
        before = [_fingerprint(p) for p in parts]
        folder = parts[0].parent
        target = folder / f"{part_seq(parts[-1])}-m{len(parts)}.parquet"
        tmp = folder / f".{target.name}.tmp"
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in parts)
        con = duckdb.connect(config={"threads": self.threads})
        try:
            out = str(tmp).replace("'", "''")
            con.execute(
                f"""COPY (SELECT * FROM read_parquet([{files}], union_by_name = true,
                    hive_partitioning = false))
                TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
            )
        finally:
            con.close()
        return StagedMerge(parts, before, tmp, target)

    def publish_merge(self, staged: StagedMerge) -> Path | None:
        """Swap a staged merge in for its parts, unless one of them changed meanwhile (an
        erasure rewrote or removed it): then the merge is dropped (None). The caller keeps
        readers out (the state lock)."""
        if [_fingerprint(p) for p in staged.parts] != staged.fingerprints:
            staged.tmp.unlink(missing_ok=True)
            return None
        folder = staged.target.parent
        manifest = folder / MANIFEST
        names = [p.name for p in staged.parts]
        manifest.write_text(json.dumps({"target": staged.target.name, "parts": names}))
        _publish(staged.tmp, staged.target)
        self._recover(folder)
        return staged.target

    @staticmethod
    def _recover(folder: Path) -> None:
        """Finish (or forget) a merge a crash interrupted: once the merged file is there, the
        parts it replaces go; before, the merge never happened."""
        manifest = folder / MANIFEST
        if not manifest.exists():
            return
        done = json.loads(manifest.read_text())
        if (folder / done["target"]).exists():
            for name in done["parts"]:
                if name != done["target"]:
                    (folder / name).unlink(missing_ok=True)
        manifest.unlink()

    def partitions_before(self, cutoff: date) -> list[Path]:
        """Day folders (of every advertiser) for days before ``cutoff``."""
        return [
            folder
            for folder in self.data.glob("advertiser_id=*/day=*")
            if date.fromisoformat(folder.name.removeprefix("day=")) < cutoff
        ]

    @staticmethod
    def drop_partition(folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)


def _publish(tmp: Path, target: Path) -> None:
    """Make a fully written file durable, then swap it in: readers see the old or the new."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(target)
