"""Acknowledged events survive kill -9: senders post concurrently, the server process is killed
mid-stream, and after a restart every acknowledged event is stored exactly once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import duckdb
import httpx
import psutil

from likewise.runtime import Runtime
from likewise.settings import Settings
from tests.api.test_durability import _serve
from tests.conftest import free_port

SENDERS = 4


def test_kill_9_keeps_every_acknowledged_event_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rt = Runtime(Settings(data_dir=data))
    advertiser = rt.tenants.create_advertiser(name="crash", now=rt.clock())
    token = rt.tenants.create_token(advertiser_ids=[advertiser.id], now=rt.clock())
    pixel = rt.sources.create(advertiser_id=advertiser.id, kind="PIXEL", name="crash")
    rt.close()

    port = free_port()
    proc = _serve(data, port)
    url = f"http://127.0.0.1:{port}/open_api/v1.3/event/track/"
    acked: list[set[str]] = [set() for _ in range(SENDERS)]
    stop = threading.Event()

    def send(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            i = 0
            while not stop.is_set():
                ids = [f"w{worker}-{i + j}" for j in range(20)]
                body = {
                    "event_source": "web",
                    "event_source_id": pixel.code,
                    "data": [
                        {
                            "event": "ViewContent",
                            "event_time": int(time.time()),
                            "event_id": event_id,
                            "page": {"url": "https://shop.example/"},
                        }
                        for event_id in ids
                    ],
                }
                try:
                    r = client.post(url, headers={"Access-Token": token}, content=json.dumps(body))
                except httpx.TransportError:
                    return  # the server is gone: this batch was never acknowledged
                if r.status_code == 200 and r.json()["code"] == 0:
                    acked[worker].update(ids)
                i += 20

    threads = [threading.Thread(target=send, args=(w,)) for w in range(SENDERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while sum(map(len, acked)) < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    # The event worker (a spawned child, with multiprocessing's resource tracker) must not
    # outlive the server: it notices the closed pipe and exits.
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any("spawn_main" in " ".join(c.cmdline()) for c in children), children
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"left running after the server was killed: {alive}"
    stop.set()
    for t in threads:
        t.join()
    expected = set().union(*acked)
    assert len(expected) >= 2000, "the senders should have been acknowledged before the kill"

    rt = Runtime(Settings(data_dir=data))
    try:
        rt.events.flush()
        source = rt.events.store.sql_source(advertiser.id)
        assert source is not None
        rows = duckdb.sql(f"SELECT event_id, count(*) FROM {source} GROUP BY event_id").fetchall()
    finally:
        rt.close()
    stored = {event_id: n for event_id, n in rows}
    assert expected <= set(stored), f"{len(expected - set(stored))} acknowledged events lost"
    assert max(stored.values()) == 1, "an event was stored twice"
