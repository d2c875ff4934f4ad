"""Benchmark: live rule audiences under a steady event load.

A real server (event worker process, durable intake) takes a steady load of Events API requests
(``--rate`` events/s, 1,000 per request, spread over ``--advertisers`` pixels) for ``--seconds``,
twice in the same run:

* baseline: no audiences;
* live: ``--audiences`` auto-refresh rule audiences over those pixels (funnel steps, URL and
  value filters, exclusions, several windows).

Every request also carries one *probe*: a purchase by a user who did nothing before, so that
user must join that advertiser's "purchasers" audience. The sender notes when the request was
acknowledged; a listener in the server notes when the user appears in the audience's members
(what readers see). Latency = appearance - acknowledgement, p50 and p99 over every probe.

Ingest rate = events acknowledged / (load time + time to process what was still queued when
the load stopped): the same in both runs when processing keeps up.

    python bench/rules_live.py --seconds 60
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import uvicorn
from pyroaring import BitMap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PeakRSS, free_port, gib, work_dir
from likewise.api import create_app
from likewise.ingest.users import import_users
from likewise.runtime import Runtime
from likewise.settings import Settings

PER_REQUEST = 1_000
PATH = "/open_api/v1.3/event/track/"
EVENTS = ["Pageview", "ViewContent", "AddToCart", "InitiateCheckout", "CompletePayment", "Search"]
WEIGHTS = [40, 30, 12, 6, 4, 8]
# Set before the senders fork: they wait at READY, then start at START.
READY: Any = None
START: Any = None


def email(user: str) -> str:
    return f"{user}@bench.example"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- audiences -----------------------------------------------------------------------------------


def rule(pixel: str, value: str, days: int = 30, **params: Any) -> dict[str, Any]:
    filt: dict[str, Any] = {"field": "EVENT", "operator": "EQ", "value": value}
    if params:
        filt["parameter_filters"] = [
            {"field": f, "operator": op, "values": values} for f, (op, values) in params.items()
        ]
    return {
        "event_source_ids": [pixel],
        "retention_days": days,
        "filter_set": {"operator": "OR", "filters": [filt]},
    }


def specs(pixel: str) -> list[dict[str, Any]]:
    """Ten audiences of one advertiser; the first is the probes' ("purchasers, 30 days")."""

    def one(*rules: dict[str, Any], exclude: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"inclusion_rule_set": {"operator": "OR", "rules": list(rules)}}
        if exclude:
            spec["exclusion_rule_set"] = {"operator": "OR", "rules": exclude}
        return spec

    return [
        one(rule(pixel, "COMPLETE PAYMENT", 30)),
        one(rule(pixel, "PAGE BROWSE", 7)),
        one(rule(pixel, "PAGE BROWSE", 30, URL=("CONTAINS", ["/sale/"]))),
        one(rule(pixel, "ADD TO CART", 14), exclude=[rule(pixel, "COMPLETE PAYMENT", 14)]),
        one(rule(pixel, "INITIATE CHECKOUT", 7), exclude=[rule(pixel, "COMPLETE PAYMENT", 7)]),
        one(rule(pixel, "COMPLETE PAYMENT", 90, VALUE=("IS_GREATER_THAN", ["100"]))),
        one(rule(pixel, "PRODUCT DETAIL PAGE BROWSE", 30, CONTENT_ID=("EQ", ["sku-1", "sku-2"]))),
        one(rule(pixel, "SEARCH", 3), rule(pixel, "ADD TO CART", 3)),
        one(rule(pixel, "PAGE BROWSE", 180), exclude=[rule(pixel, "ADD TO CART", 180)]),
        one(rule(pixel, "PRODUCT DETAIL PAGE BROWSE", 1, URL=("DOES_NOT_CONTAIN", ["/sale/"]))),
    ]


# --- the load ------------------------------------------------------------------------------------


def make_bodies(pixel: str, sender: int, users: int, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    hashed: dict[int, str] = {}
    bodies = []
    for b in range(count):
        data = []
        for i in range(PER_REQUEST - 1):
            u = rng.randrange(users)
            key = hashed.get(u) or hashed.setdefault(u, sha(email(f"u{u}")))
            event = rng.choices(EVENTS, WEIGHTS)[0]
            sku = f"sku-{rng.randrange(50)}"
            data.append(
                {
                    "event": event,
                    "event_time": 0,  # set when sent
                    "event_id": f"s{sender}-b{b}-e{i}",
                    "user": {"email": key},
                    "page": {"url": f"https://shop.example/{rng.choice(['sale', 'p'])}/{sku}"},
                    "properties": {
                        "contents": [{"content_id": sku, "price": 19.9, "quantity": 1}],
                        "value": round(rng.uniform(5, 300), 2),
                        "currency": "USD",
                    },
                }
            )
        bodies.append({"event_source": "web", "event_source_id": pixel, "data": data})
    return bodies


def sender(args: tuple[Any, ...]) -> tuple[int, int, list[tuple[str, float]]]:
    """Post at the given rate for ``seconds`` once every sender is ready; returns (events
    acknowledged, failures, [(probe user, acknowledged at)])."""
    url, token, pixels, sender_no, users, interval, seconds = args
    rounds = 20
    bodies = {
        p: make_bodies(p, sender_no, users, rounds, sender_no * 1000 + n)
        for n, p in enumerate(pixels)
    }
    target = urlparse(url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    headers = {"Access-Token": token, "Content-Type": "application/json"}
    ok = failed = 0
    probes: list[tuple[str, float]] = []
    READY.wait()  # every sender built its bodies
    READY.wait()  # and the start time is set
    start_at = START.value
    stop_at = start_at + seconds
    due = start_at + sender_no * interval / 2
    n = 0
    while True:
        now = time.time()
        if now >= stop_at:
            break
        if now < due:
            time.sleep(due - now)
        due += interval
        pixel = pixels[n % len(pixels)]
        body = bodies[pixel][(n // len(pixels)) % rounds]
        n += 1
        stamp = int(time.time()) - 1
        for event in body["data"]:
            event["event_time"] = stamp
        probe = f"probe-{sender_no}-{n}"
        probe_event = {
            "event": "CompletePayment",
            "event_time": stamp,
            "event_id": probe,
            "user": {"email": sha(email(probe))},
            "page": {"url": "https://shop.example/checkout"},
            "properties": {"value": 10.0, "currency": "USD"},
        }
        raw = json.dumps({**body, "data": [*body["data"], probe_event]}).encode()
        conn.request("POST", PATH, body=raw, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        acked = time.time()
        if response.status == 200 and answer.startswith(b'{"code":0'):
            ok += PER_REQUEST
            probes.append((probe, acked))
        else:
            failed += 1
    conn.close()
    return ok, failed, probes


# --- one run -------------------------------------------------------------------------------------


class Seen:
    """Notes when each probe user first appears in a watched audience."""

    def __init__(self, runtime: Runtime, audience_ids: set[int], probes: BitMap) -> None:
        self.runtime = runtime
        self.audience_ids = audience_ids
        self.probes = probes
        self.first: dict[int, float] = {}
        self._last: dict[int, BitMap] = {}
        self._lock = threading.Lock()

    def __call__(self, audience_id: int) -> None:
        if audience_id not in self.audience_ids:
            return
        now = time.time()
        members = self.runtime.audiences.current_members(audience_id)
        with self._lock:
            new = (members - self._last.get(audience_id, BitMap())) & self.probes
            self._last[audience_id] = members
            for uid in new:
                self.first.setdefault(uid, now)


def run(args: argparse.Namespace, audiences: int) -> dict[str, Any]:
    data = work_dir() / "data"
    settings = Settings(data_dir=data, port=free_port(), admin_token="bench", min_audience_size=1)
    runtime = Runtime(settings)
    runtime.start()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime=runtime),
            host="127.0.0.1",
            port=settings.port,
            log_level="warning",
            access_log=False,
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{settings.port}"
    try:
        return measure(args, runtime, url, audiences)
    finally:
        server.should_exit = True
        time.sleep(0.5)
        runtime.close()


def measure(args: argparse.Namespace, runtime: Runtime, url: str, audiences: int) -> dict[str, Any]:
    now = runtime.clock()
    senders = args.senders
    requests_per_second = args.rate / PER_REQUEST
    probes = [
        f"probe-{s}-{n}"
        for s in range(senders)
        for n in range(1, int(requests_per_second / senders * args.seconds) + 50)
    ]
    users = [f"u{i}" for i in range(args.users)] + probes
    import_users(runtime.graph, pa.table({"user_id": users, "email": [email(u) for u in users]}))
    with runtime.graph.connect() as con:
        uid_of = {
            ext: int(uid)
            for ext, uid in con.execute(
                "SELECT ext_id, uid FROM users WHERE ext_id LIKE 'probe-%'"
            ).fetchall()
        }
    advertisers = []
    for a in range(args.advertisers):
        adv = runtime.tenants.create_advertiser(name=f"bench {a}", now=now)
        pixel = runtime.sources.create(advertiser_id=adv.id, kind="PIXEL", name=f"pixel {a}")
        advertisers.append((adv.id, str(pixel.id), pixel.code))
    token = runtime.tenants.create_token(advertiser_ids=[a[0] for a in advertisers], now=now)
    probe_audiences: set[int] = set()
    made = 0
    for k in range(10):  # step k of every advertiser, then step k + 1: any count spreads evenly
        for adv_id, pixel_id, _ in advertisers:
            if made == audiences:
                break
            body = {"audience_type": "PIXEL", "rule_spec": specs(pixel_id)[k]}
            audience_id = runtime.rules.create(advertiser_id=adv_id, name=f"a{made}", body=body)
            if k == 0:
                probe_audiences.add(audience_id)
            made += 1
    runtime.jobs.wait_idle(300)
    seen = Seen(runtime, probe_audiences, BitMap(uid_of.values()))
    runtime.audiences.add_listener(seen)

    interval = senders / requests_per_second
    codes = [a[2] for a in advertisers]
    jobs = [
        (url, token, codes[s::senders] or codes, s, args.users, interval, args.seconds)
        for s in range(senders)
    ]
    global READY, START
    ctx = multiprocessing.get_context("fork")
    READY = ctx.Barrier(senders + 1)
    START = ctx.Value("d", 0.0)
    with PeakRSS(multiprocessing.current_process().pid) as rss:
        with ctx.Pool(senders) as pool:
            pending = pool.map_async(sender, jobs)
            READY.wait()
            START.value = start_at = time.time() + 0.2
            READY.wait()
            results = pending.get()
        loaded = time.time()
        runtime.events.flush()  # what was still queued when the load stopped
        drained = time.time()
        time.sleep(1.0)  # the last live changes
    acked = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    latencies = sorted(
        seen.first[uid_of[p]] - t for r in results for p, t in r[2] if uid_of[p] in seen.first
    )
    probes_sent = sum(len(r[2]) for r in results)

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000)

    return {
        "audiences": audiences,
        "events_acknowledged": acked,
        "failed_requests": failed,
        "offered_per_second": args.rate,
        "acknowledged_per_second": round(acked / args.seconds),
        "drain_seconds": round(drained - loaded, 2),
        "ingest_per_second": round(acked / (drained - start_at)),
        "probes": probes_sent,
        "probes_seen": len(latencies),
        "latency_p50_ms": pct(0.50),
        "latency_p99_ms": pct(0.99),
        "latency_max_ms": pct(1.0),
        "peak_rss": gib(rss.peak),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=20_000.0, help="events per second offered")
    ap.add_argument("--audiences", type=int, default=100)
    ap.add_argument("--advertisers", type=int, default=10)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--live-only", action="store_true", help="skip the baseline (profiling)")
    args = ap.parse_args()
    if args.live_only:
        print(json.dumps({"live": run(args, args.audiences)}))
        return
    baseline = run(args, 0)
    print(json.dumps({"baseline": baseline}), flush=True)
    live = run(args, args.audiences)
    print(json.dumps({"live": live}), flush=True)
    ratio = live["ingest_per_second"] / max(baseline["ingest_per_second"], 1)
    print(
        json.dumps(
            {
                "ingest_ratio_live_vs_baseline": round(ratio, 3),
                "target": "ratio >= 0.70 and live p99 <= 1000 ms",
                "met": ratio >= 0.70 and (live["latency_p99_ms"] or 1e9) <= 1000,
            }
        )
    )


if __name__ == "__main__":
    main()
