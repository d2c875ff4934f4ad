"""The identity graph's keys in memory, for resolving events without scanning the graph.

Resolving a batch of events against the graph is a join with its ``ident`` table; DuckDB builds
a hash table of the batch and scans every key of the graph to probe it. At 10M users (63M keys)
that scan costs about a second of CPU however few events the batch holds, so a trickle of events
kept a core busy. This index holds the same rows (key, kind, user) bucketed by the key's
leading bits (:mod:`likewise.store._keys`): a lookup reads one bucket of a few entries.

Memory: 21 bytes a key (about 1.3 GB at 10M users with e-mail, phone and a device id each),
built in about 11 s at that size. An index is tied to the graph's ``ident_generation``, which
every change of ``ident`` increments once the change is made
(:meth:`PlatformGraph.bump_ident_generation`), and it reads the generation and the keys in one
transaction: an index never claims a generation whose keys it lacks, and an index of another
generation is never used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import duckdb
import numpy as np

from likewise.store import _keys

NO_USER = _keys.NO_USER
LOW_64 = (1 << 64) - 1
BUCKET_SIZE = 4  # keys per bucket on average: one or two cache lines to read per lookup
# One packed entry a key (as _keys.Entry): 21 bytes.
ENTRY = np.dtype([("hi", np.uint64), ("lo", np.uint64), ("uid", np.uint32), ("kind", np.uint8)])


@dataclass(frozen=True)
class KeyIndex:
    generation: int
    bits: int
    starts: np.ndarray  # uint32, 2**bits + 1: bucket b is rows starts[b]:starts[b + 1]
    keys: np.ndarray  # ENTRY: the key's first and last 64 bits, its user and kind (IdKind)

    @classmethod
    def build(
        cls, hi: np.ndarray, lo: np.ndarray, kind: np.ndarray, uid: np.ndarray, generation: int
    ) -> KeyIndex:
        """An index of these keys (columns of equal length)."""
        columns = [
            np.ascontiguousarray(hi, np.uint64),
            np.ascontiguousarray(lo, np.uint64),
            np.ascontiguousarray(kind, np.uint8),
            np.ascontiguousarray(uid, np.uint32),
        ]
        return cls._assemble(len(hi), lambda: [columns[0]], lambda: [columns], generation)

    @classmethod
    def load(
        cls, con: duckdb.DuckDBPyConnection, generation: int, *, batch_rows: int = 1 << 20
    ) -> KeyIndex:
        """Every key of the graph behind ``con``, which must be in a transaction (the keys are
        read twice, and must be the same keys). Read in batches, so the only full-size copy is
        the index itself."""
        rows = con.execute("SELECT count(*) FROM ident").fetchall()
        split = f"(k >> 64)::UBIGINT AS hi, (k & {LOW_64}::UHUGEINT)::UBIGINT AS lo"

        def batches(sql: str) -> Iterator[list[np.ndarray]]:
            for batch in con.sql(sql).to_arrow_reader(batch_rows):
                yield [np.ascontiguousarray(c.to_numpy()) for c in batch.columns]

        return cls._assemble(
            int(rows[0][0]),
            lambda: (b[0] for b in batches(f"SELECT {split} FROM ident")),
            lambda: batches(f"SELECT {split}, kind::UTINYINT, uid::UINTEGER FROM ident"),
            generation,
        )

    @classmethod
    def _assemble(
        cls,
        n: int,
        his: Callable[[], Iterable[np.ndarray]],
        columns: Callable[[], Iterable[list[np.ndarray]]],
        generation: int,
    ) -> KeyIndex:
        """A counting sort by the leading bits: one pass counts each bucket's keys, a second
        puts them in place (both may stream)."""
        bits = min(32, max(1, (n // BUCKET_SIZE).bit_length()))
        counts = np.zeros(1 << bits, np.uint32)
        for hi in his():
            _keys.count(hi, bits, counts)
        starts = np.zeros((1 << bits) + 1, np.uint32)
        np.cumsum(counts, out=starts[1:])
        if int(starts[-1]) != n:
            raise ValueError(f"counted {int(starts[-1])} keys, expected {n}")
        keys = np.empty(n, ENTRY)
        cursor = starts[:-1].copy()
        for hi, lo, kind, uid in columns():
            _keys.scatter(hi, lo, kind, uid, bits, starts, cursor, keys)
        if not np.array_equal(cursor, starts[1:]):
            raise ValueError("the keys changed while the index was built")
        return cls(generation, bits, starts, keys)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return int(self.starts.nbytes + self.keys.nbytes)

    def lookup(self, hi: np.ndarray, lo: np.ndarray, kmask: np.ndarray) -> np.ndarray:
        """For each query key: the lowest user holding it with a kind in ``kmask`` (bit
        ``1 << kind``), or :data:`NO_USER`."""
        out = np.empty(len(hi), np.uint32)
        _keys.lookup(
            self.keys,
            self.starts,
            self.bits,
            np.ascontiguousarray(hi, np.uint64),
            np.ascontiguousarray(lo, np.uint64),
            np.ascontiguousarray(kmask, np.uint8),
            out,
        )
        return out
