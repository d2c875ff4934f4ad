"""Benchmark: Events API intake over loopback HTTP, durable (acknowledged = fsync'd).

Two loads against ``likewise serve`` and, in the same run, against a bare endpoint in the same
framework and server that only parses the JSON body and answers (``bench/bare_app.py``):

* batched: several concurrent senders, 1,000 events per ``event/track/`` request;
* single: several concurrent senders, one event per request; rate and p50/p99 latency.

Senders are separate processes with keep-alive connections and pre-encoded bodies, so the
client costs as little as possible on the 2-core machine (it shares the cores with the server).

    python bench/events.py --seconds 10
    python bench/events.py --seconds 10 --users 10000000   # with a 10M-user identity graph

With ``--users N`` the server's platform has N simulated users (imported before it starts) and
every other event carries the hashed e-mail of one of them, so identity resolution matches;
``--no-key-index`` resolves by joining with the graph for every batch instead of the in-memory
key index (``LIKEWISE_EVENT_KEY_INDEX=false``), for comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import httpx
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CPUTime, PeakRSS, bare_server, server, work_dir
from likewise.store.events import EventStore

BODIES_PER_SENDER = 50
# In every event_id: replaced by the request's number as each request is sent, so that no two
# events share an id (the server would drop repeats as duplicates) while the bodies are still
# encoded once (``bytes.join`` per request).
STAMP = b"@@@@@@@@@@"
# SHA-256 of platform users' e-mails (with --users): set before the senders fork.
KNOWN_EMAILS: list[str] = []


def make_bodies(pixel: str, sender: int, per_request: int) -> list[list[bytes]]:
    """Realistic events (hashed e-mail, page, properties), each body split at the stamps in its
    ids (see :func:`stamped`)."""
    now = int(time.time())
    bodies = []
    for b in range(BODIES_PER_SENDER):
        data = [
            {
                "event": "ViewContent" if i % 3 else "AddToCart",
                "event_time": now,
                "event_id": f"{STAMP.decode()}-n{per_request}-s{sender}-b{b}-e{i}",
                "user": {
                    "email": known_email(sender, b, i) or f"{(sender * 7919 + b * 131 + i):064x}",
                    "ttp": f"ttp-{sender}-{b}-{i}",
                },
                "page": {"url": f"https://shop.example/p/{i % 500}?utm_source=tiktok"},
                "properties": {
                    "contents": [{"content_id": f"sku-{i % 500}", "price": 19.9, "quantity": 1}],
                    "value": 19.9,
                    "currency": "USD",
                },
            }
            for i in range(per_request)
        ]
        body = {"event_source": "web", "event_source_id": pixel, "data": data}
        bodies.append(json.dumps(body).encode().split(STAMP))
    return bodies


def stamped(parts: list[bytes], request: int) -> bytes:
    """The body with the request's number in every event id: ids never repeat in a run."""
    return f"{request:0{len(STAMP)}d}".encode().join(parts)


def known_email(sender: int, body: int, i: int) -> str | None:
    """Every other event: a platform user's e-mail (when there are users)."""
    if not KNOWN_EMAILS or i % 2:
        return None
    return KNOWN_EMAILS[(sender * 100_003 + body * 1_009 + i) % len(KNOWN_EMAILS)]


def platform_users(data: Path, n: int) -> float:
    """Import ``n`` simulated users into ``data`` (before the server starts); fills
    :data:`KNOWN_EMAILS`. Returns the seconds the import took."""
    from likewise.identity.email import normalize_email_basic
    from likewise.sim import generate_users

    work = data.parent
    users = generate_users(n, seed=3)
    pq.write_table(users, work / "users.parquet")
    emails = users.column("email").slice(0, 400_000).to_pylist()
    del users
    for raw in emails:
        basic = normalize_email_basic(raw) if raw else None
        if basic:
            KNOWN_EMAILS.append(hashlib.sha256(basic.encode()).hexdigest())
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "likewise.cli", "users", "import", str(work / "users.parquet")],
        env={**os.environ, "LIKEWISE_DATA_DIR": str(data)},
        capture_output=True,
        check=True,
    )
    return round(time.perf_counter() - t0, 1)


def sender(args: tuple[str, str, str, int, int, float, float]) -> tuple[int, int, list[float]]:
    """Post until ``stop_at``; returns (requests acknowledged, failures, latencies in ms)."""
    url, token, pixel, sender_no, per_request, start_at, stop_at = args
    bodies = make_bodies(pixel, sender_no, per_request)
    target = urlparse(url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    headers = {"Access-Token": token, "Content-Type": "application/json"}
    ok = failed = 0
    latencies: list[float] = []
    while time.time() < start_at:
        time.sleep(0.001)
    i = 0
    while time.time() < stop_at:
        body = stamped(bodies[i % len(bodies)], i)
        i += 1
        t0 = time.perf_counter()
        conn.request("POST", "/open_api/v1.3/event/track/", body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        latencies.append((time.perf_counter() - t0) * 1000)
        if response.status == 200 and answer.startswith(b'{"code":0'):
            ok += 1
        else:
            failed += 1
    conn.close()
    return ok, failed, latencies


def load(url: str, token: str, pixel: str, senders: int, per_request: int, seconds: float):
    start_at = time.time() + 1.0  # every sender built its bodies and connected
    stop_at = start_at + seconds
    jobs = [(url, token, pixel, s, per_request, start_at, stop_at) for s in range(senders)]
    with multiprocessing.get_context("fork").Pool(senders) as pool:
        results = pool.map(sender, jobs)
    ok = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    latencies = sorted(x for r in results for x in r[2])

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

    return {
        "per_request": per_request,
        "requests": ok,
        "failed": failed,
        "events_per_second": round(ok * per_request / seconds),
        "requests_per_second": round(ok / seconds),
        "p50_ms": pct(0.50) if latencies else None,
        "p99_ms": pct(0.99) if latencies else None,
    }


def trickle(url: str, token: str, pixel: str, rate: float, seconds: float, sender: int) -> int:
    """``rate`` single-event requests a second for ``seconds``; returns those acknowledged."""
    body = make_bodies(pixel, sender, 1)
    headers = {"Access-Token": token, "Content-Type": "application/json"}
    ok = 0
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            answer = client.post(
                "/open_api/v1.3/event/track/", content=stamped(body[i % len(body)], i)
            )
            ok += answer.json()["code"] == 0
        time.sleep(max(0.0, start + seconds - time.monotonic()))
    return ok


def per_event(spent: dict[str, float], result: dict[str, object]) -> dict[str, float]:
    """CPU microseconds per acknowledged event, by process."""
    events = int(result["requests"]) * int(result.get("per_request", 1))  # type: ignore[call-overload]
    return {name: round(s * 1e6 / max(events, 1), 2) for name, s in spent.items() if s > 0.05}


def drain(log_dir: Path, timeout: float = 300.0) -> float:
    """Seconds until the log holds nothing unprocessed (only the segment being written)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        segments = sorted(log_dir.glob("*.log"), key=lambda p: int(p.stem))
        if len(segments) <= 1 and all(p.stat().st_size == 0 for p in segments):
            break
        time.sleep(0.05)
    return round(time.monotonic() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch-senders", type=int, default=4)
    ap.add_argument("--single-senders", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--users", type=int, default=0, help="platform users in the identity graph")
    ap.add_argument("--trickle-rate", type=float, default=20.0, help="events/s of the trickle")
    ap.add_argument(
        "--settle", type=float, default=None, help="seconds before the trickle (2; 30 with users)"
    )
    ap.add_argument("--no-key-index", action="store_true", help="join with the graph instead")
    args = ap.parse_args()
    results: dict[str, object] = {"seconds": args.seconds, "batch": args.batch}
    data = work_dir() / "data"
    if args.users:
        results["users"] = args.users
        results["users_import_seconds"] = platform_users(data, args.users)
    env = {"LIKEWISE_EVENT_KEY_INDEX": "false"} if args.no_key_index else {}
    if args.settle is None:
        args.settle = 30.0 if args.users else 2.0
    results["key_index"] = not args.no_key_index

    url, bare = bare_server()
    try:
        cpu = CPUTime(bare.pid)
        results["bare_batched"] = load(url, "-", "-", args.batch_senders, args.batch, args.seconds)
        results["bare_batched_cpu_us_per_event"] = per_event(cpu.since(), results["bare_batched"])
        cpu = CPUTime(bare.pid)
        results["bare_single"] = load(url, "-", "-", args.single_senders, 1, args.seconds)
        results["bare_single_cpu_us_per_event"] = per_event(cpu.since(), results["bare_single"])
    finally:
        bare.terminate()
        bare.wait(30)

    with server(data, **env) as (url, proc), PeakRSS(proc.pid) as mem:
        admin = {"X-Admin-Token": "bench"}
        adv = httpx.post(
            url + "/admin/v1/advertisers", headers=admin, json={"name": "bench"}
        ).json()["data"]
        pixel = httpx.post(
            url + f"/admin/v1/advertisers/{adv['advertiser_id']}/event-sources",
            headers=admin,
            json={"kind": "PIXEL", "name": "bench pixel"},
        ).json()["data"]
        code, token = pixel["code"], adv["access_token"]
        # A trickle first, on a settled server (with users, the worker builds its key index
        # after the first event): what a quiet hour costs, each pass resolving a few events.
        first = trickle(url, token, code, 1.0, 1.0, sender=998)
        time.sleep(args.settle)
        cpu = CPUTime(proc.pid)
        sent = trickle(url, token, code, args.trickle_rate, args.seconds, sender=999)
        results["trickle"] = {
            "events_per_second": args.trickle_rate,
            "acknowledged": sent,
            "cpu_percent": {k: round(v * 100 / args.seconds, 1) for k, v in cpu.since().items()},
        }
        results["likewise_batched"] = load(
            url, token, code, args.batch_senders, args.batch, args.seconds
        )
        # Acceptance alone could outrun processing: how long the worker needs, after the load,
        # until every sealed segment is compacted (about one sealing interval if it keeps up).
        results["batched_backlog_seconds"] = drain(data / "events" / "log")
        # CPU per event, load and backlog together: the server's request path and its event
        # worker ("child"), which share the two cores with the senders.
        results["likewise_batched_cpu_us_per_event"] = per_event(
            cpu.since(), results["likewise_batched"]
        )
        results["likewise_single"] = load(url, token, code, args.single_senders, 1, args.seconds)
        results["single_backlog_seconds"] = drain(data / "events" / "log")
        results["likewise_single_cpu_us_per_event"] = per_event(
            cpu.since(), results["likewise_single"]
        )
        results["likewise_peak_rss_mib"] = round(mem.peak / 2**20)
    log_bytes = sum(p.stat().st_size for p in (data / "events").rglob("*") if p.is_file())
    results["event_files_mib"] = round(log_bytes / 2**20, 1)
    # Every acknowledged event is stored: ids never repeat, so none is a duplicate.
    results["events_acknowledged"] = (
        first
        + sent
        + sum(
            r["requests"] * r["per_request"]  # type: ignore[index]
            for r in (results["likewise_batched"], results["likewise_single"])
        )
    )
    store = EventStore(data / "events")
    try:
        source = store.sql_source()
        count = duckdb.sql(f"SELECT count(*) FROM {source}").fetchall() if source else [(0,)]
        results["events_stored"] = count[0][0]
    finally:
        store.close()

    lb, bb = results["likewise_batched"], results["bare_batched"]
    ls, bs = results["likewise_single"], results["bare_single"]
    assert isinstance(lb, dict) and isinstance(bb, dict)
    assert isinstance(ls, dict) and isinstance(bs, dict)
    results["batched_ratio_to_bare"] = round(lb["events_per_second"] / bb["events_per_second"], 3)
    results["single_ratio_to_bare"] = round(ls["events_per_second"] / bs["events_per_second"], 3)
    # Sustained means processed too: acknowledged events over the load and the backlog after it
    # (a little pessimistic: a worker that keeps up still needs a sealing interval and a pass).
    backlog = results["batched_backlog_seconds"]
    assert isinstance(backlog, float)
    processed = lb["requests"] * lb["per_request"] / (args.seconds + backlog)
    results["batched_processed_events_per_second"] = round(processed)
    results["batched_processed_ratio_to_bare"] = round(processed / bb["events_per_second"], 3)
    results["cores"] = os.cpu_count()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
