"""Benchmark: a BROAD lookalike of a 100,000-member seed among 10M simulated platform users.

Setup (timed and printed, not the measured part), in a process of its own, writes a data
directory the way a running Likewise would have it:

* N users (``likewise.sim.generate_users``) in the platform graph's ``users`` table (uid = row),
  and the excluded-users bitmap (opted out of personalised ads);
* 90 days of simulated activity (``simulate_activity``, one fashion shop with a pixel, organic
  engagement at ``--organic``), a chunk of users at a time, split at day 60 into past and future.
  The past's platform engagement becomes the event columns the feature feed reads and goes
  through ``likewise.ingest.features.feature_rows`` into ``FeatureStore.append``, then one
  ``merge()``: the features are ready. The columns are derived from the simulator's streams as
  ``likewise.sim.bodies.engagement_bodies`` and the engagement intake would
  (``tests/test_bench_smoke.py`` checks they give the same feature rows as the real bodies);
* the seed: ``--seed-size`` past purchasers who allow personalised ads (a seeded sample).
  Creators are the same people in every chunk (one creator catalogue for the platform).

Measured, in a fresh process (its peak RSS, ``ru_maxrss`` read right after the build, is its
own): ``build_features`` (the snapshot: TF-IDF, SVD embedding, demographics) then
``build_lookalike`` (BROAD share, every country present, all OS), as a lookalike job runs them.

Quality, in the same process after the measured part: every model fitted on the whole seed
(``likewise.lookalike.models``, ``np.random.default_rng(0)``) and a seeded random ranking rank
the candidates (eligible users outside the seed); lift at 1 %, 5 % and 10 % of them is the
recall of the future purchasers (bought in the last 30 days, not in the first 60) over that
share. Baselines in the same run: random, demographics only, centroid only.

    python bench/lookalike.py --users 10000000 --seed-size 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import BitMap
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import work_dir
from likewise.domain.lookalike import MobileOS
from likewise.ingest.features import WEIGHTS, feature_rows
from likewise.lookalike import build as lookalike_build
from likewise.lookalike import features as lookalike_features
from likewise.lookalike.build import build_lookalike, eligible_users
from likewise.lookalike.features import UserFeatures, build_features
from likewise.lookalike.models import LinearScorer, centroid, ensemble, pu_classifier
from likewise.settings import Settings
from likewise.sim import (
    CATEGORIES,
    ENGAGEMENT_EVENTS,
    SimActivity,
    SimAdvertiser,
    generate_users,
    simulate_activity,
)
from likewise.sim import behaviour as sim_behaviour
from likewise.store.features import FeatureStore
from likewise.store.graph import PlatformGraph

SETUP_VERSION = 1  # bump when the generated data changes, so kept data directories are rebuilt
DAY = 86_400
START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
DAYS = 90
PAST_DAYS = 60  # the past (features, seed) and the future (who the lookalike should find)
ADVERTISER = SimAdvertiser(id="1001", category="fashion", pixel_code="P1001", shop=False)
BROAD = float(Settings.model_fields["lookalike_broad_share"].default)  # type: ignore[arg-type]
CUTS = (0.01, 0.05, 0.10)
TARGET_SECONDS = 300
TARGET_BYTES = 8 * 10**9  # 8 GB
AUC_NEGATIVES = 200_000
STANDARDISE_SAMPLE = 100_000


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def peak_rss() -> int:
    """This process's resident-memory high-water mark, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- setup --------------------------------------------------------------------------------------


def engagement_events(act: SimActivity, offset: int) -> pa.Table:
    """The stored event columns ``feature_rows`` reads, for the activity's platform engagement
    of the kinds it weighs (``uid`` = ``offset`` + the user's row): ``creator_id``,
    ``account_id`` and ``category`` as ``likewise.sim.bodies.engagement_bodies`` puts them on
    the wire, ``watched_percent`` as the engagement intake computes it."""
    codes = [ENGAGEMENT_EVENTS.index(e) for e in WEIGHTS]
    c = act.engagement.cols
    keep = np.flatnonzero(np.isin(c["code"], codes))
    adv, ad, creator = c["adv"][keep], c["ad"][keep], c["creator"][keep]
    video, account, category = c["video"][keep], c["account"][keep], c["category"][keep]
    has_adv, has_creator = adv >= 0, creator >= 0
    # A post of the advertiser's own account: its creator is the account.
    post = has_adv & (ad < 0) & ~has_creator & (video >= 0)

    def pick(names: list[str], index: np.ndarray, valid: np.ndarray) -> pa.Array:
        table = pa.array(names or [""], pa.string())
        return table.take(pa.array(np.where(valid, index, 0), mask=~valid))

    accounts = [a.account for a in act.advertisers]
    creators = [f"creator-{i:04d}" for i in range(int(creator.max(initial=-1)) + 1)]
    creator_id = pc.coalesce(pick(creators, creator, has_creator), pick(accounts, adv, post))
    account_id = pc.coalesce(
        pick(accounts, adv, has_adv & (account == 1)),
        pick(creators, creator, has_creator & (account == 2)),
    )
    watched, duration = c["watched"][keep], c["duration"][keep]
    played = ~np.isnan(watched)
    percent = np.minimum(
        100.0, 100.0 * np.where(played, watched, 0) / np.where(played, duration, 1)
    )
    return pa.table(
        {
            "uid": pa.array((c["user"][keep] + offset).astype(np.uint32)),
            "channel": pa.array(["engagement"]).take(pa.array(np.zeros(len(keep), np.int32))),
            "event": pa.array(ENGAGEMENT_EVENTS).take(pa.array(c["code"][keep].astype(np.int32))),
            "event_time": pa.array(c["t"][keep].astype(np.float64)),
            "watched_percent": pa.array(percent, mask=~played),
            "category": pick(list(CATEGORIES), category, category >= 0),
            "creator_id": creator_id,
            "account_id": account_id,
        }
    )


@contextmanager
def shared_creators(seed: int) -> Iterator[None]:
    """One creator catalogue for every chunk: the simulator draws creators' categories from the
    activity's seed, and each chunk has its own seed."""
    original = sim_behaviour._creators
    with mock.patch.object(sim_behaviour, "_creators", lambda _seed: original(seed)):
        yield


def simulate_chunk(
    users: pa.Table, offset: int, seed: int, args: argparse.Namespace
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Feature rows of the chunk's past, its past and its future purchasers (global uids)."""
    end = START + DAYS * DAY
    with shared_creators(args.seed):
        act = simulate_activity(
            users,
            [ADVERTISER],
            start=START,
            end=end,
            seed=seed,
            scale=args.scale,
            organic=args.organic,
            retention_days=None,
        )
    past, future = act.split(START + PAST_DAYS * DAY)
    del act
    bought = past.purchasers(ADVERTISER.id) + offset
    will_buy = future.purchasers(ADVERTISER.id) + offset
    del future
    rows = feature_rows(engagement_events(past, offset))
    return rows, bought, will_buy


def write_graph(graph: PlatformGraph, users: pa.Table) -> None:
    """The platform's users table (uid = row), as ``likewise users import`` normalises it."""
    n = users.num_rows
    table = pa.table(
        {
            "uid": pa.array(np.arange(n, dtype=np.uint32)),
            **{
                c: users.column(c)
                for c in ("user_id", "country", "region", "age", "gender", "language", "os")
            },
            "personalized_ads": users.column("personalized_ads"),
        }
    )
    with graph.writing() as con:
        con.register("incoming", table)
        con.execute(
            """INSERT INTO users
            SELECT uid, trim(user_id), upper(trim(country)), nullif(trim(region), ''),
                   age::USMALLINT, lower(trim(gender)), lower(trim(language)), lower(trim(os)),
                   coalesce(personalized_ads, true), false, now()
            FROM incoming"""
        )
        con.unregister("incoming")
        graph.write_excluded(con)


def setup(args: argparse.Namespace) -> dict[str, Any]:
    data: Path = args.data_dir
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    users = generate_users(args.users, seed=args.seed)
    times["generate_users"] = time.perf_counter() - t0
    log(f"setup: {args.users:,} users generated in {times['generate_users']:.1f}s")

    t0 = time.perf_counter()
    graph = PlatformGraph(data / "platform.duckdb")
    write_graph(graph, users)
    excluded = graph.excluded()
    with graph.connect() as con:
        countries = [
            r[0] for r in con.execute("SELECT DISTINCT country FROM users ORDER BY 1").fetchall()
        ]
    times["graph"] = time.perf_counter() - t0
    log(f"setup: platform graph written in {times['graph']:.1f}s")

    store = FeatureStore(data / "features")
    bought: list[np.ndarray] = []
    will_buy: list[np.ndarray] = []
    feature_rows_total = 0
    t_sim = 0.0
    for k, lo in enumerate(range(0, args.users, args.chunk)):
        t1 = time.perf_counter()
        part = users.slice(lo, min(args.chunk, args.users - lo))
        rows, b, f = simulate_chunk(part, lo, args.seed * 10_000 + k, args)
        store.append(rows)
        feature_rows_total += rows.num_rows
        bought.append(b)
        will_buy.append(f)
        t_sim += time.perf_counter() - t1
        log(
            f"setup: users {lo:,}-{lo + part.num_rows:,}: {rows.num_rows:,} feature rows, "
            f"{len(b):,} past and {len(f):,} future purchasers ({time.perf_counter() - t1:.1f}s)"
        )
        del rows
    times["simulate_and_append"] = t_sim
    del users

    t0 = time.perf_counter()
    store.merge()
    times["merge"] = time.perf_counter() - t0
    log(f"setup: features merged in {times['merge']:.1f}s")

    past = np.unique(np.concatenate(bought)).astype(np.uint32)
    future = np.unique(np.concatenate(will_buy)).astype(np.uint32)
    usable = np.asarray((BitMap(past) - excluded).to_array(), np.uint32)
    rng = np.random.default_rng(args.seed)
    seed = usable
    if len(usable) > args.seed_size:
        seed = np.sort(rng.choice(usable, args.seed_size, replace=False))
    np.save(data / "seed.npy", seed)
    np.save(data / "past_purchasers.npy", past)
    np.save(data / "future_purchasers.npy", future)
    return {
        "countries": countries,
        "feature_rows": feature_rows_total,
        "past_purchasers": len(past),
        "past_purchasers_usable": len(usable),
        "future_purchasers": len(future),
        "future_new_purchasers": len(np.setdiff1d(future, past, assume_unique=True)),
        "seed": len(seed),
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "peak_rss": peak_rss(),
    }


# --- the measured build, then quality ---------------------------------------------------------


class Profile:
    """Wall time spent in some functions of the library (wrapped while it runs, unchanged)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._patches: list[Any] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0

        patch = mock.patch.object(owner, name, timed)
        patch.start()
        self._patches.append(patch)

    def stop(self) -> dict[str, float]:
        for patch in reversed(self._patches):
            patch.stop()
        return {k: round(v, 2) for k, v in self.seconds.items()}


def top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores."""
    if k >= len(scores):
        return np.arange(len(scores))
    return np.argpartition(-scores, k - 1)[:k] if k > 0 else np.zeros(0, np.int64)


def lifts(scores: np.ndarray, positive: np.ndarray) -> dict[str, float | None]:
    """Lift at each cut (recall of ``positive`` in the top share over that share) and AUC
    (positives against a sample of the other candidates)."""
    n, total = len(scores), int(positive.sum())
    out: dict[str, float | None] = {}
    for cut in CUTS:
        k = round(cut * n)
        found = int(positive[top(scores, k)].sum())
        out[f"lift_{round(cut * 100)}"] = round(found / total / (k / n), 3) if total and k else None
    rng = np.random.default_rng(1)
    neg = np.flatnonzero(~positive)
    if len(neg) > AUC_NEGATIVES:
        neg = rng.choice(neg, AUC_NEGATIVES, replace=False)
    pos = np.flatnonzero(positive)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    both = len(pos) and len(neg)
    out["auc"] = (
        round(float(roc_auc_score(y, scores[np.concatenate([pos, neg])])), 4) if both else None
    )
    return out


def quality(
    f: UserFeatures,
    seed: np.ndarray,
    countries: list[str],
    excluded: BitMap,
    positives: np.ndarray,
    members: BitMap,
) -> dict[str, Any]:
    """Every model fitted on the whole seed ranks the candidates; lift of ``positives``."""
    rng = np.random.default_rng(0)
    mask = eligible_users(f, countries, MobileOS.ALL, excluded)
    mask[seed] = False
    candidates = np.flatnonzero(mask)
    is_positive = np.zeros(f.n, bool)
    is_positive[positives] = True
    positive = is_positive[candidates]
    sample = candidates
    if len(sample) > STANDARDISE_SAMPLE:
        sample = np.sort(rng.choice(candidates, STANDARDISE_SAMPLE, replace=False))
    cen = centroid(f, seed)
    pu = pu_classifier(f, seed, candidates, rng)
    scorers: dict[str, LinearScorer | None] = {
        "random": None,
        "demographics": pu_classifier(
            f, seed, candidates, rng, embedding=False, name="demographics"
        ),
        "centroid": cen,
        "pu": pu,
        "ensemble": ensemble(cen, pu, f, sample),
    }
    models: dict[str, Any] = {}
    for name, scorer in scorers.items():
        if scorer is None:
            scores = rng.random(len(candidates)).astype(np.float32)
        else:
            scores = scorer.score(f, candidates)
        models[name] = lifts(scores, positive)
    # The lookalike itself: its members (the seed not counted) among the candidates.
    chosen = np.zeros(f.n, bool)
    chosen[np.asarray(members.to_array(), np.int64)] = True
    picked = chosen[candidates]
    total = int(positive.sum())
    share = picked.sum() / len(candidates) if len(candidates) else 0.0
    members_lift = (positive & picked).sum() / total / share if total and share else None
    return {
        "candidates": len(candidates),
        "positives": total,
        "models": models,
        "members": {
            "size": int(picked.sum()),
            "share_of_candidates": round(float(share), 4),
            "lift": None if members_lift is None else round(float(members_lift), 3),
        },
    }


def build(args: argparse.Namespace) -> dict[str, Any]:
    data: Path = args.data_dir
    meta = json.loads((data / "setup.json").read_text())
    countries: list[str] = meta["setup"]["countries"]
    store = FeatureStore(data / "features")
    graph = PlatformGraph(data / "platform.duckdb")
    seed_ids = np.load(data / "seed.npy")
    seed = BitMap(seed_ids)
    rss_before = peak_rss()

    profile = Profile()
    profile.wrap(FeatureStore, "read", "features: read the store")
    profile.wrap(lookalike_features, "tfidf", "features: tfidf")
    profile.wrap(lookalike_features, "embed", "features: embedding")
    profile.wrap(lookalike_features, "demographics", "features: demographics")
    profile.wrap(lookalike_build, "eligible_users", "lookalike: eligible users")
    profile.wrap(lookalike_build, "centroid", "lookalike: fit centroid")
    profile.wrap(lookalike_build, "pu_classifier", "lookalike: fit pu")
    profile.wrap(lookalike_build, "ensemble", "lookalike: ensemble (standardise)")
    profile.wrap(LinearScorer, "score", "lookalike: score")
    profile.wrap(lookalike_build, "roc_auc_score", "lookalike: auc")
    t0 = time.perf_counter()
    features = build_features(store, graph)
    t_features = time.perf_counter() - t0
    log(f"build: features built in {t_features:.1f}s")
    t1 = time.perf_counter()
    result = build_lookalike(
        features,
        seed,
        countries=countries,
        os=MobileOS.ALL,
        share=BROAD,
        include_source=False,
        excluded=graph.excluded(),
    )
    t_lookalike = time.perf_counter() - t1
    total = time.perf_counter() - t0
    peak = peak_rss()
    breakdown = profile.stop()
    log(f"build: lookalike built in {t_lookalike:.1f}s (total {total:.1f}s)")

    t0 = time.perf_counter()
    past = np.load(data / "past_purchasers.npy")
    future = np.load(data / "future_purchasers.npy")
    positives = np.setdiff1d(future, past, assume_unique=True).astype(np.int64)
    q = quality(
        features, seed_ids.astype(np.int64), countries, graph.excluded(), positives, result.members
    )
    log(f"build: quality measured in {time.perf_counter() - t0:.1f}s")
    return {
        "build_features_seconds": round(t_features, 2),
        "build_lookalike_seconds": round(t_lookalike, 2),
        "total_seconds": round(total, 2),
        "breakdown_seconds": breakdown,
        "peak_rss": peak,
        "peak_rss_before_build": rss_before,
        "engaged_users": features.engaged,
        "items": features.items,
        "embedding_dim": features.dim,
        "report": result.report.to_json(),
        "quality": q,
        "quality_seconds": round(time.perf_counter() - t0, 2),
    }


# --- the run ------------------------------------------------------------------------------------


def stage(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run a stage in a fresh process; its result is the last line of its output."""
    cmd = [sys.executable, __file__, "--stage", name, "--data-dir", str(args.data_dir)]
    for key in ("users", "seed_size", "seed", "organic", "scale", "chunk"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the {name} stage failed (exit status {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def params(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("users", "seed_size", "seed", "organic", "scale", "chunk")
    return {"version": SETUP_VERSION, **{k: getattr(args, k) for k in keys}}


def gb(n: int) -> float:
    return round(n / 1e9, 2)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summary(args: argparse.Namespace, meta: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    models = b["quality"]["models"]
    report = b["report"]
    chosen = report["model"]
    cuts = [f"lift_{round(c * 100)}" for c in CUTS]
    to_random = {
        m: {c: ratio(v[c], models["random"][c]) for c in cuts}
        for m, v in models.items()
        if m != "random"
    }

    def versus(a: str, base: str) -> dict[str, float | None]:
        return {c: ratio(models[a][c], models[base][c]) for c in cuts}

    s = meta["setup"]
    return {
        "users": args.users,
        "seed_size": s["seed"],
        "seed_size_asked": args.seed_size,
        "past_purchasers": s["past_purchasers"],
        "future_new_purchasers": s["future_new_purchasers"],
        "feature_rows": s["feature_rows"],
        "engaged_users": b["engaged_users"],
        "items": b["items"],
        "countries": s["countries"],
        "data_dir": str(args.data_dir),
        "setup_reused": meta.get("reused", False),
        "setup_seconds": s["seconds"],
        "setup_peak_rss_gib": round(s["peak_rss"] / 2**30, 2),
        "build_features_seconds": b["build_features_seconds"],
        "build_lookalike_seconds": b["build_lookalike_seconds"],
        "lookalike_seconds": b["total_seconds"],
        "breakdown_seconds": b["breakdown_seconds"],
        "peak_rss_gib": round(b["peak_rss"] / 2**30, 2),
        "peak_rss_gb": gb(b["peak_rss"]),
        "peak_rss_before_build_gib": round(b["peak_rss_before_build"] / 2**30, 2),
        "chosen_model": chosen,
        "lookalike_size": report["size"],
        "eligible": report["eligible"],
        "held_out_report": {
            m["model"]: {"lift": m["lift"], "auc": m["auc"], "recall": m["recall"]}
            for m in report["models"]
        },
        "candidates": b["quality"]["candidates"],
        "positives": b["quality"]["positives"],
        "quality": models,
        "lookalike_members": b["quality"]["members"],
        "ratio_to_random": to_random,
        "ensemble_vs_demographics": versus("ensemble", "demographics"),
        "chosen_vs_demographics": versus(chosen, "demographics"),
        "chosen_vs_centroid": versus(chosen, "centroid"),
        "quality_seconds": b["quality_seconds"],
        "targets": {
            "seconds": TARGET_SECONDS,
            "gb": TARGET_BYTES / 1e9,
            "seconds_met": b["total_seconds"] <= TARGET_SECONDS,
            "memory_met": b["peak_rss"] <= TARGET_BYTES,
        },
    }


def print_table(out: dict[str, Any]) -> None:
    cuts = [f"lift_{round(c * 100)}" for c in CUTS]
    print(
        f"lookalike of {out['seed_size']:,} seed members among {out['users']:,} users: "
        f"features {out['build_features_seconds']:.1f}s + lookalike "
        f"{out['build_lookalike_seconds']:.1f}s = {out['lookalike_seconds']:.1f}s, "
        f"peak {out['peak_rss_gib']:.2f} GiB, model {out['chosen_model']}"
    )
    print(f"{'model':<14}" + "".join(f"{c:>10}" for c in (*cuts, "auc")) + "  vs random")
    for name, q in out["quality"].items():
        cells = "".join(f"{'-' if q[c] is None else q[c]:>10}" for c in (*cuts, "auc"))
        vs = out["ratio_to_random"].get(name)
        rel = " ".join(f"{'-' if v is None else v}x" for v in vs.values()) if vs else ""
        print(f"{name:<14}{cells}  {rel}")
    t = out["targets"]
    print(
        f"targets: <= {t['seconds']} s {'met' if t['seconds_met'] else 'NOT met'}, "
        f"<= {t['gb']:g} GB {'met' if t['memory_met'] else 'NOT met'}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--seed-size", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--organic", type=float, default=0.5, help="organic engagement volume")
    ap.add_argument("--scale", type=float, default=1.0, help="advertiser activity volume")
    ap.add_argument("--chunk", type=int, default=1_000_000, help="users simulated at once")
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the data is written (and reused by a later run with the same parameters); "
        "default: a temporary directory",
    )
    ap.add_argument("--stage", choices=("setup", "build"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage == "setup":
        print(json.dumps(setup(args)))
        return
    if args.stage == "build":
        print(json.dumps(build(args)))
        return

    if args.data_dir is None:
        args.data_dir = work_dir()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    marker = args.data_dir / "setup.json"
    meta = json.loads(marker.read_text()) if marker.exists() else {}
    if meta.get("params") == params(args):
        meta["reused"] = True
        print(f"setup reused from {args.data_dir}", flush=True)
    else:
        if meta or any(args.data_dir.iterdir()):
            raise SystemExit(f"{args.data_dir} holds other data: give an empty directory")
        t0 = time.perf_counter()
        meta = {"params": params(args), "setup": stage("setup", args)}
        marker.write_text(json.dumps(meta))
        s = meta["setup"]
        print(
            f"setup in {time.perf_counter() - t0:.1f}s: {s['feature_rows']:,} feature rows, "
            f"{s['past_purchasers']:,} past purchasers, seed {s['seed']:,}, "
            f"{s['future_new_purchasers']:,} new purchasers in the future",
            flush=True,
        )
    b = stage("build", args)
    out = summary(args, meta, b)
    print_table(out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
