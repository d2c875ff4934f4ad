"""The identity graph's keys in memory, for resolving events without scanning the graph.

Resolving a batch of events against the graph is a join with its ``ident`` table; DuckDB builds
a hash table of the batch and scans every key of the graph to probe it. At 10M users (63M keys)
that scan costs about a second of CPU however few events the batch holds, so a trickle of events
kept a core busy. This index holds the same rows (key, kind, user) bucketed by the key's
leading bits (:mod:`likewise.store._keys`): a lookup reads one bucket of a few entries.

Memory: 21 bytes a key (about 1.3 GB at 10M users with e-mail, phone and a device id each),
built in a few seconds. An index is tied to the graph's ``ident_generation``, which every change
of ``ident`` increments in the same transaction (:meth:`PlatformGraph.bump_ident_generation`):
an index of another generation is never used.
"""

from __future__ import annotations

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
        n = len(hi)
        bits = min(32, max(1, (n // BUCKET_SIZE).bit_length()))
        starts = np.empty((1 << bits) + 1, np.uint32)
        keys = np.empty(n, ENTRY)
        _keys.bucketize(
            np.ascontiguousarray(hi, np.uint64),
            np.ascontiguousarray(lo, np.uint64),
            np.ascontiguousarray(kind, np.uint8),
            np.ascontiguousarray(uid, np.uint32),
            bits,
            starts,
            keys,
        )
        return cls(generation, bits, starts, keys)

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, generation: int) -> KeyIndex:
        """Every key of the graph behind ``con`` (read in one statement: one snapshot)."""
        got = con.execute(
            f"""SELECT (k >> 64)::UBIGINT AS hi, (k & {LOW_64}::UHUGEINT)::UBIGINT AS lo,
                       kind, uid FROM ident"""
        ).fetchnumpy()
        # fetchnumpy gives numpy-owned copies: nothing points into the connection's memory.
        return cls.build(got["hi"], got["lo"], got["kind"], got["uid"], generation)

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
