"""Membership serving: in-process checks per second and HTTP latency of "eligible ad groups for
user U", with 10M users, 10,000 audiences and 1,000 active ad groups.

Setup (not measured): the platform's users are written straight into the graph's ``users``
table (DuckDB), audiences are made with the real audience service (``Audiences.new_audience``,
``new_version``: bitmaps on disk) for 50 advertisers, and ad groups with the real ad group
service (``AdGroups.create``: targeting, included and excluded audiences, usability checks).

Measured:

1. loading everything into :class:`~likewise.targeting.serving.MembershipServer` and building
   its per-user index (time, memory of all memberships: the bitmaps' and the index's size, and
   the process's RSS growth);
2. in-process: ``contains(audience, uid)`` per second (baselines: bare pyroaring lookups of the
   same pairs, and the issue's yardstick, lookups in one bitmap over and over),
   ``eligible_ad_groups(uid)`` per second (baseline in the same run: the same logic over Python
   sets, for the audiences the ad groups use; sets of all 10,000 audiences would not fit in
   memory), ``audiences_of(uid)`` per second (baseline: a lookup in every bitmap);
3. HTTP: ``GET /admin/v1/serving/adgroups?uid=`` p50 / p99 on a real ``likewise serve``;
   baseline in the same run: a bare endpoint of the same framework and server
   (``bench/bare_app.py``), the floor any endpoint pays, measured in alternating blocks of
   1,000 requests with Likewise so that both see the same machine.

Targets (issue 6): >= 1M in-process checks/s, HTTP p99 <= 3 ms, memberships <= 4 GB.

    python bench/serving.py                       # 10M users, 10,000 audiences, 1,000 groups
    python bench/serving.py --users 200000 --audiences 300 --ad-groups 50 --requests 500
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from pyroaring import BitMap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bare_server, server, work_dir
from likewise.domain.audience import Source, Status
from likewise.domain.locations import location_of_country
from likewise.runtime import Runtime
from likewise.settings import Settings
from likewise.targeting.serving import Users

COUNTRIES = ["US", "GB", "DE", "FR", "BR", "IN", "JP"]
ADVERTISERS = 50
MIN_SIZE = 1000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_users(data: Path, n: int) -> None:
    """The graph's users table, straight through DuckDB (demographics drawn from hashes)."""
    import duckdb

    from likewise.store.graph import SCHEMA, PlatformGraph

    path = data / "platform.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    countries = "[" + ", ".join(f"'{c}'" for c in COUNTRIES) + "]"
    con.execute(
        f"""INSERT INTO users
        SELECT range::UINTEGER, 'u' || lpad(range::VARCHAR, 9, '0'),
               {countries}[1 + (hash(range) % 7)::INTEGER], NULL,
               (13 + hash(range * 3) % 50)::USMALLINT,
               ['female', 'male', 'unknown'][1 + (hash(range * 5) % 3)::INTEGER], 'en',
               ['ios', 'android'][1 + (hash(range * 7) % 2)::INTEGER],
               hash(range * 11) % 100 >= 3, false, now()
        FROM range({n})"""
    )
    graph = PlatformGraph(path)
    graph.write_excluded(con)
    con.close()


def make_audiences(rt: Runtime, n_users: int, n_audiences: int, seed: int) -> dict[int, list[int]]:
    """Audiences per advertiser; sizes log-normal (median ~20,000, a few near a million)."""
    rng = np.random.default_rng(seed)
    now = datetime.now()
    out: dict[int, list[int]] = {}
    count = max(1, min(ADVERTISERS, n_audiences // 6))  # each with a pool of 6 or more
    advertisers = [rt.tenants.create_advertiser(name=f"adv {i}", now=now).id for i in range(count)]
    sizes = np.clip(rng.lognormal(np.log(20_000), 1.2, n_audiences), 2 * MIN_SIZE, n_users // 10)
    for i, size in enumerate(sizes.astype(int)):
        adv = advertisers[i % count]
        members = BitMap(rng.integers(0, n_users, size, dtype=np.int64).astype(np.uint32))
        with rt.db.session() as s:
            a = rt.audiences.new_audience(
                s, advertiser_id=adv, name=f"a{i}", source=Source.SEGMENT, status=Status.READY
            )
            rt.audiences.new_version(s, a, members)
            out.setdefault(adv, []).append(a.id)
    return out


def make_ad_groups(rt: Runtime, audiences: dict[int, list[int]], n: int, seed: int) -> None:
    """Ad groups use a pool of each advertiser's first audiences (retargeting audiences are
    few and popular): one or two included, sometimes one excluded; targeting varies."""
    rng = np.random.default_rng(seed + 1)
    advertisers = sorted(audiences)
    for i in range(n):
        adv = advertisers[i % len(advertisers)]
        pool = audiences[adv][:6]
        picks = [int(x) for x in rng.choice(pool, 3, replace=False)]
        body: dict[str, Any] = {"adgroup_name": f"g{i}", "audience_ids": picks[: 1 + i % 2]}
        if i % 3 == 0:
            body["excluded_audience_ids"] = picks[2:]
        if i % 2 == 0:
            chosen = rng.choice(COUNTRIES, 1 + i % 3, replace=False)
            body["location_ids"] = [location_of_country(c).location_id for c in chosen]  # type: ignore[union-attr]
        if i % 5 == 0:
            body["operating_systems"] = ["IOS" if i % 10 else "ANDROID"]
        if i % 7 == 0:
            body["age_groups"] = ["AGE_18_24", "AGE_25_34"]
        rt.ad_groups.create(advertiser_id=adv, body=body)


def python_sets_baseline(rt: Runtime, uids: np.ndarray, checks: int) -> dict[str, Any]:
    """The same two questions over Python sets (and dicts of attribute values)."""
    snap = rt.serving.snapshot
    used = sorted({a for g in snap.ad_groups for a in (*g.included, *g.excluded)})
    t0 = time.perf_counter()
    sets = {a: set(snap.members[a]) for a in used}
    excluded = set(snap.excluded)
    build = time.perf_counter() - t0
    users = snap.users
    country = users.country.tolist()
    os_ = users.os.tolist()
    age = users.age.tolist()
    gender = users.gender.tolist()
    groups = []
    for g in snap.ad_groups:
        t = g.targeting
        groups.append(
            (
                g.id,
                {users.countries[c] for c in t.countries if c in users.countries} or None,
                {users.os_labels.get(o, -1) for o in t.operating_systems} or None,
                None,  # ages: compared as codes below
                [sets[a] for a in g.included],
                [sets[a] for a in g.excluded],
            )
        )

    def eligible(uid: int) -> list[int]:
        out = []
        outside = uid in excluded
        c, o = country[uid], os_[uid]
        for gid, cs, oss, _, inc, exc in groups:
            if cs is not None and c not in cs:
                continue
            if oss is not None and o not in oss:
                continue
            if outside:
                if inc:
                    continue
            else:
                if any(uid in s for s in exc):
                    continue
                if inc and not any(uid in s for s in inc):
                    continue
            out.append(gid)
        return out

    del age, gender

    def contains(a: int, u: int) -> bool:
        members = sets.get(a)
        return members is not None and u in members and u not in excluded

    pairs_a = np.array(used)[np.arange(checks) % len(used)]
    pairs_u = uids[np.arange(checks) % len(uids)].tolist()
    t0 = time.perf_counter()
    hits = 0
    for a, u in zip(pairs_a.tolist(), pairs_u, strict=True):
        hits += contains(a, u)
    contains_s = time.perf_counter() - t0
    n_elig = min(len(uids), 20_000)
    t0 = time.perf_counter()
    for u in uids[:n_elig].tolist():
        eligible(u)
    elig_s = time.perf_counter() - t0
    return {
        "audiences_as_sets": len(used),
        "build_seconds": round(build, 2),
        "contains_per_second": round(checks / contains_s),
        "eligible_per_second": round(n_elig / elig_s),
        "hits": hits,
    }


def in_process(rt: Runtime, n_users: int, checks: int, seed: int) -> dict[str, Any]:
    serving = rt.serving
    snap = serving.snapshot
    rng = np.random.default_rng(seed + 2)
    uids = rng.integers(0, n_users, max(checks, 20_000)).astype(np.int64)
    used = sorted({a for g in snap.ad_groups for a in (*g.included, *g.excluded)})
    every = sorted(snap.members)
    out: dict[str, Any] = {}
    for label, pool in (("ad_group_audiences", used), ("all_audiences", every)):
        pa = np.array(pool)[rng.integers(0, len(pool), checks)].tolist()
        pu = uids[:checks].tolist()
        contains = serving.contains
        t0 = time.perf_counter()
        hits = 0
        for a, u in zip(pa, pu, strict=True):
            hits += contains(a, u)
        out[f"contains_per_second_{label}"] = round(checks / (time.perf_counter() - t0))
        # The floor: the same pairs as bare pyroaring lookups (no consent, no validity).
        bitmaps = snap.members
        t0 = time.perf_counter()
        for a, u in zip(pa, pu, strict=True):
            hits += u in bitmaps[a]
        out[f"raw_bitmap_lookups_per_second_{label}"] = round(checks / (time.perf_counter() - t0))
    # The yardstick: one roaring bitmap, looked up from Python over and over (it stays
    # in the CPU cache); "about 8M/s" where the target of 1M checks/s was set.
    largest = max(used, key=lambda a: len(snap.members[a]))
    one = snap.members[largest]
    pu = uids[:checks].tolist()
    t0 = time.perf_counter()
    for u in pu:
        hits += u in one
    out["single_bitmap_lookups_per_second"] = round(checks / (time.perf_counter() - t0))
    n_elig = min(len(uids), 20_000)
    some = uids[:n_elig].tolist()
    out["eligible_per_second"], out["mean_eligible_ad_groups"] = _per_user(
        serving.eligible_ad_groups, some
    )
    out["audiences_of_per_second"], out["mean_audiences_of"] = _per_user(serving.audiences_of, some)
    # Its baseline: a lookup in every usable audience's bitmap (what serving does without
    # the per-user index).
    usable = sorted(snap.usable)
    n_scan = min(n_elig, 300)
    t0 = time.perf_counter()
    for u in uids[:n_scan].tolist():
        [a for a in usable if u in bitmaps[a] and u not in snap.excluded]
    out["audiences_of_over_bitmaps_per_second"] = round(n_scan / (time.perf_counter() - t0))
    # Batch form: one audience against many users at once.
    batch = uids[:100_000].tolist()
    t0 = time.perf_counter()
    serving.contains_many(used[0], batch)
    out["contains_many_per_second"] = round(len(batch) / (time.perf_counter() - t0))
    out["baseline_python_sets"] = python_sets_baseline(rt, uids, checks)
    base = out["baseline_python_sets"]
    out["ratio_contains_vs_sets"] = round(
        out["contains_per_second_ad_group_audiences"] / base["contains_per_second"], 2
    )
    out["ratio_contains_vs_raw_lookup_all_audiences"] = round(
        out["contains_per_second_all_audiences"]
        / out["raw_bitmap_lookups_per_second_all_audiences"],
        2,
    )
    out["ratio_contains_all_audiences_vs_single_bitmap"] = round(
        out["contains_per_second_all_audiences"] / out["single_bitmap_lookups_per_second"], 3
    )
    out["ratio_eligible_vs_sets"] = round(
        out["eligible_per_second"] / base["eligible_per_second"], 2
    )
    out["ratio_audiences_of_vs_bitmaps"] = round(
        out["audiences_of_per_second"] / out["audiences_of_over_bitmaps_per_second"], 1
    )
    return out


def _per_user(answer: Callable[[int], list[int]], uids: list[int]) -> tuple[int, float]:
    """Calls per second of ``answer`` over ``uids``, and its mean answer length."""
    t0 = time.perf_counter()
    total = 0
    for u in uids:
        total += len(answer(u))
    return round(len(uids) / (time.perf_counter() - t0)), round(total / len(uids), 1)


def latencies(targets: dict[str, str], path: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p99 of each target (name -> base URL), measured in alternating blocks of requests so
    that the machine's slow phases (frequent here) fall on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    clients = {
        name: httpx.Client(base_url=url, timeout=10, headers={"X-Admin-Token": "bench"})
        for name, url in targets.items()
    }
    try:
        for http in clients.values():
            for p in params[:200]:  # warm up
                http.get(path, params=p)
        for start in range(0, len(params), 1000):
            for name, http in clients.items():
                for p in params[start : start + 1000]:
                    t0 = time.perf_counter()
                    r = http.get(path, params=p)
                    times[name].append(time.perf_counter() - t0)
                    assert r.status_code == 200 and r.json()["code"] == 0, r.text
    finally:
        for http in clients.values():
            http.close()
    out: dict[str, Any] = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {
            "p50_ms": round(1000 * statistics.median(ts), 3),
            "p99_ms": round(1000 * ts[int(0.99 * (len(ts) - 1))], 3),
            "requests": len(ts),
        }
    return out


def http(data: Path, n_users: int, requests: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed + 3)
    params = [{"uid": int(u)} for u in rng.integers(0, n_users, requests)]
    env = {"LIKEWISE_MIN_AUDIENCE_SIZE": str(MIN_SIZE), "LIKEWISE_EVENT_WORKER": "false"}
    with server(data, **env) as (url, _proc):
        # Serving has loaded, and built its per-user index over every audience.
        deadline = time.monotonic() + 900
        while True:
            got = httpx.get(
                url + "/admin/v1/serving/status", headers={"X-Admin-Token": "bench"}, timeout=30
            ).json()
            assert got["code"] == 0, got
            index = got["data"]["index"]
            if got["data"]["audiences"] and index["built"] and not index["stale_audiences"]:
                break
            assert time.monotonic() < deadline, "serving did not load"
            time.sleep(0.5)
        base_url, bare = bare_server()
        try:
            got = latencies(
                {"serving": url, "baseline_bare_endpoint": base_url},
                "/admin/v1/serving/adgroups",
                params,
            )
        finally:
            bare.terminate()
            bare.wait(10)
    serving, floor = got["serving"], got["baseline_bare_endpoint"]
    return {
        "serving": serving,
        "baseline_bare_endpoint": floor,
        "ratio_p99_vs_bare": round(serving["p99_ms"] / floor["p99_ms"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--audiences", type=int, default=10_000)
    ap.add_argument("--ad-groups", type=int, default=1_000)
    ap.add_argument("--checks", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument(
        "--reuse-data",
        action="store_true",
        help="the data directory holds a previous run's setup: measure only",
    )
    args = ap.parse_args()
    data = args.data_dir or work_dir() / "data"
    data.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data, min_audience_size=MIN_SIZE, event_worker=False)
    result: dict[str, Any] = {
        "users": args.users,
        "audiences": args.audiences,
        "ad_groups": args.ad_groups,
    }

    t0 = time.perf_counter()
    if args.reuse_data and (data / "platform.duckdb").exists():
        rt = Runtime(settings)
    else:
        write_users(data, args.users)
        rt = Runtime(settings)
        audiences = make_audiences(rt, args.users, args.audiences, args.seed)
        make_ad_groups(rt, audiences, args.ad_groups, args.seed)
    result["setup_seconds"] = round(time.perf_counter() - t0, 1)
    log(f"setup: {result['setup_seconds']} s")

    proc = psutil.Process()
    before = proc.memory_info().rss
    t0 = time.perf_counter()
    rt.serving.reload()
    result["load_seconds"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    index = rt.serving.build_index()
    result["index_seconds"] = round(time.perf_counter() - t0, 1)
    snap = rt.serving.snapshot
    assert len(snap.view.current) == len(snap.members)
    bitmap_bytes = sum(_bitmap_bytes(b) for b in snap.members.values())
    members = sum(len(b) for b in snap.members.values())
    result["memberships"] = {
        "members": members,
        "bitmap_bytes": bitmap_bytes,
        "bitmap_gib": round(bitmap_bytes / 2**30, 3),
        "user_index_gib": round(index.nbytes / 2**30, 3),
        "user_index_row_width": index.width,
        "user_index_overflow_users": len(index.overflow),
        "all_gib": round((bitmap_bytes + index.nbytes) / 2**30, 3),
        "rss_growth_gib": round((proc.memory_info().rss - before) / 2**30, 3),
        "users_index_mib": round(_users_bytes(snap.users) / 2**20, 1),
    }
    log(f"loaded in {result['load_seconds']} s: {json.dumps(result['memberships'])}")
    result["in_process"] = in_process(rt, args.users, args.checks, args.seed)
    log(json.dumps(result["in_process"]))
    rt.close()
    result["http"] = http(data, args.users, args.requests, args.seed)
    memory = result["memberships"]["rss_growth_gib"] * 2**30
    checks = result["in_process"]["contains_per_second_all_audiences"]
    p99 = result["http"]["serving"]["p99_ms"]
    result["targets"] = {  # as issue 6 states them
        "checks_per_second>=1M": checks >= 1_000_000,
        "http_p99<=3ms": p99 <= 3.0,
        "memberships<=4GB": memory <= 4e9,
    }
    # A stricter reading of the check target, scaled by this machine's speed at the time: 1M/s
    # where one bitmap's lookups ran at 8M/s, so at least an eighth of them. (That yardstick
    # never leaves the CPU cache; a random check cannot stay in it.)
    scaled = result["in_process"]["ratio_contains_all_audiences_vs_single_bitmap"]
    result["stricter_reading"] = {"checks>=1/8_of_single_bitmap_lookups": scaled >= 1 / 8}
    print(json.dumps(result, indent=2))


def _bitmap_bytes(b: BitMap) -> int:
    """The containers' bytes (what the bitmap holds in memory, without small overheads)."""
    st = b.get_statistics()
    return int(
        st["n_bytes_array_containers"]
        + st["n_bytes_run_containers"]
        + st["n_bytes_bitset_containers"]
    )


def _users_bytes(users: Users) -> int:
    return sum(
        a.nbytes
        for a in (users.country, users.os, users.age, users.gender, users.id_hash, users.id_uid)
    )


if __name__ == "__main__":
    main()
