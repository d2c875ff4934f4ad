"""The event log: accepted event batches, durable before anyone is told "OK".

Appends go to numbered segment files (``<seq>.log``). Each record is a batch: a header line,
``{"_log":"<length><checksum>"}`` (the payload's length and XXH3-64 checksum, in hex),
then the payload (opaque bytes; the ingest layer writes JSON lines). A writer thread commits in
groups: every batch waiting when it wakes goes to disk in one synchronous (``O_DSYNC``) write,
so many concurrent senders share one disk flush.

The header is a JSON object on a line of its own so that a segment of JSON-lines payloads is
itself a JSON-lines file: the event processor checks the records' checksums, then has DuckDB
read the file where it lies (the header lines are rows with no event fields), with no copy.

Sealed segments (no longer written to) are read by the event processor, which compacts them into
Parquet and then deletes them. A crash can leave a torn record at the end of the last segment; it
was never acknowledged, and readers stop at it. Segments written before the header was a line
(an 8-byte binary header: length, zlib CRC-32) are still read.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import xxhash

_OPEN = b'{"_log":"'
_CLOSE = b'"}\n'
HEADER_SIZE = len(_OPEN) + 8 + 16 + len(_CLOSE)
# The first format's header: payload length, zlib CRC-32. Its first four bytes (a length) can
# never read as _OPEN's: that would be a record of over a gigabyte.
LEGACY_HEADER = struct.Struct("<II")
# Who waits for a batch: a thread (concurrent future) or a coroutine (its event loop's future).
Waiter: TypeAlias = "Future[None] | asyncio.Future[None]"
SUFFIX = ".log"


class EventLog:
    def __init__(
        self,
        folder: Path,
        *,
        segment_bytes: int = 64 * 1024 * 1024,
        seal_after: float | None = None,
    ) -> None:
        """``seal_after``: seconds after which the writer seals a segment holding anything by
        itself (when the processor runs in another process and cannot ask it to)."""
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.seal_after = seal_after
        self._opened_at = time.monotonic()
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Condition()
        self._pending: list[tuple[bytes, Waiter]] = []
        self._rotate_requested = False
        self._closed = False
        existing = self.segments()
        # Never append to a segment left by an earlier process: it may end in a torn record.
        self._seq = (int(existing[-1].stem) + 1) if existing else 1
        self._fd = self._open(self._seq)
        self._size = 0
        self._fsync_dir()
        self._writer = threading.Thread(target=self._run, name="event-log-writer", daemon=True)
        self._writer.start()

    # --- writing ---------------------------------------------------------------------------

    def append(self, payload: bytes) -> None:
        """Block until ``payload`` is on disk."""
        self.submit(payload).result()

    async def append_async(self, payload: bytes) -> None:
        """Wait, without blocking the event loop, until ``payload`` is on disk."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(payload, done)
        await done

    def submit(self, payload: bytes) -> Future[None]:
        done: Future[None] = Future()
        self._enqueue(payload, done)
        return done

    def _enqueue(self, payload: bytes, done: Waiter) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the event log is closed")
            self._pending.append((payload, done))
            self._lock.notify()

    def seal_every(self, seconds: float) -> None:
        """From now on, seal a segment holding anything after ``seconds`` (see ``seal_after``)."""
        with self._lock:
            self.seal_after = seconds
            self._lock.notify()  # the writer may be asleep without a deadline

    def rotate(self) -> None:
        """Seal the current segment (if it holds anything) so the processor can take it."""
        done: Future[None] = Future()
        with self._lock:
            if self._closed:
                return
            self._rotate_requested = True
            self._pending.append((b"", done))  # an empty marker: wakes the writer, not written
            self._lock.notify()
        done.result()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify()
        self._writer.join()
        os.close(self._fd)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed and not self._seal_due():
                    self._lock.wait(self._until_seal())
                batch, self._pending = self._pending, []
                rotate, self._rotate_requested = self._rotate_requested, False
                rotate = rotate or self._seal_due()
                closing = self._closed and not batch
            if closing:
                return
            try:
                self._write(batch, rotate)
            except BaseException as exc:  # the disk failed: every waiting sender must hear it
                _settle([done for _, done in batch], exc)
                continue
            _settle([done for _, done in batch], None)

    def _seal_due(self) -> bool:
        return (
            self.seal_after is not None
            and self._size > 0
            and time.monotonic() - self._opened_at >= self.seal_after
        )

    def _until_seal(self) -> float | None:
        """How long the writer may sleep: until the current segment is due to be sealed."""
        if self.seal_after is None:
            return None
        return max(0.01, self.seal_after - (time.monotonic() - self._opened_at))

    def _write(self, batch: list[tuple[bytes, Waiter]], rotate: bool) -> None:
        parts = []
        for payload, _ in batch:
            if payload:
                parts += (header(payload), payload)
        if parts:
            data = memoryview(b"".join(parts))
            size = len(data)
            try:
                while data:  # the file is O_DSYNC: each write returns once it is on disk
                    data = data[os.write(self._fd, data) :]
            except OSError:
                # What was written may end in a torn record, where readers stop: later groups
                # go to a new segment, or they would be unreadable behind it.
                os.close(self._fd)
                self._seq += 1
                self._fd = self._open(self._seq)
                self._size = 0
                self._opened_at = time.monotonic()
                raise
            self._size += size
        if (rotate and self._size) or self._size >= self.segment_bytes:
            os.close(self._fd)
            self._seq += 1
            self._fd = self._open(self._seq)
            self._size = 0
            self._opened_at = time.monotonic()
            self._fsync_dir()

    # --- reading ---------------------------------------------------------------------------

    def segments(self) -> list[Path]:
        return sorted(self.folder.glob(f"*{SUFFIX}"), key=lambda p: int(p.stem))

    @staticmethod
    def sealed_in(folder: Path) -> list[Path]:
        """Sealed segments as another process sees them: all but the newest, which a writer
        may still be appending to (each writer starts a new segment when it opens)."""
        return sorted(folder.glob(f"*{SUFFIX}"), key=lambda p: int(p.stem))[:-1]

    def sealed(self) -> list[Path]:
        """Segments the writer has finished with, oldest first."""
        with self._lock:
            current = self._seq
        return [p for p in self.segments() if int(p.stem) < current]

    @staticmethod
    def records(path: Path) -> Iterator[bytes]:
        """The intact records of a segment, in order; stops at a torn or corrupt tail."""
        for payload in read_segment(path).payloads:
            yield bytes(payload)

    def _open(self, seq: int) -> int:
        """A segment for appending, with O_DSYNC: a write is durable (data and size, like
        fdatasync) when it returns, in one call that releases the interpreter lock once; the
        writer thread then needs the lock back only once per group commit."""
        return os.open(self._path(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_DSYNC, 0o644)

    def _path(self, seq: int) -> Path:
        return self.folder / f"{seq:012d}{SUFFIX}"

    def _fsync_dir(self) -> None:
        # A new file's directory entry must be durable too, or a crash can lose the whole file.
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def header(payload: bytes) -> bytes:
    """A record's header line: the payload's length and XXH3-64 checksum (RocksDB's default
    block checksum; a twentieth of zlib's CRC-32 time, which both the writer and the reader
    pay for every byte)."""
    return b"%s%08x%016x%s" % (_OPEN, len(payload), xxhash.xxh3_64_intdigest(payload), _CLOSE)


@dataclass(frozen=True)
class Segment:
    """A segment as read: its intact records and whether the file can be read as it is."""

    path: Path
    payloads: list[memoryview]  # in order; views of the file, mapped into memory
    # Every byte of the file belongs to an intact record with a header line: if the payloads
    # are JSON lines, so is the file.
    whole: bool

    @property
    def size(self) -> int:
        """Bytes of payload."""
        return sum(map(len, self.payloads))


def read_segment(path: Path) -> Segment:
    """The intact records of the segment at ``path``, in order, stopping at a torn or corrupt
    tail (a crash while it was written: never acknowledged).

    The file is mapped, not read: the checksums and the reader that needs the payloads use the
    operating system's cached pages as they are (reading 64 MiB into new memory cost four
    times as much CPU as checking it)."""
    with path.open("rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return Segment(path, [], whole=True)
        data = memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
    payloads: list[memoryview] = []
    pos = 0
    if data[: len(_OPEN)] == _OPEN:  # the header line
        while pos + HEADER_SIZE <= len(data):
            head = bytes(data[pos : pos + HEADER_SIZE])
            if head[: len(_OPEN)] != _OPEN or head[-len(_CLOSE) :] != _CLOSE:
                break
            try:
                length = int(head[len(_OPEN) : len(_OPEN) + 8], 16)
                checksum = int(head[len(_OPEN) + 8 : len(_OPEN) + 24], 16)
            except ValueError:
                break
            if length < 0:
                break
            payload = data[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
            if len(payload) < length or xxhash.xxh3_64_intdigest(payload) != checksum:
                break
            payloads.append(payload)
            pos += HEADER_SIZE + length
        return Segment(path, payloads, whole=pos == len(data))
    while pos + LEGACY_HEADER.size <= len(data):
        length, crc = LEGACY_HEADER.unpack_from(data, pos)
        payload = data[pos + LEGACY_HEADER.size : pos + LEGACY_HEADER.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        payloads.append(payload)
        pos += LEGACY_HEADER.size + length
    return Segment(path, payloads, whole=False)  # binary headers: not JSON lines


def _settle(waiters: list[Waiter], exc: BaseException | None) -> None:
    """Tell every waiter of a group commit; coroutines with one callback per event loop (a
    thread hop each), not one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for done in waiters:
        if isinstance(done, asyncio.Future):
            by_loop.setdefault(done.get_loop(), []).append(done)
        else:
            _resolve([done], exc)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, futures, exc)


def _resolve(waiters: list[Waiter] | list[asyncio.Future[None]], exc: BaseException | None) -> None:
    for done in waiters:
        if not done.done():  # a coroutine's future may have been cancelled
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)


class SealedSegments:
    """The processor's view of a log that another process writes (and seals, ``seal_after``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def sealed(self) -> list[Path]:
        return EventLog.sealed_in(self.folder)

    def has_sealed(self) -> bool:
        """Whether a segment is sealed (cheap enough to ask many times a second)."""
        with os.scandir(self.folder) as entries:
            return sum(1 for e in entries if e.name.endswith(SUFFIX)) > 1

    def rotate(self) -> None:
        """Nothing to do: the writing process seals its segments itself."""
