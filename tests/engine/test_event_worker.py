"""The event worker process: the server's requests to it (flush, stats, resolutions, erasure)
mean what they mean in-process, a worker that dies is started again, and stopping it hands the
state back to the server's process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from likewise.identity.hashing import sha256_hex
from likewise.ingest.records import EventRecord
from likewise.ingest.users import import_users
from likewise.runtime import Runtime
from likewise.settings import Settings

EMAIL = "ann@example.com"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(Settings(data_dir=tmp_path / "data"))
    import_users(
        rt.graph,
        pa.table({"user_id": ["ann"], "email": [EMAIL]}),
    )
    rt.start()
    assert rt.events.worker is not None, "the default runtime processes events in a worker"
    try:
        yield rt
    finally:
        rt.close()


def send(rt: Runtime, *event_ids: str, source_id: int = 11, advertiser_id: int = 5) -> None:
    now = time.time()
    records = [
        EventRecord(
            source_id=source_id,
            advertiser_id=advertiser_id,
            channel="web",
            event="Purchase",
            event_time=now,
            received_at=now,
            event_id=event_id,
            email=[sha256_hex(EMAIL)],
        )
        for event_id in event_ids
    ]
    asyncio.run(rt.events.accept(records))


def test_requests_to_the_worker(runtime: Runtime) -> None:
    send(runtime, "o-1", "o-2", "o-1")  # a retried order: dropped as a duplicate
    assert runtime.events.flush() == 2
    today = datetime.now(UTC).date()
    [row] = runtime.events.stats([11], today, today)
    assert (row["event"], row["received"], row["deduplicated"]) == ("Purchase", 3, 1)
    owners = runtime.events.users_of_events(5)
    assert set(owners) == {"o-1", "o-2"} and len(set(owners.values())) == 1
    assert set(runtime.events.usable_uids(5)) == set(owners.values())
    assert not runtime.events.usable_uids(5, events=["AddToCart"])
    # The audience engine's SQL runs in the worker, over every usable event.
    query = "SELECT uid FROM usable_events WHERE advertiser_id = 5 AND event = 'Purchase'"
    assert set(runtime.events.members(query)) == set(owners.values())
    assert not runtime.events.members(query.replace("= 5", "= 6"))
    assert runtime.erase_users(["ann"]) == (1, [])
    assert runtime.events.users_of_events(5) == {}


def test_a_worker_that_died_is_started_again(runtime: Runtime) -> None:
    worker = runtime.events.worker
    assert worker is not None and worker._process is not None
    os.kill(worker._process.pid, signal.SIGKILL)
    worker._process.join(10)
    send(runtime, "after-crash")  # acceptance never depended on the worker
    assert runtime.events.flush() == 1
    assert worker._process.is_alive()


def test_stopping_the_worker_hands_processing_back(runtime: Runtime) -> None:
    send(runtime, "a")
    runtime.events.flush()
    runtime.events.stop_processing()
    assert runtime.events.worker is None
    send(runtime, "b")
    assert runtime.events.flush() == 1  # in this process now: the state database is free
    assert set(runtime.events.users_of_events(5)) == {"a", "b"}
