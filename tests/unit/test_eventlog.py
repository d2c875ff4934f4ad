"""The durable event log: group commit, rotation, torn tails, restart."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from likewise.store.eventlog import HEADER, EventLog


def test_appends_are_read_back_in_order_after_rotation(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    for i in range(5):
        log.append(f"batch-{i}".encode())
    assert log.sealed() == []  # the current segment is still being written
    log.rotate()
    sealed = log.sealed()
    assert len(sealed) == 1
    assert [r.decode() for r in EventLog.records(sealed[0])] == [f"batch-{i}" for i in range(5)]
    log.rotate()  # nothing new: no empty segment is sealed
    assert log.sealed() == sealed
    log.close()


def test_concurrent_senders_all_land_exactly_once(tmp_path: Path) -> None:
    log = EventLog(tmp_path)

    def send(worker: int) -> None:
        for i in range(200):
            log.append(f"{worker}:{i}".encode())

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.rotate()
    got = [r.decode() for p in log.sealed() for r in EventLog.records(p)]
    assert sorted(got) == sorted(f"{w}:{i}" for w in range(8) for i in range(200))
    log.close()


def test_async_append(tmp_path: Path) -> None:
    log = EventLog(tmp_path)

    async def main() -> None:
        await asyncio.gather(*(log.append_async(f"{i}".encode()) for i in range(50)))

    asyncio.run(main())
    log.rotate()
    assert len([r for p in log.sealed() for r in EventLog.records(p)]) == 50
    log.close()


def test_segments_rotate_by_size(tmp_path: Path) -> None:
    log = EventLog(tmp_path, segment_bytes=100)
    for _ in range(10):
        log.append(b"x" * 60)  # 68 bytes with the header: a segment fills at the second
    assert len(log.sealed()) == 5
    assert sum(len(list(EventLog.records(p))) for p in log.sealed()) == 10
    log.close()


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size + 3])
def test_torn_tail_is_ignored_and_restart_starts_a_new_segment(tmp_path: Path, cut: int) -> None:
    log = EventLog(tmp_path)
    log.append(b"first")
    log.append(b"second")
    log.close()
    (segment,) = list(tmp_path.glob("*.log"))
    data = segment.read_bytes()
    record = HEADER.size + len(b"second")
    segment.write_bytes(data[: len(data) - record + cut])  # the second record, half written
    assert list(EventLog.records(segment)) == [b"first"]

    reopened = EventLog(tmp_path)
    assert reopened.sealed() == [segment]  # never appended to again
    reopened.append(b"third")
    reopened.rotate()
    assert [r for p in reopened.sealed() for r in EventLog.records(p)] == [b"first", b"third"]
    reopened.close()


def test_corrupt_record_stops_the_reader(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.append(b"good")
    log.append(b"flipped")
    log.close()
    (segment,) = list(tmp_path.glob("*.log"))
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert list(EventLog.records(segment)) == [b"good"]


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.append(b"late")


def test_a_failed_write_is_reported_and_later_appends_stay_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fails half-way through a write (ENOSPC): that sender gets the error, and what
    is acknowledged afterwards is not stranded behind the torn record."""
    import errno
    import os

    from likewise.store import eventlog

    log = EventLog(tmp_path)
    log.append(b"before")
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(eventlog.os, "write", failing_write)
    with pytest.raises(OSError, match="No space"):
        log.append(b"x" * 1000)
    monkeypatch.setattr(eventlog.os, "write", real_write)
    log.append(b"after")
    log.rotate()
    found = [r for segment in log.sealed() for r in EventLog.records(segment)]
    assert found == [b"before", b"after"]
    log.close()
