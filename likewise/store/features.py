"""The feature store: what each platform user engages with, aggregated, for lookalikes.

Rows are ``(uid, item, month, w)``: user, a thing engaged with (``category:fashion``,
``creator:c17``, ``account:acct-3``), the calendar month (months since January 1970) and a
weight. They arrive as small *delta* files, written by the event processing as events become
usable, and :meth:`FeatureStore.merge` folds them into one aggregated *base* now and then, so a
lookalike reads one file however many events came in and no event is ever read twice.

Layout under ``data_dir/features``::

    delta/*.parquet     (uid, item, month, w) appended by the event processing
    erased/*.parquet    (uid) users erased since the last merge
    base-<gen>.parquet  (uid, item_id, month, w), aggregated, sorted by uid
    items-<gen>.parquet (item_id, item): the vocabulary, item ids never change
    manifest.json       the current generation and the delta and erased files it consumed

The manifest is written last (atomically): a merge interrupted before it never happened, and
files it lists as consumed are deleted by the next merge rather than counted twice. Only one
process merges (the server); the event worker only appends.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyroaring import BitMap

DELTA_SCHEMA = pa.schema(
    [("uid", pa.uint32()), ("item", pa.string()), ("month", pa.int32()), ("w", pa.float32())]
)
MANIFEST = "manifest.json"
BACKFILLED = "backfilled"  # marker: the events stored before features existed were read
STAGING = "backfill"  # a backfill's rows until it is complete


def month_of(seconds: float) -> int:
    """Months since January 1970 of a Unix time (UTC)."""
    days = np.datetime64(int(seconds), "s").astype("datetime64[M]")
    return int(days.astype(np.int64))


@dataclass(frozen=True)
class FeatureMatrix:
    """Aggregated weights as coordinate arrays (``uid``, ``item``, ``w``, all the same length,
    in no particular order), and the vocabulary (``items[item_id]``)."""

    uid: np.ndarray  # uint32
    item: np.ndarray  # uint32
    w: np.ndarray  # float32
    items: list[str]
    generation: int


class FeatureStore:
    def __init__(self, folder: Path, *, threads: int = 2, memory_limit: str = "3GB") -> None:
        self.folder = folder
        self.threads = threads
        self.memory_limit = memory_limit
        for sub in ("delta", "erased"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self._merge_lock = threading.Lock()

    # --- appending (the event processing) ---------------------------------------------------

    def append(self, rows: pa.Table) -> None:
        """Add feature rows (:data:`DELTA_SCHEMA`)."""
        if rows.num_rows:
            self._write(self.folder / "delta", rows.cast(DELTA_SCHEMA))

    def append_erased(self, uids: list[int]) -> None:
        """Erased users: the next merge removes everything known about them."""
        if uids:
            self._write(self.folder / "erased", pa.table({"uid": pa.array(uids, pa.uint32())}))

    @staticmethod
    def _write(folder: Path, table: pa.Table) -> None:
        name = f"{uuid.uuid4().hex}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(folder / name)

    # A backfill is staged whole, then marked done, then published: a crash before the mark
    # redoes it from scratch (nothing of it was merged), a crash after only publishes the rest.

    def backfilled(self) -> bool:
        """Whether the events stored before the feature store were read (a staged backfill
        left by a crash is published here)."""
        staging = self.folder / STAGING
        if not (self.folder / BACKFILLED).exists():
            if staging.exists():
                for p in staging.iterdir():
                    p.unlink()
                staging.rmdir()
            return False
        if staging.exists():
            self._publish_staged()
        return True

    def stage(self, rows: pa.Table) -> None:
        """Part of a backfill: kept apart until :meth:`mark_backfilled`."""
        if rows.num_rows:
            staging = self.folder / STAGING
            staging.mkdir(exist_ok=True)
            self._write(staging, rows.cast(DELTA_SCHEMA))

    def mark_backfilled(self) -> None:
        marker = self.folder / BACKFILLED
        marker.touch()
        with open(marker, "rb") as fh:
            os.fsync(fh.fileno())
        self._publish_staged()

    def _publish_staged(self) -> None:
        staging = self.folder / STAGING
        if not staging.exists():
            return
        for p in staging.glob("*.parquet"):
            p.replace(self.folder / "delta" / p.name)
        for p in staging.iterdir():  # a half-written .tmp
            p.unlink()
        staging.rmdir()

    # --- merging (the server) ---------------------------------------------------------------

    def _manifest(self) -> dict[str, object]:
        path = self.folder / MANIFEST
        if not path.exists():
            return {"generation": 0, "consumed": []}
        return dict(json.loads(path.read_text()))

    @property
    def generation(self) -> int:
        """Changes whenever the merged features do."""
        return int(self._manifest()["generation"])  # type: ignore[call-overload]

    def pending(self) -> int:
        """Delta and erased files not merged yet."""
        consumed = set(self._manifest()["consumed"])  # type: ignore[call-overload]
        return sum(
            1
            for sub in ("delta", "erased")
            for p in (self.folder / sub).glob("*.parquet")
            if p.name not in consumed
        )

    def merge(self, *, min_month: int | None = None, forget: Collection[int] = ()) -> int:
        """Fold pending deltas and erasures into a new base, dropping months before
        ``min_month`` (retention) and the users in ``forget`` (erased users, as the platform
        graph knows them: a safety net for rows that arrive after their erasure file was
        merged); returns the generation now current. Nothing pending and nothing to drop: the
        base stays as it is."""
        with self._merge_lock:
            manifest = self._manifest()
            generation = int(manifest["generation"])  # type: ignore[call-overload]
            consumed = set(manifest["consumed"])  # type: ignore[call-overload]
            for sub in ("delta", "erased"):  # left over by a merge that was published
                for p in (self.folder / sub).glob("*.parquet"):
                    if p.name in consumed:
                        p.unlink(missing_ok=True)
            # Erasures first: the rows of a user erased since are then all listed too (the
            # event processing appends them before it appends the erasure).
            erased = sorted((self.folder / "erased").glob("*.parquet"))
            deltas = sorted((self.folder / "delta").glob("*.parquet"))
            base = self.folder / f"base-{generation}.parquet"
            oldest = self._oldest_month(base) if min_month is not None and base.exists() else None
            stale = oldest is not None and min_month is not None and oldest < min_month
            gone = BitMap(forget)
            if gone and base.exists() and not deltas and not erased and not stale:
                stale = self._holds_any(base, gone)
            if not deltas and not erased and not stale:
                return generation
            new = generation + 1
            self._write_generation(
                new, base if base.exists() else None, deltas, erased, min_month, gone
            )
            self._publish_manifest(
                {"generation": new, "consumed": [p.name for p in deltas + erased]}
            )
            for p in deltas + erased:
                p.unlink(missing_ok=True)
            # Every older generation, also one left by a merge that died after its manifest
            # (it may hold erased users).
            current = (f"base-{new}.parquet", f"items-{new}.parquet")
            for old in [*self.folder.glob("base-*.parquet"), *self.folder.glob("items-*.parquet")]:
                if old.name not in current:
                    old.unlink(missing_ok=True)
            return new

    def _holds_any(self, base: Path, uids: BitMap) -> bool:
        con = duckdb.connect(config={"threads": self.threads})
        try:
            con.register("gone", pa.table({"uid": pa.array(uids.to_array(), pa.uint32())}))
            row = con.execute(
                f"SELECT count(*) FROM read_parquet('{_q(base)}') WHERE uid IN "
                "(SELECT uid FROM gone)"
            ).fetchone()
        finally:
            con.close()
        return bool(row and row[0])

    def _oldest_month(self, base: Path) -> int | None:
        con = duckdb.connect(config={"threads": self.threads})
        try:
            row = con.execute(f"SELECT min(month) FROM read_parquet('{_q(base)}')").fetchone()
        finally:
            con.close()
        return None if row is None or row[0] is None else int(row[0])

    def _write_generation(
        self,
        generation: int,
        base: Path | None,
        deltas: list[Path],
        erased: list[Path],
        min_month: int | None,
        forget: BitMap | None = None,
    ) -> None:
        con = duckdb.connect(config={"threads": self.threads, "memory_limit": self.memory_limit})
        try:
            items_old = self.folder / f"items-{generation - 1}.parquet"
            if items_old.exists():
                con.execute(f"CREATE TABLE items AS SELECT * FROM read_parquet('{_q(items_old)}')")
            else:
                con.execute("CREATE TABLE items (item_id UINTEGER, item VARCHAR)")
            delta_files = ", ".join(f"'{_q(p)}'" for p in deltas)
            if deltas:
                con.execute(
                    f"CREATE TEMP VIEW delta AS SELECT * FROM read_parquet([{delta_files}])"
                )
                # New items get the next ids, in name order: the same input, the same ids.
                con.execute(
                    """INSERT INTO items
                    SELECT (SELECT coalesce(max(item_id) + 1, 0) FROM items)
                             + row_number() OVER (ORDER BY item) - 1, item
                    FROM (SELECT DISTINCT item FROM delta
                          WHERE item NOT IN (SELECT item FROM items))"""
                )
            parts = []
            if base is not None:
                parts.append(f"SELECT uid, item_id, month, w FROM read_parquet('{_q(base)}')")
            if deltas:
                parts.append(
                    "SELECT d.uid, i.item_id, d.month, d.w FROM delta d JOIN items i USING (item)"
                )
            where = []
            if min_month is not None:
                where.append(f"month >= {int(min_month)}")
            if erased:
                files = ", ".join(f"'{_q(p)}'" for p in erased)
                where.append(f"uid NOT IN (SELECT uid FROM read_parquet([{files}]))")
            if forget:
                con.register("forget", pa.table({"uid": pa.array(forget.to_array(), pa.uint32())}))
                where.append("uid NOT IN (SELECT uid FROM forget)")
            union = (
                " UNION ALL ".join(parts)
                if parts
                else (
                    "SELECT NULL::UINTEGER AS uid, NULL::UINTEGER AS item_id, "
                    "NULL::INTEGER AS month, NULL::FLOAT AS w WHERE false"
                )
            )
            filters = f"WHERE {' AND '.join(where)}" if where else ""
            out = self.folder / f"base-{generation}.parquet"
            tmp = self.folder / f".{out.name}.tmp"
            con.execute(
                f"""COPY (SELECT uid, item_id, month, sum(w)::FLOAT AS w FROM ({union}) {filters}
                          GROUP BY uid, item_id, month ORDER BY uid, item_id, month)
                TO '{_q(tmp)}' (FORMAT parquet, COMPRESSION zstd)"""
            )
            items = self.folder / f"items-{generation}.parquet"
            items_tmp = self.folder / f".{items.name}.tmp"
            con.execute(
                f"COPY (SELECT * FROM items ORDER BY item_id) TO '{_q(items_tmp)}' (FORMAT parquet)"
            )
        finally:
            con.close()
        for t, final in ((tmp, out), (items_tmp, items)):
            with open(t, "rb") as fh:
                os.fsync(fh.fileno())
            t.replace(final)

    def _publish_manifest(self, manifest: dict[str, object]) -> None:
        path = self.folder / MANIFEST
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(path)

    # --- reading ----------------------------------------------------------------------------

    def read(self, *, min_month: int | None = None) -> FeatureMatrix:
        """The merged weights summed over months (from ``min_month``), per user and item."""
        with self._merge_lock:  # a merge meanwhile would delete the files being read
            return self._read(min_month)

    def _read(self, min_month: int | None) -> FeatureMatrix:
        generation = self.generation
        base = self.folder / f"base-{generation}.parquet"
        items_file = self.folder / f"items-{generation}.parquet"
        if generation == 0 or not base.exists():
            empty = np.zeros(0, np.uint32)
            return FeatureMatrix(empty, empty, np.zeros(0, np.float32), [], generation)
        con = duckdb.connect(config={"threads": self.threads, "memory_limit": self.memory_limit})
        try:
            where = f"WHERE month >= {int(min_month)}" if min_month is not None else ""
            got = con.execute(
                f"""SELECT uid, item_id, sum(w)::FLOAT AS w FROM read_parquet('{_q(base)}')
                {where} GROUP BY uid, item_id"""
            ).fetchnumpy()
            vocab = con.execute(
                f"SELECT item FROM read_parquet('{_q(items_file)}') ORDER BY item_id"
            ).fetchnumpy()["item"]
        finally:
            con.close()
        return FeatureMatrix(
            np.asarray(got["uid"], np.uint32),
            np.asarray(got["item_id"], np.uint32),
            np.asarray(got["w"], np.float32),
            [str(x) for x in vocab],
            generation,
        )


def _q(path: Path) -> str:
    return str(path).replace("'", "''")
