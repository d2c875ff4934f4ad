"""Benchmark: import N platform users (e-mail, phone, one device id each).

Baseline in the same run: DuckDB reading the same Parquet file and computing one SHA-256 per raw
identifier with no normalisation at all (the I/O + hashing floor). Likewise does more (normalise
every identifier, keep 9 keys per user, assign ids, persist), so the ratio says what that costs.

    python bench/users_import.py --users 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import work_dir
from likewise.sim import generate_users


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    work = work_dir()
    t0 = time.perf_counter()
    users = generate_users(args.users, seed=args.seed)
    path = work / "users.parquet"
    pq.write_table(users, path)
    print(f"generated {args.users:,} users in {time.perf_counter() - t0:.1f}s", flush=True)
    del users

    con = duckdb.connect(config={"threads": 2})
    t0 = time.perf_counter()
    con.execute(
        f"""SELECT count(sha256(email)), count(sha256(phone)), count(sha256(idfa)),
                   count(sha256(gaid)) FROM read_parquet('{path}')"""
    ).fetchall()
    floor = time.perf_counter() - t0
    con.close()

    # The import runs in its own process so its peak memory is its own.
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "likewise.cli", "users", "import", str(path)],
        env={**os.environ, "LIKEWISE_DATA_DIR": str(work / "data")},
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    summary = json.loads(result.stdout)
    keys = sum(summary["identifiers"].values())
    print(
        json.dumps(
            {
                "users": args.users,
                "import_seconds": round(elapsed, 2),
                "users_per_second": round(args.users / elapsed),
                "identifiers": summary["identifiers"],
                "peak_rss_gib": round(peak / 2**30, 2),
                "baseline_hash_floor_seconds": round(floor, 2),
                "ratio_to_floor": round(elapsed / floor, 2),
                "targets": {"seconds": 60, "gib": 4},
                "identifiers_total": keys,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
