"""Benchmark: every rule audience computed at once over a simulated event store (issue 4, "Batch").

N simulated events (default 100M: 20 advertisers with pixels, apps, offline event sets, ad
engagement, and organic activity of about 10M users over 180 days) are written as Parquet in the
event store's layout (``advertiser_id=A/day=D/`` partitions, the stored columns and types of
``likewise.ingest.processor``). M rule audiences (default 100: PIXEL with URL, VALUE and content
filters, APP with day-2 retention, ENGAGEMENT on ad groups, organic video, LIVE and business
account rules that also read organic activity, OFFLINE, lead forms, shop, some with exclusions,
a few with Likewise's min_count, min_value, top_share and AND) are built as typed plans.

Timed in the same run, over the same files through the same ``events`` view:

  (a) baseline: one hand-written DuckDB query per audience (straightforward SQL, written from
      the audience's description, not compiled from its plan), run one after the other;
  (b) ``likewise.engine.rule_batch.evaluate_many`` over all the plans at once;
  (c) for reference, ``likewise.engine.rule_sql.evaluate`` per plan (the compiled SQL, one
      query per audience).

The members of (b) and (c) must equal (a)'s audience by audience; any difference fails the run.

Stored events carry ``eid``; the store keeps which user each is in the state database's
``event_uid`` table, and ``usable_events_sql`` joins it in. Here ``uid`` is generated into the
Parquet files directly and ``events`` is a view over them keeping the usable rows (not limited,
not a merged copy): the join with ``event_uid`` and the opted-out users would cost both sides
the same and are left out, so what is measured is reading and evaluating the rules. The
identifier columns (hashed e-mails, phones, device ids) are left empty: no rule reads them.

The dataset is cached under ``--dir`` (default ``$LIKEWISE_BENCH_DIR`` or the system temp
directory) and reused by later runs with the same parameters.

    python bench/rules_batch.py --events 100000000 --audiences 100
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyroaring import BitMap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PeakRSS, gib
from likewise.domain.rule_spec import parse_rule_spec
from likewise.domain.rules import Combine, Plan, SourceKind
from likewise.engine import rule_sql
from likewise.engine.rule_batch import evaluate_many
from likewise.ingest.processor import STORED, TYPES

GENERATOR_VERSION = 1  # bump when the generated data changes, so cached datasets are not reused
DAY = 86_400
END = int(datetime(2026, 11, 30, tzinfo=UTC).timestamp())  # a UTC midnight: as_of
SCHEMA = pa.schema(
    [(name, TYPES[name]) for name in STORED]
    + [("eid", pa.int64()), ("merged_into", pa.int64()), ("uid", pa.uint32())]
)
ORGANIC_SHARE = 0.15  # of all events: organic activity, stored under advertiser 0
CATEGORIES = ["shoes", "bags", "toys", "electronics", "beauty", "home", "sports", "books"]
SECTIONS = ["product", "category", "cart", "checkout", "search", "blog", "account", "home"]
SLUGS = 150  # pages per section of a shop
SKUS = 400  # products per advertiser
OTHER_POSTS = 50_000  # organic posts of creators who are not advertisers
OTHER_CREATORS = 5_000

# (event name, weight); per channel. Commerce events carry value, contents and prices.
WEB_EVENTS = [
    ("PageView", 44),
    ("ViewContent", 20),
    ("AddToCart", 9),
    ("InitiateCheckout", 4),
    ("CompletePayment", 3),
    ("Purchase", 1),
    ("Search", 6),
    ("ClickButton", 5),
    ("SubmitForm", 2),
    ("CompleteRegistration", 2),
    ("AddToWishlist", 2),
    ("Contact", 1),
    ("Subscribe", 1),
]
APP_EVENTS = [
    ("InstallApp", 6),
    ("LaunchAPP", 40),
    ("Login", 10),
    ("ViewContent", 14),
    ("AddToCart", 8),
    ("Purchase", 3),
    ("CompletePayment", 1),
    ("Registration", 3),
    ("Search", 7),
    ("AchieveLevel", 5),
    ("Subscribe", 3),
]
OFFLINE_EVENTS = [
    ("CompletePayment", 45),
    ("Purchase", 10),
    ("Contact", 15),
    ("SubmitForm", 10),
    ("Subscribe", 5),
    ("AddToCart", 15),
]
AD_EVENTS = [
    ("ad_impression", 600),
    ("ad_click", 60),
    ("video_play", 250),
    ("like", 20),
    ("comment", 5),
    ("share", 5),
    ("follow", 5),
    ("profile_visit", 15),
    ("live_view", 10),
    ("lead_form_view", 15),
    ("lead_form_submit", 5),
    ("shop_product_view", 7),
    ("shop_add_to_cart", 2),
    ("shop_purchase", 1),
]
ORGANIC_EVENTS = [
    ("video_play", 700),
    ("like", 120),
    ("comment", 30),
    ("share", 30),
    ("follow", 20),
    ("profile_visit", 50),
    ("live_view", 50),
]
COMMERCE = {"ViewContent", "AddToCart", "InitiateCheckout", "CompletePayment", "Purchase"}
VALUED = {"AddToCart", "InitiateCheckout", "CompletePayment", "Purchase", "shop_purchase"}
VALUED |= {"shop_add_to_cart"}
# Which section of the shop a web event's page is in (others: any section).
EVENT_SECTION = {
    "ViewContent": "product",
    "AddToCart": "cart",
    "InitiateCheckout": "checkout",
    "CompletePayment": "checkout",
    "Purchase": "checkout",
    "Search": "search",
    "CompleteRegistration": "account",
}


# --- the simulated platform -------------------------------------------------------------------


@dataclass(frozen=True)
class Advertiser:
    id: int
    share: float  # of all events
    reach: int  # how many users it sees
    multiplier: int  # its users: rank -> (rank * multiplier + offset) % users
    offset: int
    pixels: tuple[int, ...]
    apps: tuple[int, ...]
    offline: tuple[int, ...]
    mix: dict[str, float] = field(default_factory=dict)  # channel -> share of its events

    @property
    def account(self) -> str:
        return f"acct-{self.id}"


# The names of an advertiser's ad groups, posts, LIVE videos, lead forms, shop pages, products.


def adgroups(a: int) -> list[str]:
    return [str(1_780_000_000_000 + a * 1000 + k) for k in range(40)]


def posts(a: int) -> list[str]:
    return [str(7_300_000_000_000_000 + a * 1000 + k) for k in range(30)]


def lives(a: int) -> list[str]:
    return [f"live-{a}-{k}" for k in range(5)]


def forms(a: int) -> list[str]:
    return [f"form-{a}-{k}" for k in range(3)]


def urls(a: int) -> list[str]:
    return [f"https://www.shop{a}.example/{s}/item-{k}" for s in SECTIONS for k in range(SLUGS)]


def skus(a: int) -> list[str]:
    return [f"SKU-{a}-{k:04d}" for k in range(SKUS)]


def _prime_above(n: int) -> int:
    k = n + 1
    while any(k % d == 0 for d in range(2, math.isqrt(k) + 1)):
        k += 1
    return k


def advertisers(n: int, users: int, seed: int) -> list[Advertiser]:
    """``n`` advertisers with Zipf-like sizes; about 70% have an app, 40% offline event sets."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, n + 1) ** 0.7
    shares = (1 - ORGANIC_SHARE) * weights / weights.sum()
    out = []
    for i in range(n):
        a = i + 1
        apps = (a * 1000 + 101,) if i % 10 < 7 else ()
        offline = (a * 1000 + 201,) if i % 5 < 2 else ()
        pixels = tuple(a * 1000 + 1 + k for k in range(1 + i % 3))
        mix = {"web": 0.5, "app": 0.2 if apps else 0.0, "offline": 0.04 if offline else 0.0}
        mix["engagement"] = 1 - sum(mix.values())
        out.append(
            Advertiser(
                id=a,
                share=float(shares[i]),
                reach=max(10, int(users * rng.uniform(0.1, 0.6))),
                multiplier=_prime_above(users + 1000 * a) % users or 1,
                offset=int(rng.integers(users)),
                pixels=pixels,
                apps=apps,
                offline=offline,
                mix=mix,
            )
        )
    return out


# --- generation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    events: int
    users: int
    advertisers: int
    days: int
    seed: int

    def name(self) -> str:
        return (
            f"events-{self.events}-u{self.users}-a{self.advertisers}-d{self.days}"
            f"-s{self.seed}-v{GENERATOR_VERSION}"
        )


def _strings(
    names: list[str] | pa.Array, idx: np.ndarray, valid: np.ndarray | None = None
) -> pa.Array:
    """``names[idx]`` as a string array (null where not ``valid``)."""
    indices = pa.array(idx.astype(np.int32), mask=None if valid is None else ~valid)
    dictionary = names if isinstance(names, pa.Array) else pa.array(names)
    return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())


@functools.cache
def _names(kind: str, advertiser_id: int, advertisers: int = 0) -> pa.Array:
    """The names of one kind (an advertiser's, or organic ones for ``advertisers``), built
    once per process."""
    every = range(1, advertisers + 1)
    if kind == "organic_posts":
        theirs = [p for a in every for p in posts(a)]
        return pa.array(theirs + [f"p{k}" for k in range(OTHER_POSTS)])
    if kind == "organic_creators":
        accounts = [f"acct-{a}" for a in every]
        return pa.array(accounts + [f"cr{k}" for k in range(OTHER_CREATORS)])
    if kind == "organic_lives":
        theirs = [x for a in every for x in lives(a)]
        return pa.array(theirs + [f"olive-{k}" for k in range(1000)])
    make = {"adgroups": adgroups, "posts": posts, "lives": lives, "forms": forms}
    make.update(urls=urls, skus=skus)
    return pa.array(make[kind](advertiser_id))


def _lists(values: pa.Array, lengths: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _pick(rng: np.random.Generator, table: list[tuple[str, int]], n: int) -> np.ndarray:
    weights = np.array([w for _, w in table], dtype=float)
    return rng.choice(len(table), size=n, p=weights / weights.sum())


class _Batch:
    """The columns of one channel's events of one advertiser and day."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cols: dict[str, pa.Array] = {}

    def table(self) -> pa.Table:
        arrays = []
        for f in SCHEMA:
            col = self.cols.get(f.name)
            if col is None:
                if pa.types.is_list(f.type):
                    col = _lists(pa.array([], f.type.value_type), np.zeros(self.n, np.int32))
                else:
                    col = pa.nulls(self.n, f.type)
            arrays.append(col)
        return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _users(rng: np.random.Generator, adv: Advertiser, users: int, n: int) -> np.ndarray:
    # Heavy users first: rank = reach × u^3 (a few people make many events).
    ranks = (adv.reach * rng.random(n) ** 3).astype(np.int64)
    return ((ranks * adv.multiplier + adv.offset) % users).astype(np.uint32)


def _commerce(
    rng: np.random.Generator, b: _Batch, adv: Advertiser, names: list[str], ev: np.ndarray
) -> None:
    """Value, currency, content type, ids, categories and prices of commerce events."""
    n = b.n
    name = np.array(names, dtype=object)[ev]
    commerce = np.isin(name, list(COMMERCE))
    valued = np.isin(name, list(VALUED))
    # Whole amounts: sums are then exact whatever order an engine adds them in.
    value = np.round(np.exp(rng.normal(3.6, 1.0, n))).clip(1, 5000)
    b.cols["value"] = pa.array(value, mask=~valued)
    b.cols["currency"] = _strings(["USD"], np.zeros(n, np.int32), valued)
    b.cols["content_type"] = _strings(["product"], np.zeros(n, np.int32), commerce)
    lengths = np.where(commerce, 1 + (rng.random(n) < 0.3), 0).astype(np.int32)
    total = int(lengths.sum())
    skus = rng.integers(0, SKUS, total)
    b.cols["content_ids"] = _lists(_strings(_names("skus", adv.id), skus), lengths)
    cats = np.where(commerce, (skus[np.cumsum(lengths) - 1] if total else 0) % 8, 0)
    b.cols["content_categories"] = _lists(
        _strings(CATEGORIES, cats[commerce]), commerce.astype(np.int32)
    )
    prices = np.round(np.exp(rng.normal(3.2, 0.8, total))) + 0.99
    b.cols["prices"] = _lists(pa.array(prices), lengths)


def _base(
    b: _Batch,
    rng: np.random.Generator,
    names: list[str],
    ev: np.ndarray,
    times: np.ndarray,
    uids: np.ndarray,
) -> None:
    n = b.n
    b.cols["event"] = _strings(names, ev)
    b.cols["event_time"] = pa.array(np.round(times, 3))
    b.cols["received_at"] = pa.array(np.round(times + rng.exponential(5.0, n), 3))
    b.cols["limited"] = pa.array(rng.random(n) < 0.01)  # limited data use: never used
    b.cols["uid"] = pa.array(uids.astype(np.uint32))


Day = tuple[np.random.Generator, "Advertiser", int, float, int]  # rng, advertiser, n, start, users


def _web(day: Day) -> pa.Table:
    rng, adv, n, day_start, users = day
    b = _Batch(n)
    names = [e for e, _ in WEB_EVENTS] + ["Pageview"]
    ev = _pick(rng, WEB_EVENTS, n)
    pixel = rng.random(n) < 0.3  # the browser pixel's events; its page view is "Pageview"
    ev = np.where(pixel & (ev == 0), len(names) - 1, ev)
    _base(b, rng, names, ev, day_start + rng.random(n) * DAY, _users(rng, adv, users, n))
    b.cols["source_id"] = pa.array(np.array(adv.pixels)[rng.integers(0, len(adv.pixels), n)])
    b.cols["channel"] = _strings(["web", "pixel"], pixel.astype(np.int32))
    section = rng.integers(0, len(SECTIONS), n)
    for name, s in EVENT_SECTION.items():
        section[ev == names.index(name)] = SECTIONS.index(s)
    b.cols["url"] = _strings(_names("urls", adv.id), section * SLUGS + rng.integers(0, SLUGS, n))
    _commerce(rng, b, adv, names, ev)
    return b.table()


Pending = tuple[np.ndarray, np.ndarray]  # users and apps of yesterday's returning installs


def _app(day: Day, pending: Pending) -> tuple[pa.Table, Pending]:
    """The app events of a day, with the launches of yesterday's installs that came back (day-2
    retention); returns today's returning installs for tomorrow."""
    rng, adv, n, day_start, users = day
    names = [e for e, _ in APP_EVENTS]
    p_uids, p_apps = pending
    m = len(p_uids)
    ev = np.concatenate([np.full(m, names.index("LaunchAPP")), _pick(rng, APP_EVENTS, n)])
    uids = np.concatenate([p_uids, _users(rng, adv, users, n)]).astype(np.uint32)
    apps = np.array(adv.apps)
    sources = np.concatenate([p_apps, apps[rng.integers(0, len(apps), n)]]).astype(np.int64)
    b = _Batch(n + m)
    _base(b, rng, names, ev, day_start + rng.random(n + m) * DAY, uids)
    b.cols["source_id"] = pa.array(sources)
    b.cols["channel"] = _strings(["app"], np.zeros(n + m, np.int32))
    _commerce(rng, b, adv, names, ev)
    back = (ev == names.index("InstallApp")) & (rng.random(n + m) < 0.4)
    return b.table(), (uids[back], sources[back])


def _offline(day: Day) -> pa.Table:
    rng, adv, n, day_start, users = day
    b = _Batch(n)
    names = [e for e, _ in OFFLINE_EVENTS]
    ev = _pick(rng, OFFLINE_EVENTS, n)
    _base(b, rng, names, ev, day_start + rng.random(n) * DAY, _users(rng, adv, users, n))
    b.cols["source_id"] = pa.array(np.array(adv.offline)[rng.integers(0, len(adv.offline), n)])
    b.cols["channel"] = _strings(["offline", "crm"], (rng.random(n) < 0.2).astype(np.int32))
    _commerce(rng, b, adv, names, ev)
    return b.table()


def _engagement(day: Day) -> pa.Table:
    """The advertiser's ad engagement: impressions, clicks, plays of its ad videos, likes,
    follows of its account, LIVE views, lead forms, shop events."""
    rng, adv, n, day_start, users = day
    b = _Batch(n)
    names = [e for e, _ in AD_EVENTS]
    ev = _pick(rng, AD_EVENTS, n)
    _base(b, rng, names, ev, day_start + rng.random(n) * DAY, _users(rng, adv, users, n))
    name = np.array(names, dtype=object)[ev]
    b.cols["source_id"] = pa.array(np.zeros(n, np.int64))
    b.cols["channel"] = _strings(["engagement"], np.zeros(n, np.int32))
    ad = np.isin(name, ["ad_impression", "ad_click", "video_play"])
    b.cols["adgroup_id"] = _strings(_names("adgroups", adv.id), rng.integers(0, 40, n), ad)
    b.cols["campaign_id"] = _strings(_names("adgroups", adv.id)[:8], rng.integers(0, 8, n), ad)
    on_post = np.isin(name, ["video_play", "like", "comment", "share"])
    b.cols["content_id"] = _strings(_names("posts", adv.id), rng.integers(0, 30, n), on_post)
    b.cols["creator_id"] = _strings([adv.account], np.zeros(n, np.int32), on_post)
    on_account = np.isin(name, ["follow", "profile_visit"])
    b.cols["account_id"] = _strings([adv.account], np.zeros(n, np.int32), on_account)
    b.cols["live_id"] = _strings(
        _names("lives", adv.id), rng.integers(0, 5, n), name == "live_view"
    )
    forms = np.isin(name, ["lead_form_view", "lead_form_submit"])
    b.cols["form_id"] = _strings(_names("forms", adv.id), rng.integers(0, 3, n), forms)
    shop = np.char.startswith(name.astype(str), "shop_")
    b.cols["product_id"] = _strings(_names("skus", adv.id), rng.integers(0, SKUS, n), shop)
    valued = np.isin(name, list(VALUED))
    b.cols["value"] = pa.array(np.round(np.exp(rng.normal(3.3, 0.9, n))), mask=~valued)
    _plays(rng, b, name == "video_play")
    return b.table()


def _plays(rng: np.random.Generator, b: _Batch, play: np.ndarray) -> None:
    watched = np.round(rng.exponential(9.0, b.n), 1)
    duration = rng.uniform(5, 60, b.n)
    b.cols["watched_seconds"] = pa.array(watched, mask=~play)
    b.cols["watched_percent"] = pa.array(
        np.round(np.minimum(100.0, 100 * watched / duration), 1), mask=~play
    )


def _organic(
    rng: np.random.Generator, all_advs: list[Advertiser], n: int, day_start: float, users: int
) -> pa.Table:
    """Organic activity (advertiser 0): plays, likes, follows, LIVE views, 30% of them on the
    advertisers' own posts, accounts and LIVE videos."""
    b = _Batch(n)
    names = [e for e, _ in ORGANIC_EVENTS]
    ev = _pick(rng, ORGANIC_EVENTS, n)
    uids = (users * rng.random(n) ** 2).astype(np.uint32)
    _base(b, rng, names, ev, day_start + rng.random(n) * DAY, uids)
    name = np.array(names, dtype=object)[ev]
    b.cols["source_id"] = pa.array(np.zeros(n, np.int64))
    b.cols["channel"] = _strings(["engagement"], np.zeros(n, np.int32))
    theirs = rng.random(n) < 0.3
    which = rng.integers(0, len(all_advs), n)
    post_names = _names("organic_posts", 0, len(all_advs))
    post = np.where(theirs, which * 30 + rng.integers(0, 30, n), len(all_advs) * 30)
    post = np.where(theirs, post, post + rng.integers(0, OTHER_POSTS, n))
    on_post = np.isin(name, ["video_play", "like", "comment", "share"])
    b.cols["content_id"] = _strings(post_names, post, on_post)
    creators = _names("organic_creators", 0, len(all_advs))
    creator = np.where(theirs, which, len(all_advs) + rng.integers(0, OTHER_CREATORS, n))
    live = name == "live_view"
    b.cols["creator_id"] = _strings(creators, creator, on_post | live)
    on_account = np.isin(name, ["follow", "profile_visit"])
    b.cols["account_id"] = _strings(creators, creator, on_account)
    live_names = _names("organic_lives", 0, len(all_advs))
    live_idx = np.where(theirs, which * 5 + rng.integers(0, 5, n), len(all_advs) * 5)
    live_idx = np.where(theirs, live_idx, live_idx + rng.integers(0, 1000, n))
    b.cols["live_id"] = _strings(live_names, live_idx, live)
    _plays(rng, b, name == "video_play")
    return b.table()


def _write(folder: Path, advertiser_id: int, day: int, start: int, table: pa.Table) -> None:
    date = datetime.fromtimestamp(start + day * DAY, UTC).date().isoformat()
    part = folder / f"advertiser_id={advertiser_id}" / f"day={date}"
    part.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, part / "part-0.parquet", compression="zstd")


def _generate_advertiser(job: tuple[Params, Path, int, list[int]]) -> int:
    """Every day of one advertiser (0: organic activity); returns the rows written."""
    params, folder, advertiser_id, counts = job
    rng = np.random.default_rng([params.seed, advertiser_id])
    advs = advertisers(params.advertisers, params.users, params.seed)
    start = END - params.days * DAY
    next_eid = advertiser_id * 10**12
    pending: Pending = (np.zeros(0, np.uint32), np.zeros(0, np.int64))
    written = 0
    for day, n in enumerate(counts):
        day_start = start + day * DAY
        tables = []
        if advertiser_id == 0:
            tables.append(_organic(rng, advs, n, day_start, params.users))
        else:
            adv = advs[advertiser_id - 1]
            channels = list(adv.mix)
            split = rng.multinomial(n, [adv.mix[c] for c in channels])
            for channel, k in zip(channels, split, strict=True):
                args: Day = (rng, adv, int(k), day_start, params.users)
                if channel == "app" and (k or len(pending[0])):
                    table, pending = _app(args, pending)
                    tables.append(table)
                elif channel != "app" and k:
                    tables.append(
                        {"web": _web, "offline": _offline}.get(channel, _engagement)(args)
                    )
        if not tables:
            continue
        table = pa.concat_tables(tables)
        eids = next_eid + np.arange(table.num_rows, dtype=np.int64)
        next_eid += table.num_rows
        merged = rng.random(table.num_rows) < 0.005  # copies merged into another event
        table = table.set_column(SCHEMA.get_field_index("eid"), "eid", pa.array(eids))
        table = table.set_column(
            SCHEMA.get_field_index("merged_into"), "merged_into", pa.array(eids - 1, mask=~merged)
        )
        _write(folder, advertiser_id, day, start, table)
        written += table.num_rows
    return written


def dataset(params: Params, base: Path) -> tuple[Path, float, bool]:
    """The generated event store (reused when present); its folder, seconds taken, reused."""
    target = base / params.name()
    if (target / "params.json").exists():
        return target, 0.0, True
    t0 = time.perf_counter()
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".generating-", dir=base))
    try:
        rng = np.random.default_rng(params.seed)
        advs = advertisers(params.advertisers, params.users, params.seed)
        shares = np.array([ORGANIC_SHARE] + [a.share for a in advs])
        # Weekly rhythm and growth over the period, per advertiser and day.
        days = np.arange(params.days)
        rhythm = (1 + 0.15 * np.sin(2 * np.pi * days / 7)) * (0.8 + 0.4 * days / params.days)
        p = np.outer(shares, rhythm / rhythm.sum()).ravel()
        counts = rng.multinomial(params.events, p / p.sum()).reshape(len(shares), params.days)
        jobs = [(params, tmp / "data", a, counts[a].tolist()) for a in range(len(shares))]
        jobs.sort(key=lambda j: -sum(j[3]))  # the largest first: the two workers end together
        with multiprocessing.get_context("fork").Pool(2) as pool:
            written = sum(pool.imap_unordered(_generate_advertiser, jobs))
        (tmp / "params.json").write_text(json.dumps({**params.__dict__, "rows": written}))
        if (target / "params.json").exists():  # another run made it meanwhile
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, time.perf_counter() - t0, False


# --- audiences ----------------------------------------------------------------------------------


@dataclass
class Audience:
    """One rule audience: its plan (from a TikTok ``rule_spec``, plus Likewise's extras) and
    the query an analyst would write by hand for the same people."""

    name: str
    advertiser_id: int
    plan: Plan
    sql: str


def _resolve(kind: SourceKind, raw_id: str) -> int | str | None:
    return int(raw_id) if kind in (SourceKind.PIXEL, SourceKind.APP, SourceKind.OFFLINE) else raw_id


def _rule(value: str, ids: list[Any] | None, days: int, *params: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "retention_days": days,
        "filter_set": {
            "operator": "OR",
            "filters": [
                {"field": "EVENT", "operator": "EQ", "value": value, "parameter_filters": params}
            ],
        },
    }
    if ids is not None:
        body["event_source_ids"] = [str(i) for i in ids]
    return body


def _spec(
    audience_type: str,
    include: list[dict[str, Any]],
    exclude: Sequence[dict[str, Any]] = (),
) -> Plan:
    spec: dict[str, Any] = {"inclusion_rule_set": {"operator": "OR", "rules": include}}
    if exclude:
        spec["exclusion_rule_set"] = {"operator": "OR", "rules": list(exclude)}
    return parse_rule_spec(audience_type, spec, resolve_source=_resolve)


def _q(values: list[Any]) -> str:
    return ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in values)


def _where(
    adv: int,
    days: int,
    channels: list[str],
    events: list[str],
    sources: str = "",
    *more: str,
    organic: bool = False,
    alias: str = "",
) -> str:
    """The hand-written WHERE clause of one rule (columns prefixed by ``alias``)."""
    e = f"{alias}." if alias else ""
    owner = f"{e}advertiser_id IN ({adv}, 0)" if organic else f"{e}advertiser_id = {adv}"
    parts = [
        owner,
        f"{e}channel IN ({_q(channels)})",
        f"{e}event IN ({_q(events)})",
        f"{e}event_time > {END - days * DAY} AND {e}event_time <= {END}",
    ]
    if sources:
        parts.append(sources)
    parts.extend(more)
    return " AND ".join(parts)


def _people(where: str) -> str:
    return f"SELECT DISTINCT uid FROM events WHERE {where}"


WEB = ["web", "pixel"]
BUY = ["CompletePayment", "Purchase"]


def _audience_templates(
    a: Advertiser, rng: np.random.Generator
) -> list[tuple[str, str, Callable[[], Plan], str]]:
    """(name, audience type, plan, hand-written SQL) of every kind of audience the advertiser
    can have (APP ones only with an app, OFFLINE ones only with offline event sets)."""
    px = list(a.pixels)
    pixels = f"source_id IN ({_q(px)})"
    out: list[tuple[str, str, Callable[[], Plan], str]] = []
    adv = a.id

    def add(name: str, audience_type: str, plan: Callable[[], Plan], sql: str) -> None:
        out.append((name, audience_type, plan, sql))

    d = int(rng.choice([30, 90, 180]))
    add(
        f"buyers_{d}d",
        "PIXEL",
        lambda d=d: _spec("PIXEL", [_rule("COMPLETE PAYMENT", px, d)]),
        _people(_where(adv, d, WEB, BUY, pixels)),
    )
    word = str(rng.choice(["checkout", "product", "blog", "search"]))
    d2 = int(rng.choice([7, 14, 30]))
    url = {"field": "URL", "operator": "CONTAINS", "values": [word.upper()]}
    add(
        f"visited_{word}_{d2}d",
        "PIXEL",
        lambda d=d2, url=url: _spec("PIXEL", [_rule("PAGE BROWSE", px, d, url)]),
        _people(_where(adv, d2, WEB, ["PageView", "Pageview"], pixels, f"url ILIKE '%{word}%'")),
    )
    d3 = int(rng.choice([14, 30]))
    add(
        f"cart_abandoners_{d3}d",
        "PIXEL",
        lambda d=d3: _spec(
            "PIXEL",
            [_rule("ADD TO CART", px, d)],
            [_rule("COMPLETE PAYMENT", px, d)],
        ),
        f"{_people(_where(adv, d3, WEB, ['AddToCart'], pixels))} EXCEPT "
        f"{_people(_where(adv, d3, WEB, BUY, pixels))}",
    )
    floor = int(rng.choice([100, 250]))
    value = {"field": "VALUE", "operator": "IS_GREATER_THAN", "values": [str(floor)]}
    add(
        f"high_value_buyers_{floor}",
        "PIXEL",
        lambda v=value: _spec("PIXEL", [_rule("COMPLETE PAYMENT", px, 120, v)]),
        _people(_where(adv, 120, WEB, BUY, pixels, f"value > {floor}")),
    )
    cat = str(rng.choice(CATEGORIES))
    category = {"field": "CONTENT_CATEGORY", "operator": "EQ", "values": [cat]}
    add(
        f"viewed_{cat}",
        "PIXEL",
        lambda c=category: _spec("PIXEL", [_rule("PRODUCT DETAIL PAGE BROWSE", px, 30, c)]),
        _people(
            _where(
                adv, 30, WEB, ["ViewContent"], pixels, f"list_contains(content_categories, '{cat}')"
            )
        ),
    )
    skus = [f"SKU-{adv}-{int(k):04d}" for k in rng.choice(SKUS, 3, replace=False)]
    ids = {"field": "CONTENT_ID", "operator": "EQ", "values": [s.lower() for s in skus]}
    add(
        "carted_skus",
        "PIXEL",
        lambda f=ids: _spec("PIXEL", [_rule("ADD TO CART", px, 60, f)]),
        _people(
            _where(adv, 60, WEB, ["AddToCart"], pixels, f"list_has_any(content_ids, [{_q(skus)}])")
        ),
    )
    add(
        "checkout_or_cart_not_bought",
        "PIXEL",
        lambda: _spec(
            "PIXEL",
            [_rule("ADD TO CART", px, 7), _rule("INITIATE CHECKOUT", px, 14)],
            [_rule("COMPLETE PAYMENT", px, 14)],
        ),
        f"({_people(_where(adv, 7, WEB, ['AddToCart'], pixels))} UNION "
        f"{_people(_where(adv, 14, WEB, ['InitiateCheckout'], pixels))}) EXCEPT "
        f"{_people(_where(adv, 14, WEB, BUY, pixels))}",
    )
    add(
        "viewed_and_carted_7d",
        "PIXEL",
        lambda: replace(
            _spec(
                "PIXEL",
                [_rule("PRODUCT DETAIL PAGE BROWSE", px, 7), _rule("ADD TO CART", px, 7)],
            ),
            combine=Combine.ALL,
        ),
        f"{_people(_where(adv, 7, WEB, ['ViewContent'], pixels))} INTERSECT "
        f"{_people(_where(adv, 7, WEB, ['AddToCart'], pixels))}",
    )

    def extra(**changes: Any) -> Callable[[], Plan]:
        def make() -> Plan:
            p = _spec("PIXEL", [_rule("COMPLETE PAYMENT", px, 180)])
            return replace(p, inclusion=(replace(p.inclusion[0], **changes),))

        return make

    buys = _where(adv, 180, WEB, BUY, pixels)
    add(
        "repeat_buyers_3",
        "PIXEL",
        extra(min_count=3),
        f"SELECT uid FROM events WHERE {buys} GROUP BY uid HAVING count(*) >= 3",
    )
    add(
        "spent_500",
        "PIXEL",
        extra(min_value=500.0),
        f"SELECT uid FROM events WHERE {buys} GROUP BY uid HAVING sum(coalesce(value, 0)) >= 500",
    )
    add(
        "top_10pct_spenders",
        "PIXEL",
        extra(top_share=0.1),
        f"""SELECT uid FROM (
              SELECT uid, row_number() OVER (ORDER BY total DESC, uid) AS rank_no,
                     count(*) OVER () AS n
              FROM (SELECT uid, sum(coalesce(value, 0)) AS total FROM events WHERE {buys}
                    GROUP BY uid))
            WHERE rank_no <= (n + 9) // 10""",
    )
    if a.apps:
        apps = list(a.apps)
        app_src = f"source_id IN ({_q(apps)})"

        launch = _where(adv, 30, ["app"], ["LaunchAPP"], f"l.{app_src}", alias="l")
        install = _where(adv, 30, ["app"], ["InstallApp"], f"i.{app_src}", alias="i")
        retained = f"""SELECT DISTINCT l.uid FROM events l JOIN events i ON i.uid = l.uid
            AND floor(i.event_time / 86400) = floor(l.event_time / 86400) - 1
            WHERE {launch} AND {install}"""

        add(
            "app_installs_30d",
            "APP",
            lambda: _spec("APP", [_rule("INSTALL", apps, 30)]),
            _people(_where(adv, 30, ["app"], ["InstallApp"], app_src)),
        )
        add(
            "app_purchasers_90d",
            "APP",
            lambda: _spec("APP", [_rule("PURCHASE", apps, 90)]),
            _people(_where(adv, 90, ["app"], ["Purchase", "CompletePayment"], app_src)),
        )
        add(
            "app_day2_retained_30d",
            "APP",
            lambda: _spec("APP", [_rule("DAY 2 RETENTION", apps, 30)]),
            retained,
        )
        add(
            "app_active_not_paying",
            "APP",
            lambda: _spec("APP", [_rule("LAUNCH APP", apps, 7)], [_rule("PURCHASE", apps, 30)]),
            f"{_people(_where(adv, 7, ['app'], ['LaunchAPP'], app_src))} EXCEPT "
            f"{_people(_where(adv, 30, ['app'], ['Purchase', 'CompletePayment'], app_src))}",
        )
        big_cart = {"field": "VALUE", "operator": "IS_GREATER_THAN_OR_EQUAL_TO", "values": ["80"]}
        add(
            "app_big_carts",
            "APP",
            lambda f=big_cart: _spec("APP", [_rule("APP ADD TO CART", apps, 60, f)]),
            _people(_where(adv, 60, ["app"], ["AddToCart"], app_src, "value >= 80")),
        )
    groups = adgroups(a.id)
    some = [groups[int(k)] for k in rng.choice(len(groups), 5, replace=False)]
    add(
        "ad_clickers_30d",
        "ENGAGEMENT",
        lambda g=some: _spec("ENGAGEMENT", [_rule("CLICK", g, 30)]),
        _people(_where(adv, 30, ["engagement"], ["ad_click"], f"adgroup_id IN ({_q(some)})")),
    )
    add(
        "ad_viewers_75pct_14d",
        "ENGAGEMENT",
        lambda: _spec("ENGAGEMENT", [_rule("PLAY 75", None, 14)]),
        _people(
            _where(
                adv,
                14,
                ["engagement"],
                ["video_play"],
                "adgroup_id IS NOT NULL",  # ads' plays, not of the advertiser's posts
                "watched_percent >= 75",
            )
        ),
    )
    add(
        "ad_impressions_7d",
        "ENGAGEMENT",
        lambda: _spec("ENGAGEMENT", [_rule("IMPRESSION", None, 7)]),
        _people(_where(adv, 7, ["engagement"], ["ad_impression"], "adgroup_id IS NOT NULL")),
    )
    some_posts = [posts(a.id)[int(k)] for k in rng.choice(30, 4, replace=False)]
    in_posts = f"content_id IN ({_q(some_posts)})"
    add(
        "organic_viewers_6s",
        "ENGAGEMENT_ORGANIC_VIDEO",
        lambda p=some_posts: _spec(
            "ENGAGEMENT_ORGANIC_VIDEO", [_rule("ORGANIC VIDEO PLAY 6S", p, 30)]
        ),
        _people(
            _where(
                adv,
                30,
                ["engagement"],
                ["video_play"],
                in_posts,
                "watched_seconds >= 6",
                organic=True,
            )
        ),
    )
    add(
        "organic_engaged_14d",
        "ENGAGEMENT_ORGANIC_VIDEO",
        lambda p=some_posts: _spec(
            "ENGAGEMENT_ORGANIC_VIDEO", [_rule("ORGANIC VIDEO ENGAGEMENT", p, 14)]
        ),
        _people(
            _where(adv, 14, ["engagement"], ["like", "comment", "share"], in_posts, organic=True)
        ),
    )
    live_ids = lives(a.id)[:2]
    add(
        "live_viewers_7d",
        "ENGAGEMENT_LIVE_VIDEO",
        lambda ls=live_ids: _spec("ENGAGEMENT_LIVE_VIDEO", [_rule("LIVE VIDEO VIEW", ls, 7)]),
        _people(
            _where(
                adv, 7, ["engagement"], ["live_view"], f"live_id IN ({_q(live_ids)})", organic=True
            )
        ),
    )
    add(
        "followers_180d",
        "BUSINESS_ACCOUNT",
        lambda: _spec(
            "BUSINESS_ACCOUNT", [_rule("BUSINESS ACCOUNT PROFILE FOLLOW", [a.account], 180)]
        ),
        _people(
            _where(
                adv, 180, ["engagement"], ["follow"], f"account_id = '{a.account}'", organic=True
            )
        ),
    )
    add(
        "lead_submitters_90d",
        "LEAD_GENERATION",
        lambda: _spec("LEAD_GENERATION", [_rule("LEAD GENERATION FORM SUBMISSION", None, 90)]),
        _people(_where(adv, 90, ["engagement"], ["lead_form_submit"], "form_id IS NOT NULL")),
    )
    add(
        "shop_buyers_60d",
        "TIKTOK_SHOP",
        lambda: _spec("TIKTOK_SHOP", [_rule("TIKTOK SHOP COMPLETE PAYMENT", [f"shop-{adv}"], 60)]),
        _people(_where(adv, 60, ["engagement"], ["shop_purchase"])),
    )
    if a.offline:
        off = list(a.offline)
        big = {"field": "VALUE", "operator": "IS_GREATER_THAN_OR_EQUAL_TO", "values": ["100"]}
        add(
            "store_buyers_100",
            "OFFLINE",
            lambda f=big: _spec("OFFLINE", [_rule("OFFLINE COMPLETE PAYMENT", off, 180, f)]),
            _people(
                _where(
                    adv, 180, ["offline", "crm"], BUY, f"source_id IN ({_q(off)})", "value >= 100"
                )
            ),
        )
    return out


# Mostly TikTok's own kinds: web audiences first, then app, engagement and offline.
PRIORITY = [
    "buyers_",
    "visited_",
    "cart_abandoners_",
    "app_installs_30d",
    "ad_clickers_30d",
    "organic_viewers_6s",
    "high_value_buyers_",
    "store_buyers_100",
    "app_day2_retained_30d",
    "viewed_",
    "ad_viewers_75pct_14d",
    "live_viewers_7d",
    "checkout_or_cart_not_bought",
    "followers_180d",
    "app_purchasers_90d",
    "carted_skus",
    "lead_submitters_90d",
    "repeat_buyers_3",
    "top_10pct_spenders",
    "app_active_not_paying",
    "shop_buyers_60d",
    "ad_impressions_7d",
    "spent_500",
    "organic_engaged_14d",
    "viewed_and_carted_7d",
    "app_big_carts",
]


def audiences(params: Params, count: int) -> list[Audience]:
    """``count`` audiences, round-robin over the advertisers, each advertiser's in
    :data:`PRIORITY` order (so about five of the kinds above per advertiser at 100)."""
    rng = np.random.default_rng(params.seed + 7)
    advs = advertisers(params.advertisers, params.users, params.seed)
    menus = []
    for a in advs:
        templates = _audience_templates(a, rng)

        def rank(t: tuple[str, str, Callable[[], Plan], str]) -> int:
            return next(i for i, p in enumerate(PRIORITY) if t[0].startswith(p))

        # Each advertiser starts at a different point of the list, so kinds spread evenly.
        ordered = sorted(templates, key=rank)
        shift = (a.id * 3) % len(ordered)
        menus.append(ordered[shift:] + ordered[:shift])
    out: list[Audience] = []
    i = 0
    while len(out) < count:
        a = advs[i % len(advs)]
        menu = menus[i % len(advs)]
        k = i // len(advs)
        if k >= len(menu):
            raise SystemExit(f"at most {sum(len(m) for m in menus)} audiences")
        name, _, plan, sql = menu[k]
        out.append(Audience(f"a{a.id}_{name}", a.id, plan(), sql))
        i += 1
    return out


# --- the run ------------------------------------------------------------------------------------


def _bitmap(con: duckdb.DuckDBPyConnection, sql: str) -> BitMap:
    uids = con.execute(sql).fetchnumpy()["uid"]
    return BitMap(np.asarray(uids, dtype=np.uint32))


_RUN: dict[str, Any] = {}  # what the phases read: set before they fork, so nothing is pickled


def _phase(kind: str) -> dict[str, Any]:
    """One measured phase, in its own process (its peak memory is its own): a fresh DuckDB
    connection with 2 threads, the ``events`` view, then (a), (b) or (c)."""
    folder: Path = _RUN["folder"]
    auds: list[Audience] = _RUN["audiences"]
    con = duckdb.connect(config={"threads": 2, "memory_limit": _RUN["memory_limit"]})
    pattern = str(folder / "data" / "**" / "*.parquet")
    con.execute(
        f"""CREATE VIEW events AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)
        WHERE NOT limited AND merged_into IS NULL"""
    )
    out: dict[str, Any] = {}
    members: dict[str, BitMap] = {}
    as_of = float(END)
    with PeakRSS(os.getpid()) as mem:
        t0 = time.perf_counter()
        if kind == "warm-up":  # reads the columns the audiences read, into the page cache
            row = con.execute(
                """SELECT count(*), approx_count_distinct(uid), sum(value), count(url),
                  count(content_ids), count(content_categories), count(adgroup_id),
                  count(content_id), count(live_id), count(account_id), count(form_id),
                  count(watched_seconds), count(watched_percent), count(channel), count(event),
                  count(source_id), min(event_time)
                FROM events"""
            ).fetchone()
            assert row is not None
            out["usable_events"] = row[0]
            out["distinct_users"] = row[1]
        elif kind == "a":
            slowest = (0.0, "")
            for aud in auds:
                t1 = time.perf_counter()
                members[aud.name] = _bitmap(con, aud.sql)
                slowest = max(slowest, (time.perf_counter() - t1, aud.name))
            out["slowest"] = [slowest[1], round(slowest[0], 2)]
        elif kind == "b":
            plans = {aud.name: (aud.plan, aud.advertiser_id) for aud in auds}
            members = evaluate_many(con, plans, as_of=as_of, events="events")
        else:
            for aud in auds:
                members[aud.name] = rule_sql.evaluate(
                    con, aud.plan, advertiser_id=aud.advertiser_id, as_of=as_of, events="events"
                )
        out["seconds"] = time.perf_counter() - t0
    con.close()
    out["peak_rss"] = mem.peak
    out["members"] = members
    return out


def _run(kind: str) -> dict[str, Any]:
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(_phase, (kind,))  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000_000)
    ap.add_argument("--audiences", type=int, default=100)
    ap.add_argument("--users", type=int, default=None, help="default: events / 10")
    ap.add_argument("--advertisers", type=int, default=20)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--memory-limit", default="8GB", help="DuckDB's memory_limit")
    ap.add_argument("--skip-per-plan", action="store_true", help="skip (c), rule_sql per plan")
    ap.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("LIKEWISE_BENCH_DIR", tempfile.gettempdir()))
        / "likewise-bench-rules",
        help="where generated datasets are kept (and reused)",
    )
    args = ap.parse_args()
    users = args.users or max(1000, args.events // 10)
    params = Params(args.events, users, args.advertisers, args.days, args.seed)
    folder, generated, reused = dataset(params, args.dir)
    rows = json.loads((folder / "params.json").read_text())["rows"]
    how = "reused" if reused else f"generated in {generated:.1f}s"
    print(f"{rows:,} events in {folder} ({how})", flush=True)
    auds = audiences(params, args.audiences)
    _RUN.update(folder=folder, audiences=auds, memory_limit=args.memory_limit)

    warm = _run("warm-up")
    print(f"{warm['usable_events']:,} usable events, warm-up {warm['seconds']:.1f}s", flush=True)
    a = _run("a")
    print(f"(a) hand-written, one query per audience: {a['seconds']:.2f}s", flush=True)
    b = _run("b")
    print(f"(b) evaluate_many, all at once: {b['seconds']:.2f}s", flush=True)
    c = None if args.skip_per_plan else _run("c")
    if c is not None:
        print(f"(c) rule_sql.evaluate, one query per plan: {c['seconds']:.2f}s", flush=True)

    expected: dict[str, BitMap] = a["members"]
    wrong = []
    for label, phase in (("evaluate_many", b), ("rule_sql per plan", c)):
        if phase is None:
            continue
        for aud in auds:
            got, want = phase["members"][aud.name], expected[aud.name]
            if got != want:
                wrong.append(aud.name)
                print(
                    f"MISMATCH {aud.name} ({label}): hand-written {len(want):,} people, "
                    f"Likewise {len(got):,}, {len(got ^ want):,} differ",
                    file=sys.stderr,
                )
    sizes = sorted(len(m) for m in expected.values())
    by_kind: dict[str, int] = {}
    for aud in auds:
        by_kind[aud.plan.audience_type.value] = by_kind.get(aud.plan.audience_type.value, 0) + 1
    result: dict[str, Any] = {
        "events": rows,
        "usable_events": warm["usable_events"],
        "users": users,
        "distinct_users_approx": warm["distinct_users"],
        "advertisers": args.advertisers,
        "audiences": len(auds),
        "audience_types": by_kind,
        "dataset": str(folder),
        "generate_seconds": None if reused else round(generated, 1),
        "warm_up_scan_seconds": round(warm["seconds"], 2),
        "a_handwritten_seconds": round(a["seconds"], 2),
        "a_slowest_query": a["slowest"],
        "b_evaluate_many_seconds": round(b["seconds"], 2),
        "c_rule_sql_per_plan_seconds": None if c is None else round(c["seconds"], 2),
        "ratio_b_to_a": round(b["seconds"] / a["seconds"], 3),
        "speedup_vs_a": round(a["seconds"] / b["seconds"], 2),
        "peak_rss_warm_up": gib(warm["peak_rss"]),
        "peak_rss_a": gib(a["peak_rss"]),
        "peak_rss_b": gib(b["peak_rss"]),
        "peak_rss_c": None if c is None else gib(c["peak_rss"]),
        "members_total": sum(sizes),
        "audience_sizes_min_median_max": [sizes[0], sizes[len(sizes) // 2], sizes[-1]],
        "empty_audiences": sum(1 for s in sizes if s == 0),
        "agree": not wrong,
        "targets": {"b_faster_than_a": True, "b_seconds_at_most": 60},
    }
    print(json.dumps(result, indent=2))
    if wrong:
        raise SystemExit(f"{len(wrong)} audiences differ from the hand-written queries")


if __name__ == "__main__":
    main()
