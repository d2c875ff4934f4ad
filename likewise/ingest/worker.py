"""The event worker: the event processor in a process of its own.

The server's request path is Python, and so is part of processing; in one process they take
turns on the interpreter lock, and every processing pass (tens of milliseconds) shows up as
request latency. So ``likewise serve`` runs the processor in a child process: the server only
appends to the log (sealing a segment every ``interval``), and the worker compacts sealed
segments, resolves identities and purges, exactly as the in-process thread would.

The worker owns the event state database (DuckDB allows one process to open it). The server asks
it for what only that database knows — statistics, resolutions, erasure, "process everything now"
— over a pipe: one request at a time, answered in order.

The worker exits when the server closes the pipe, including when the server is killed (the
operating system closes the pipe then); a worker that dies is started again on the next request.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from likewise.ingest.identity import EventResolver
from likewise.ingest.processor import EventProcessor
from likewise.ingest.queries import EventQueries
from likewise.settings import Settings
from likewise.store.eventlog import SealedSegments
from likewise.store.events import EventStore
from likewise.store.graph import PlatformGraph

log = logging.getLogger(__name__)

# What the server may ask; each is a method of EventProcessor or EventQueries.
COMMANDS = {
    "flush": "processor",
    "erase": "processor",
    "stats": "queries",
    "users_of_events": "queries",
    "usable_uids": "queries",
    "members": "queries",
}


class WorkerError(RuntimeError):
    """A request to the event worker failed there (the message says why)."""


class EventWorker:
    """The server's handle on the worker process."""

    def __init__(self, settings: Settings, *, interval: float) -> None:
        self.settings = settings
        self.interval = interval
        self._lock = threading.Lock()  # one request in flight on the pipe
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def start(self) -> None:
        # spawn, not fork: the server has threads (and DuckDB connections) a fork would copy.
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        self._process = ctx.Process(
            target=run,
            args=(self.settings.model_dump(), theirs, self.interval),
            name="likewise-event-worker",
            daemon=True,
        )
        self._process.start()
        theirs.close()  # the child's end: when the child dies, our reads see EOF
        self._conn = ours

    def call(self, command: str, *args: Any) -> Any:
        """Run ``command`` in the worker and return its answer."""
        if command not in COMMANDS:
            raise ValueError(f"unknown worker command {command!r}")
        with self._lock:
            if self._process is None or not self._process.is_alive():
                log.warning("event worker is not running; starting it")
                self.start()
            assert self._conn is not None
            self._conn.send((command, args))
            try:
                ok, answer = self._conn.recv()
            except EOFError:
                raise WorkerError("the event worker stopped while answering") from None
        if not ok:
            raise WorkerError(answer)
        return answer

    def stop(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # the worker sees EOF, finishes its pass and exits
                self._conn = None
            if self._process is not None:
                self._process.join(30)
                if self._process.is_alive():
                    self._process.kill()
                self._process = None


def run(settings_data: dict[str, Any], conn: Connection, interval: float) -> None:
    """The worker process: process sealed segments every ``interval`` seconds, and answer the
    server's requests in between."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings(**settings_data)
    graph = PlatformGraph(
        settings.data_dir / "platform.duckdb",
        threads=settings.duckdb_threads,
        memory_limit=settings.duckdb_memory_limit,
    )
    folder = settings.data_dir / "events"
    store = EventStore(folder, threads=settings.duckdb_threads)
    processor = EventProcessor(
        SealedSegments(folder / "log"),
        store,
        resolver=EventResolver(graph),
        retention_days=settings.event_retention_days,
    )
    targets = {"processor": processor, "queries": EventQueries(store, graph)}
    try:
        while True:
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0 and conn.poll(left):
                command, args = conn.recv()  # EOFError when the server is gone
                try:
                    answer = getattr(targets[COMMANDS[command]], command)(*args)
                except Exception as exc:  # the server raises it; the worker carries on
                    log.exception("event worker: %s failed", command)
                    conn.send((False, f"{command} failed: {exc}"))
                else:
                    conn.send((True, answer))
            processor.tick()
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the server closed the pipe or went away
    finally:
        store.close()
