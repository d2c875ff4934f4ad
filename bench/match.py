"""Benchmark: customer-file match, from upload start to a valid audience.

N platform users are imported; an advertiser uploads an R-row file through the HTTP API of a
``likewise serve`` process and we time upload + create + polling ``get`` until ``is_valid``.
Two files: e-mails only (EMAIL_SHA256) and mixed (MULTIPLE_TYPES e-mail + phone), half the
values raw and half SHA-256 hashed, with the simulator's dirt.

Baselines in the same run, on the e-mail file:
  (a) hashlib SHA-256 alone over the pre-normalised strings, on 2 processes (the hashing floor);
  (b) a straightforward pandas + hashlib + dict implementation: read, normalise, hash, look up;
  (c) a hand-written DuckDB query that normalises, hashes (sha256) and hash-joins the e-mails.

    python bench/match.py --users 10000000 --rows 10000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PeakRSS, server, work_dir
from likewise.sim import generate_customer_file, generate_platform

EMAIL_RE = r"\+[^@]*@"


_STRINGS: list[bytes] = []  # inherited by the forked workers, so nothing is pickled


def _sha_slice(bounds: tuple[int, int]) -> int:
    sha256 = hashlib.sha256
    for v in _STRINGS[bounds[0] : bounds[1]]:
        sha256(v).digest()
    return bounds[1] - bounds[0]


def baseline_a(strings: list[bytes]) -> float:
    """Seconds for SHA-256 of every string on two processes (OpenSSL via hashlib)."""
    global _STRINGS
    _STRINGS = strings
    half = len(strings) // 2
    with multiprocessing.get_context("fork").Pool(2) as pool:
        t0 = time.perf_counter()
        pool.map(_sha_slice, [(0, half), (half, len(strings))])
        elapsed = time.perf_counter() - t0
    _STRINGS = []
    return elapsed


def normalise_pandas(s: pd.Series) -> pd.Series:
    s = s.str.strip().str.lower()
    local = s.str.split("@").str[0].str.replace(r"\+.*$", "", regex=True).str.replace(".", "")
    return local + "@" + s.str.split("@").str[1]


def baseline_b(file_path: Path, platform_index: dict[str, int]) -> tuple[float, int]:
    """pandas + hashlib + dict: read, normalise raw values, hash, look up; distinct users."""
    t0 = time.perf_counter()
    values = pd.read_csv(file_path, header=None, names=["v"], dtype=str)["v"].dropna()
    hashed = values.str.fullmatch(r"[0-9a-fA-F]{64}")
    raw = normalise_pandas(values[~hashed]).dropna()
    digests = [hashlib.sha256(x.encode()).hexdigest() for x in raw]
    keys = digests + values[hashed].str.lower().tolist()
    users = {platform_index[k] for k in keys if k in platform_index}
    return time.perf_counter() - t0, len(users)


def baseline_c(file_path: Path, platform: Path) -> tuple[float, int]:
    """DuckDB by hand: normalise, sha256 and hash-join the e-mails."""
    con = duckdb.connect(config={"threads": 2})
    con.execute(f"CREATE TABLE p AS SELECT * FROM read_parquet('{platform}')")
    t0 = time.perf_counter()
    n = con.execute(
        f"""WITH f AS (SELECT lower(trim(v)) AS v FROM read_csv('{file_path}', header = false,
                         columns = {{'v': 'VARCHAR'}}, quote = '', escape = '')),
            k AS (SELECT CASE WHEN regexp_full_match(v, '[0-9a-f]{{64}}') THEN v ELSE sha256(
                    replace(regexp_replace(split_part(v, '@', 1), '\\+.*$', ''), '.', '')
                    || '@' || split_part(v, '@', 2)) END AS h FROM f)
            SELECT count(DISTINCT p.uid) FROM k JOIN p ON p.h = k.h"""
    ).fetchone()
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed, int(n[0]) if n else 0


def timed_audience(
    url: str, token: str, advertiser: str, path: Path, kind: str, md5: str
) -> tuple[float, dict[str, object]]:
    headers = {"Access-Token": token}
    api = url + "/open_api/v1.3/dmp/custom_audience"
    t0 = time.perf_counter()
    with path.open("rb") as fh:
        up = httpx.post(
            api + "/file/upload/",
            headers=headers,
            timeout=600,
            data={"advertiser_id": advertiser, "calculate_type": kind, "file_signature": md5},
            files={"file": (path.name, fh, "text/csv")},
        ).json()
    assert up["code"] == 0, up
    t_upload = time.perf_counter() - t0
    created = httpx.post(
        api + "/create/",
        headers=headers,
        timeout=600,
        json={
            "advertiser_id": advertiser,
            "custom_audience_name": path.stem,
            "calculate_type": kind,
            "file_paths": [up["data"]["file_path"]],
        },
    ).json()
    assert created["code"] == 0, created
    aid = created["data"]["custom_audience_id"]
    while True:
        got = httpx.get(
            api + "/get/",
            headers=headers,
            timeout=600,
            params={"advertiser_id": advertiser, "custom_audience_ids": json.dumps([aid])},
        ).json()
        details = got["data"]["list"][0]["audience_details"]
        if details["status"] != "CALCULATING":
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    return elapsed, {"upload_seconds": round(t_upload, 2), "details": details}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    work = work_dir()
    t0 = time.perf_counter()
    sim = generate_platform(args.users, seed=args.seed)
    users_file = work / "users.parquet"
    pq.write_table(sim.users, users_file)
    email_file = generate_customer_file(
        sim.users, n_rows=args.rows, seed=args.seed + 1, kind="EMAIL_SHA256", truth=sim.truth
    )
    mixed_file = generate_customer_file(
        sim.users,
        n_rows=args.rows,
        seed=args.seed + 2,
        kind="MULTIPLE_TYPES",
        columns=["email", "phone"],
        truth=sim.truth,
    )
    email_path = email_file.write(work / "emails.csv")
    mixed_path = mixed_file.write(work / "mixed.csv")
    print(f"generated in {time.perf_counter() - t0:.0f}s", flush=True)

    # Platform side for the baselines: customer-file-normalised e-mail hash -> row index.
    con = duckdb.connect(config={"threads": 2})
    con.register("t", pa.table({"e": sim.truth.column("email_norm")}))
    platform = work / "platform_emails.parquet"
    con.execute(f"""COPY (SELECT sha256(e) AS h, (row_number() OVER () - 1)::UINTEGER AS uid
                   FROM t WHERE e IS NOT NULL) TO '{platform}' (FORMAT parquet)""")
    index = {h: int(u) for h, u in con.execute(f"SELECT h, uid FROM '{platform}'").fetchall()}
    basic_plus = con.execute(
        f"""SELECT lower(trim(v)) FROM read_csv('{email_path}', header = false,
            columns = {{'v': 'VARCHAR'}}, quote = '', escape = '')"""
    ).fetchall()
    con.close()
    strings = [v.encode() for (v,) in basic_plus if v is not None]

    results: dict[str, object] = {"users": args.users, "rows": args.rows}
    a_time = max(baseline_a(strings), 1e-9)  # rates use unrounded times
    results["a_sha256_floor_seconds"] = round(a_time, 2)
    results["a_hashes_per_second"] = round(len(strings) / a_time)
    del strings
    b_time, b_users = baseline_b(email_path, index)
    del index
    c_time, c_users = baseline_c(email_path, platform)
    results.update(b_pandas_seconds=round(b_time, 2), c_duckdb_seconds=round(c_time, 2))

    subprocess_env = {"LIKEWISE_MIN_AUDIENCE_SIZE": "1000"}
    data = work / "data"
    from likewise.ingest.users import import_users
    from likewise.store.graph import PlatformGraph

    import_users(PlatformGraph(data / "platform.duckdb"), users_file)
    with server(data, **subprocess_env) as (url, proc), PeakRSS(proc.pid) as mem:
        admin = httpx.post(
            url + "/admin/v1/advertisers",
            headers={"X-Admin-Token": "bench"},
            json={"name": "bench"},
        ).json()["data"]
        adv, token = admin["advertiser_id"], admin["access_token"]
        email_time = 0.0
        for label, path, cf in (
            ("email", email_path, email_file),
            ("mixed", mixed_path, mixed_file),
        ):
            mem.reset()
            elapsed, info = timed_audience(url, token, adv, path, cf.calculate_type, cf.md5())
            details = info["details"]
            assert isinstance(details, dict)
            if label == "email":
                email_time = elapsed
            results[f"likewise_{label}_seconds"] = round(elapsed, 2)
            results[f"likewise_{label}_upload_seconds"] = info["upload_seconds"]
            results[f"likewise_{label}_rows_per_second"] = round(args.rows / elapsed)
            results[f"likewise_{label}_peak_rss_gib"] = round(mem.peak / 2**30, 2)
            results[f"likewise_{label}_cover_num"] = details["cover_num"]
            results[f"expected_{label}_cover_num"] = cf.expected_cover_num
    results["speedup_vs_b"] = round(b_time / email_time, 2)
    results["ratio_to_c"] = round(email_time / max(c_time, 1e-9), 2)
    results["baseline_users_matched"] = {"b": b_users, "c": c_users}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
