"""The platform graph: platform users, their consent, and identifier hash -> user.

Kept in DuckDB (columnar, hash joins over tens of millions of rows) in ``platform.duckdb``.
Connections are opened per operation so the CLI and a running server can take turns; a writer
that finds the file locked by another process waits for it.

Tables:
  users(uid, ext_id, country, region, age, gender, language, os, personalized_ads, erased)
  ident(k UHUGEINT, kind UTINYINT, uid UINTEGER)  -- k = first 128 bits of an identifier hash
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from pyroaring import BitMap

from likewise.errors import LikewiseError
from likewise.identity.kinds import IdKind
from likewise.store.key_index import NO_USER, KeyIndex

# Parquet has no 128-bit integer (DuckDB would write a lossy DOUBLE): key files keep the two
# 64-bit halves.
KEY_FROM_HALVES = "(({t}.k_hi::UHUGEINT << 64) | {t}.k_lo::UHUGEINT)"

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  uid UINTEGER NOT NULL, ext_id VARCHAR, country VARCHAR, region VARCHAR, age USMALLINT,
  gender VARCHAR, language VARCHAR, os VARCHAR, personalized_ads BOOLEAN NOT NULL,
  erased BOOLEAN NOT NULL DEFAULT false, updated_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS ident (k UHUGEINT NOT NULL, kind UTINYINT NOT NULL,
                                  uid UINTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS segment_keys (audience_id UBIGINT NOT NULL, k UHUGEINT NOT NULL,
                                         kmask UTINYINT NOT NULL);
CREATE TABLE IF NOT EXISTS graph_meta (name VARCHAR NOT NULL PRIMARY KEY, value BIGINT NOT NULL);
"""


# Opening and closing one DuckDB file from several threads at once races inside DuckDB's
# instance cache ("Unique file handle conflict"): serialise just those two steps.
_OPEN_CLOSE = threading.Lock()


class GraphBusy(LikewiseError):
    """Another process holds the platform graph for too long."""


@dataclass(frozen=True)
class MatchResult:
    members: BitMap
    matched_rows_by_file: dict[str, int]

    @property
    def matched_rows(self) -> int:
        return sum(self.matched_rows_by_file.values())


class PlatformGraph:
    def __init__(self, path: Path, *, threads: int = 2, memory_limit: str = "3GB") -> None:
        self.path = path
        self.threads = threads
        self.memory_limit = memory_limit
        self._write_lock = threading.Lock()
        self._excluded: tuple[int, BitMap] | None = None
        # Told when this process changed who is excluded (consent, erasure, an import);
        # changes by another process are seen through the file (excluded_file).
        self.excluded_listeners: list[Callable[[], None]] = []
        self._excluded_changed = False
        # (generation, change mark) of the last key index a connection found current.
        self._index_seen: tuple[int, int] | None = None

    def change_mark(self) -> int:
        """A number that changes when the graph's files do (its database and write-ahead log):
        cheap, and safe to compare from another process."""
        mark = 0
        for path in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            mark = (mark * 1_000_003 + st.st_mtime_ns + st.st_size) % (1 << 62)
        return mark

    @property
    def excluded_file(self) -> Path:
        return self.path.parent / "excluded.roar"

    @contextmanager
    def connect(self, *, wait_seconds: float = 600.0) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + wait_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                with _OPEN_CLOSE:
                    con = duckdb.connect(
                        str(self.path),
                        config={"threads": self.threads, "memory_limit": self.memory_limit},
                    )
                break
            except duckdb.IOException as exc:  # locked by another process
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() > deadline:
                    raise GraphBusy(
                        "the platform graph is in use by another process (an import?); "
                        "try again when it has finished"
                    ) from exc
                time.sleep(0.2)
        try:
            con.execute(SCHEMA)
            yield con
        finally:
            with _OPEN_CLOSE:
                con.close()

    @contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for a change; changes in this process are serialised."""
        with self._write_lock:
            self._excluded_changed = False
            with self.connect() as con:
                yield con
            changed = self._excluded_changed
        # Listeners hear of it once the connection is closed: they may read the graph.
        if changed:
            for listener in self.excluded_listeners:
                listener()

    # --- reads -------------------------------------------------------------------------------

    def excluded(self) -> BitMap:
        """Users who must never be counted or targeted: opted out of personalised ads, or erased.

        Persisted as a bitmap on every change, so readers do not touch DuckDB.
        """
        try:
            mtime = self.excluded_file.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1  # never written: nobody is excluded
        cached = self._excluded
        if cached is None or cached[0] != mtime:
            # The same object until the file changes: readers (the serving poll) compare by
            # identity, so a fresh empty bitmap on every call would look like a change each time.
            bitmap = BitMap.deserialize(self.excluded_file.read_bytes()) if mtime >= 0 else BitMap()
            cached = self._excluded = (mtime, bitmap)
        return cached[1]

    def erased(self, *, wait_seconds: float = 600.0) -> BitMap:
        """Users erased (their uids are never reused)."""
        with self.connect(wait_seconds=wait_seconds) as con:
            uids = con.execute("SELECT uid FROM users WHERE erased ORDER BY uid").fetchnumpy()
        return BitMap(uids["uid"])

    def write_excluded(self, con: duckdb.DuckDBPyConnection) -> None:
        uids = con.execute(
            "SELECT uid FROM users WHERE erased OR NOT personalized_ads ORDER BY uid"
        ).fetchnumpy()["uid"]
        bitmap = BitMap(uids)
        tmp = self.excluded_file.with_suffix(".tmp")
        tmp.write_bytes(bitmap.serialize())
        tmp.replace(self.excluded_file)
        self._excluded_changed = True  # told when the writing connection closes

    def match(self, key_files: list[Path]) -> MatchResult:
        """Users matched by the keys in these parquet files ``(row_no, k, kmask)``."""
        if not key_files:
            return MatchResult(BitMap(), {})
        members = BitMap()
        rows: dict[str, int] = {}
        with self.connect() as con:
            for path in key_files:
                # One pass per file, straight to arrays: the distinct users and matched rows are
                # counted by roaring bitmaps, much faster than DISTINCT over a temporary table.
                found = con.execute(
                    f"""SELECT i.uid, f.row_no::UINTEGER AS row_no
                    FROM read_parquet('{str(path).replace("'", "''")}') f
                    JOIN ident i ON i.k = {KEY_FROM_HALVES.format(t="f")}
                     AND (f.kmask >> i.kind) & 1 = 1"""
                ).fetchnumpy()
                members |= BitMap(found["uid"])
                rows[str(path)] = len(BitMap(found["row_no"]))
        return MatchResult(members, rows)

    def resolve(self, keys: pa.Table) -> BitMap:
        """Users matched by an in-memory table of ``(k, kmask)`` keys."""
        if keys.num_rows == 0:
            return BitMap()
        with self.connect() as con:
            con.register("q", keys)
            uids = con.execute(
                """SELECT DISTINCT i.uid FROM q JOIN ident i
                   ON i.k = q.k::UHUGEINT AND (q.kmask >> i.kind) & 1 = 1"""
            ).fetchnumpy()["uid"]
        return BitMap(uids)

    def lookup(
        self,
        keys: pa.Table,
        *,
        refs: pa.Table | None = None,
        wait_seconds: float = 2.0,
        index: KeyIndex | None = None,
    ) -> tuple[pa.Table, int]:
        """``(eid, uid)`` for ``keys(eid, k_hi, k_lo, kmask)`` (a 128-bit key's halves) and
        ``refs(eid, ext_id)`` (events naming their user by the platform's own user id): one
        user per ``eid``; the user id wins over keys, and the lowest uid when keys disagree.
        Erased users match nothing. Keys are looked up in ``index`` when it is of the graph's
        current generation, else joined with the graph. Also returns that generation (see
        :meth:`ident_generation`). Raises :class:`GraphBusy` if another process holds the graph
        for longer than ``wait_seconds``."""
        if refs is None:
            refs = pa.table({"eid": pa.array([], pa.int64()), "ext_id": pa.array([], pa.string())})
        mark = self.change_mark()
        unchanged = index is not None and self._index_seen == (index.generation, mark)
        if index is not None and unchanged and refs.num_rows == 0:
            # Nothing written to the graph since this index was found current: no connection
            # (opening and closing one costs more than the rest of a small batch).
            return _first_per_event(_found_keys(index, keys)), index.generation
        with self.connect(wait_seconds=wait_seconds) as con:
            generation = self.ident_generation(con)
            if index is not None and index.generation == generation:
                self._index_seen = (generation, mark)  # the mark from before: conservative
            if keys.num_rows == 0 and refs.num_rows == 0:
                return NO_USERS, generation
            # Only the joins that have rows to probe: most batches carry keys or user ids, not
            # both.
            parts = []
            if refs.num_rows:
                parts.append(
                    """SELECT r.eid, min(u.uid) AS uid, 0 AS p FROM r JOIN users u
                       ON u.ext_id = r.ext_id WHERE NOT u.erased GROUP BY r.eid"""
                )
            tables = {"q": keys, "r": refs}
            if keys.num_rows and index is not None and index.generation == generation:
                tables["by_key"] = _found_keys(index, keys)
                parts.append("SELECT eid, min(uid) AS uid, 1 AS p FROM by_key GROUP BY eid")
            elif keys.num_rows:
                parts.append(
                    f"""SELECT q.eid, min(i.uid) AS uid, 1 AS p FROM q JOIN ident i
                        ON i.k = {KEY_FROM_HALVES.format(t="q")} AND (q.kmask >> i.kind) & 1 = 1
                        GROUP BY q.eid"""
                )
            for name, table in tables.items():
                con.register(name, table)
            rows = con.execute(
                f"""SELECT eid, arg_min(uid, p) AS uid FROM ({" UNION ALL ".join(parts)})
                    GROUP BY eid"""
            ).fetchall()
        # Plain rows, not DuckDB's Arrow output: that may point into memory the connection
        # owns, and the connection is closed here (freeing it later crashed the process).
        found = pa.table(
            {
                "eid": pa.array([r[0] for r in rows], pa.int64()),
                "uid": pa.array([r[1] for r in rows], pa.uint32()),
            }
        )
        return found, generation

    def ident_generation(self, con: duckdb.DuckDBPyConnection) -> int:
        """A number every change of the graph's keys (an import, an erasure) increments once
        the change is made: an in-memory copy of the keys (:class:`KeyIndex`) is current while
        its generation is this one."""
        sql = "SELECT value FROM graph_meta WHERE name = 'ident_generation'"
        rows = con.execute(sql).fetchall()
        return int(rows[0][0]) if rows else 0

    @staticmethod
    def bump_ident_generation(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(
            """INSERT INTO graph_meta VALUES ('ident_generation', 1)
               ON CONFLICT (name) DO UPDATE SET value = graph_meta.value + 1"""
        )

    def key_index(self, *, wait_seconds: float = 600.0) -> KeyIndex:
        """Every key of the graph in memory, with the generation it is of (one snapshot)."""
        with self.connect(wait_seconds=wait_seconds) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                return KeyIndex.load(con, self.ident_generation(con))
            finally:
                con.execute("COMMIT")

    def segment_add(self, audience_id: int, keys: pa.Table) -> BitMap:
        """Remember a streaming segment's keys; returns the users they match."""
        with self.writing() as con:
            con.register("q", keys)
            con.execute(
                """INSERT INTO segment_keys
                   SELECT DISTINCT ?, q.k::UHUGEINT, q.kmask FROM q
                   ANTI JOIN segment_keys s
                     ON s.audience_id = ? AND s.k = q.k::UHUGEINT AND s.kmask = q.kmask""",
                [audience_id, audience_id],
            )
            uids = con.execute(
                """SELECT DISTINCT i.uid FROM q JOIN ident i
                   ON i.k = q.k::UHUGEINT AND (q.kmask >> i.kind) & 1 = 1"""
            ).fetchnumpy()["uid"]
        return BitMap(uids)

    def segment_remove(self, audience_id: int, keys: pa.Table) -> BitMap:
        """Forget keys; returns the users no remaining key of the segment matches."""
        with self.writing() as con:
            con.register("q", keys)
            con.execute(
                """DELETE FROM segment_keys s USING q
                   WHERE s.audience_id = ? AND s.k = q.k::UHUGEINT AND s.kmask = q.kmask""",
                [audience_id],
            )
            uids = con.execute(
                """WITH gone AS (SELECT DISTINCT i.uid FROM q JOIN ident i
                                 ON i.k = q.k::UHUGEINT AND (q.kmask >> i.kind) & 1 = 1),
                   kept AS (SELECT DISTINCT i.uid FROM segment_keys s JOIN ident i
                            ON i.k = s.k AND (s.kmask >> i.kind) & 1 = 1
                            WHERE s.audience_id = ? AND i.uid IN (SELECT uid FROM gone))
                   SELECT uid FROM gone EXCEPT SELECT uid FROM kept""",
                [audience_id],
            ).fetchnumpy()["uid"]
        return BitMap(uids)

    def segment_drop(self, audience_id: int) -> None:
        with self.writing() as con:
            con.execute("DELETE FROM segment_keys WHERE audience_id = ?", [audience_id])

    def set_consent(self, ext_ids: list[str], personalized_ads: bool) -> tuple[int, list[str]]:
        """Change consent; returns how many users changed and the ids that were not found."""
        with self.writing() as con:
            found = self.uids_for(con, ext_ids)
            con.register("hit", found)
            con.execute(
                "UPDATE users SET personalized_ads = ?, updated_at = now() "
                "WHERE uid IN (SELECT uid FROM hit)",
                [personalized_ads],
            )
            self.write_excluded(con)
        known = set(found.column("ext_id").to_pylist())
        return found.num_rows, [x for x in ext_ids if x not in known]

    def erase(self, ext_ids: list[str]) -> tuple[int, list[str]]:
        """Erase users: out of every audience at once, identifiers and attributes deleted."""
        uids, missing = self.erase_uids(ext_ids)
        return len(uids), missing

    def erase_uids(self, ext_ids: list[str]) -> tuple[list[int], list[str]]:
        """:meth:`erase`, returning the erased users' uids (their events go too, elsewhere)."""
        with self.writing() as con:
            found = self.uids_for(con, ext_ids)
            con.register("hit", found)
            con.execute("DELETE FROM ident WHERE uid IN (SELECT uid FROM hit)")
            self.bump_ident_generation(con)
            con.execute(
                """UPDATE users SET erased = true, personalized_ads = false, ext_id = NULL,
                   country = NULL, region = NULL, age = NULL, gender = NULL, language = NULL,
                   os = NULL, updated_at = now() WHERE uid IN (SELECT uid FROM hit)"""
            )
            self.write_excluded(con)
            _checkpoint(con)  # deleted rows leave the database file now
        known = set(found.column("ext_id").to_pylist())
        uids = [int(u) for u in found.column("uid").to_pylist()]
        return uids, [x for x in ext_ids if x not in known]

    def counts(self) -> dict[str, int]:
        with self.connect() as con:
            row = con.execute(
                """SELECT count(*) FILTER (WHERE NOT erased),
                          count(*) FILTER (WHERE NOT erased AND personalized_ads)
                   FROM users"""
            ).fetchone()
            idents = con.execute("SELECT kind, count(*) FROM ident GROUP BY kind").fetchall()
        assert row is not None
        out = {"users": int(row[0]), "users_reachable": int(row[1])}
        for kind, n in idents:
            out[f"keys_{IdKind(kind).name.lower()}"] = int(n)
        return out

    def uids_for(self, con: duckdb.DuckDBPyConnection, ext_ids: list[str]) -> pa.Table:
        con.register("q_ext", pa.table({"ext_id": pa.array(ext_ids, pa.string())}))
        try:
            return con.sql(
                "SELECT u.uid, u.ext_id FROM users u JOIN q_ext q USING (ext_id) WHERE NOT erased"
            ).to_arrow_table()
        finally:
            con.unregister("q_ext")


def _checkpoint(con: duckdb.DuckDBPyConnection, wait_seconds: float = 30.0) -> None:
    """``CHECKPOINT``, waiting for readers in this process (a lookalike build, the serving
    snapshot) to finish their transactions: DuckDB refuses it while another is open."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            con.execute("CHECKPOINT")
            return
        except duckdb.TransactionException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


NO_USERS = pa.table({"eid": pa.array([], pa.int64()), "uid": pa.array([], pa.uint32())})


def _found_keys(index: KeyIndex, keys: pa.Table) -> pa.Table:
    """``(eid, uid)`` of the ``keys(eid, k_hi, k_lo, kmask)`` some user holds."""
    uids = index.lookup(keys["k_hi"].to_numpy(), keys["k_lo"].to_numpy(), keys["kmask"].to_numpy())
    hit = uids != NO_USER
    return pa.table(
        {
            "eid": pa.array(keys["eid"].to_numpy()[hit], pa.int64()),
            "uid": pa.array(uids[hit], pa.uint32()),
        }
    )


def _first_per_event(found: pa.Table) -> pa.Table:
    """``found(eid, uid)`` reduced to the lowest uid of each eid."""
    if found.num_rows == 0:
        return NO_USERS
    eid = found["eid"].to_numpy()
    uid = found["uid"].to_numpy()
    order = np.lexsort((uid, eid))
    eid, uid = eid[order], uid[order]
    first = np.ones(len(eid), bool)
    first[1:] = eid[1:] != eid[:-1]
    return pa.table(
        {"eid": pa.array(eid[first], pa.int64()), "uid": pa.array(uid[first], pa.uint32())}
    )
