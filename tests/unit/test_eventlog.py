"""The durable event log: group commit, rotation, torn tails, restart."""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from pathlib import Path

import pytest

from likewise.store.eventlog import HEADER_SIZE, LEGACY_HEADER, EventLog, read_segment


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
    log = EventLog(tmp_path, segment_bytes=150)
    for _ in range(10):
        log.append(b"x" * 60)  # 96 bytes with the header: a segment fills at the second
    assert len(log.sealed()) == 5
    assert sum(len(list(EventLog.records(p))) for p in log.sealed()) == 10
    log.close()


@pytest.mark.parametrize("cut", [1, HEADER_SIZE - 1, HEADER_SIZE + 3])
def test_torn_tail_is_ignored_and_restart_starts_a_new_segment(tmp_path: Path, cut: int) -> None:
    log = EventLog(tmp_path)
    log.append(b"first")
    log.append(b"second")
    log.close()
    (segment,) = list(tmp_path.glob("*.log"))
    data = segment.read_bytes()
    record = HEADER_SIZE + len(b"second")
    segment.write_bytes(data[: len(data) - record + cut])  # the second record, half written
    assert list(EventLog.records(segment)) == [b"first"]
    assert not read_segment(segment).whole

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


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: b'{"_LOG":"'.join(d.rsplit(b'{"_log":"', 1)),  # the second header's opening
        lambda d: d[:-9] + b"Z" + d[-8:],  # not hexadecimal
        lambda d: b'"} '.join(d.rsplit(b'"}\n', 1)),  # the second header line does not end
    ],
)
def test_a_damaged_header_stops_the_reader(tmp_path: Path, damage: object) -> None:
    log = EventLog(tmp_path)
    log.append(b"good\n")
    log.append(b"next\n")
    log.close()
    (segment,) = list(tmp_path.glob("*.log"))
    segment.write_bytes(damage(segment.read_bytes()))  # type: ignore[operator]
    assert list(EventLog.records(segment)) == [b"good\n"]


def test_a_segment_of_json_lines_is_json_lines(tmp_path: Path) -> None:
    """Header lines are JSON objects of their own: a segment whose payloads are JSON lines
    can be read by a JSON-lines reader as it lies (the processor has DuckDB do so)."""
    log = EventLog(tmp_path)
    log.append(b'{"a": 1}\n{"a": 2}\n')
    log.append(b'{"a": 3}\n')
    log.rotate()
    (segment,) = log.sealed()
    log.close()
    lines = [json.loads(line) for line in segment.read_bytes().splitlines()]
    assert [line.get("a") for line in lines] == [None, 1, 2, None, 3]
    assert all(set(line) == {"_log"} for line in lines if "a" not in line)
    read = read_segment(segment)
    assert read.whole and read.size == len(b'{"a": 1}\n{"a": 2}\n{"a": 3}\n')


def test_segments_of_the_first_format_are_read(tmp_path: Path) -> None:
    """Segments written before headers were lines (binary: length, zlib CRC-32) are read, up
    to a torn tail, and never taken for JSON lines."""
    records = [b"one\n", b"two\n", b"three\n"]
    data = b"".join(LEGACY_HEADER.pack(len(r), zlib.crc32(r)) + r for r in records)
    segment = tmp_path / "000000000001.log"
    segment.write_bytes(data[:-2])
    assert list(EventLog.records(segment)) == records[:2]
    assert not read_segment(segment).whole
    log = EventLog(tmp_path)  # starts after it, in the new format
    log.append(b"four\n")
    log.rotate()
    assert [r for p in log.sealed() for r in EventLog.records(p)] == [*records[:2], b"four\n"]
    log.close()


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
