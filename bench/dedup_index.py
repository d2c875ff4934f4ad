"""Benchmark: one pass's dedup lookup against 48 hours of keys, with the in-memory key index
(``likewise.ingest.dedup``) and, in the same run, the full scan it replaced (a join of the pass's
keys with all of ``seen``, by the key's texts as ``seen`` held them then), on an in-memory
``seen`` of N random (md5) event ids. Also: converting such a table of texts to the hashed
layout (once, at upgrade) and loading the index from it (at every start).

    python bench/dedup_index.py --keys 20000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from likewise.ingest.dedup import SeenKeys, dedup, upgrade_seen
from likewise.ingest.processor import SCHEMA
from likewise.store.events import STATE_SCHEMA

# What every pass ran before the index: the pass's keys joined with all of seen (then keyed by
# the texts).
FULL_SCAN = """
SELECT k.n, s.eid FROM keyed k JOIN seen_texts s USING (source_id, event, event_id)
"""
SEEN_TEXTS = """
CREATE TABLE seen_texts (
  source_id BIGINT NOT NULL, event VARCHAR NOT NULL, event_id VARCHAR NOT NULL,
  eid BIGINT NOT NULL, channel VARCHAR NOT NULL, received_at DOUBLE NOT NULL)
"""


def batch(ids: list[str], now: float) -> pa.Table:
    n = len(ids)
    columns = {
        f.name: pa.array([[]] * n, f.type) if pa.types.is_list(f.type) else pa.nulls(n, f.type)
        for f in SCHEMA
    }
    columns.update(
        source_id=pa.array([7] * n, pa.int64()),
        advertiser_id=pa.array([1] * n, pa.int64()),
        channel=pa.array(["web"] * n),
        event=pa.array(["Purchase"] * n),
        event_time=pa.array([now] * n, pa.float64()),
        received_at=pa.array([now] * n, pa.float64()),
        event_id=pa.array(ids),
        test=pa.array([False] * n),
    )
    return pa.table(columns, schema=SCHEMA)


def best_ms(run: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000, help="keys in seen")
    ap.add_argument("--pass-size", type=int, default=600, help="events in the pass")
    args = ap.parse_args()
    n = args.keys
    con = duckdb.connect()
    con.execute(SEEN_TEXTS)
    for start in range(0, n, 1_000_000):
        con.execute(
            """INSERT INTO seen_texts
            SELECT 7, 'Purchase', md5(r::VARCHAR), r, 'web', 1e9 + r * 0.001
            FROM range(?, ?) t(r)""",
            [start, min(n, start + 1_000_000)],
        )
    con.execute("CREATE TABLE seen AS SELECT * FROM seen_texts")  # a state database of before
    t0 = time.perf_counter()
    upgrade_seen(con)
    results: dict[str, object] = {"keys": n, "upgrade_seconds": round(time.perf_counter() - t0, 2)}
    con.execute(STATE_SCHEMA)  # the other tables
    t0 = time.perf_counter()
    keys = SeenKeys.load(con)
    results["load_seconds"] = round(time.perf_counter() - t0, 2)
    now = 1e9 + n * 0.001 + 1
    # New ids look like the stored ones (md5 hex): DuckDB's join filters cannot rule them out.
    fresh = [hashlib.md5(str(n + i).encode()).hexdigest() for i in range(args.pass_size)]
    cases = {
        "new_keys": fresh,
        "one_recent_repeat": [*fresh[1:], hashlib.md5(str(n - 5).encode()).hexdigest()],
        "one_oldest_repeat": [*fresh[1:], hashlib.md5(b"0").hexdigest()],
    }
    for name, ids in cases.items():
        events = batch(ids, now)
        out, *_ = dedup(con, events, 1, keys)
        assert int(out["dropped"].to_numpy().sum()) == (name != "new_keys")
        indexed = best_ms(lambda events=events: dedup(con, events, 1, keys))
        keyed = events.select(["source_id", "event", "event_id"]).append_column(
            "n", pa.array(range(len(ids)), pa.int64())
        )
        con.register("keyed", keyed)
        scan = best_ms(lambda: con.execute(FULL_SCAN).fetchall())
        con.unregister("keyed")
        speedup = round(scan / indexed, 1)
        results[name] = {"index_ms": indexed, "full_scan_ms": scan, "speedup": speedup}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
