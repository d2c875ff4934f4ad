"""The event worker: the event processor in a process of its own.

The server's request path is Python, and so is part of processing; in one process they take
turns on the interpreter lock, and every processing pass (tens of milliseconds) shows up as
request latency. So ``likewise serve`` runs the processor in a child process: the server only
appends to the log (sealing a segment every ``interval``), and the worker compacts sealed
segments, resolves identities and purges, exactly as the in-process thread would.

The worker owns the event state database (DuckDB allows one process to open it). The server asks
it for what only that database knows — statistics, resolutions, erasure, "process everything now"
— over a pipe: one request at a time, answered in order.

Live views (:mod:`likewise.ingest.live`) live here too, fed by the processor; their changes go
to the server on a second pipe as they happen, numbered. Every answer carries the number of the
last change sent before it, and the server applies changes up to that number before returning
the answer: after ``flush`` returns, live audiences show what it processed.

The worker exits when the server closes the pipe, including when the server is killed (the
operating system closes the pipe then); a worker that dies is started again on the next request,
and the server hands it its live views again.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Hashable
from multiprocessing.connection import Connection
from typing import Any

from pyroaring import BitMap

from likewise.ingest.features import FeatureFeed, fan_out
from likewise.ingest.identity import EventResolver
from likewise.ingest.live import LiveFeed, LiveView
from likewise.ingest.memory import keep_freed_memory, worker_environment
from likewise.ingest.processor import EventProcessor
from likewise.ingest.queries import EventQueries
from likewise.settings import Settings
from likewise.store.eventlog import SealedSegments
from likewise.store.events import EventStore
from likewise.store.features import FeatureStore
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
    "watch": "feed",
    "unwatch": "feed",
}
SEGMENT_POLL_SECONDS = 0.02  # how often the worker looks for a newly sealed segment

Changes = dict[Hashable, BitMap]


class WorkerError(RuntimeError):
    """A request to the event worker failed there (the message says why)."""


class EventWorker:
    """The server's handle on the worker process."""

    def __init__(
        self,
        settings: Settings,
        *,
        interval: float,
        on_changes: Callable[[Changes], None] | None = None,
    ) -> None:
        self.settings = settings
        self.interval = interval
        self.on_changes = on_changes  # live views' changes, on the listening thread
        self._lock = threading.Lock()  # one request in flight on the pipe
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._views: dict[Hashable, LiveView] = {}  # handed to every worker started
        self._applied = 0  # the number of the last change applied (of this worker)
        self._applied_cond = threading.Condition()

    def start(self) -> None:
        # spawn, not fork: the server has threads (and DuckDB connections) a fork would copy.
        ctx = multiprocessing.get_context("spawn")
        worker_environment()
        ours, theirs = ctx.Pipe()
        notes_in, notes_out = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=run,
            args=(self.settings.model_dump(), theirs, notes_out, self.interval),
            name="likewise-event-worker",
            daemon=True,
        )
        self._process.start()
        theirs.close()  # the child's ends: when the child dies, our reads see EOF
        notes_out.close()
        self._conn = ours
        with self._applied_cond:
            self._applied = 0
        threading.Thread(
            target=self._listen, args=(notes_in,), name="live-changes", daemon=True
        ).start()
        for key, view in self._views.items():
            self._exchange("watch", (key, view))

    def _listen(self, notes: Connection) -> None:
        """Apply live changes as the worker sends them, until it goes away."""
        with notes:
            while True:
                try:
                    seq, changes = notes.recv()
                except (EOFError, OSError):
                    return
                if self.on_changes is not None and changes:
                    try:
                        self.on_changes(changes)
                    except Exception:
                        log.exception("applying live changes failed")
                with self._applied_cond:
                    self._applied = seq
                    self._applied_cond.notify_all()

    def watch(self, key: Hashable, view: LiveView) -> None:
        """Keep ``view`` live in the worker (and in any worker started later)."""
        self._views[key] = view
        self.call("watch", key, view)

    def unwatch(self, key: Hashable) -> None:
        self._views.pop(key, None)
        self.call("unwatch", key)

    def call(self, command: str, *args: Any) -> Any:
        """Run ``command`` in the worker and return its answer, once the live changes the
        worker sent before answering are applied here."""
        if command not in COMMANDS:
            raise ValueError(f"unknown worker command {command!r}")
        with self._lock:
            if self._process is None or not self._process.is_alive():
                log.warning("event worker is not running; starting it")
                self.start()
            ok, answer, seq = self._exchange(command, args)
        with self._applied_cond:
            # Bounded: a listener that died with the worker never gets there.
            self._applied_cond.wait_for(lambda: self._applied >= seq, timeout=30)
        if not ok:
            raise WorkerError(answer)
        return answer

    def _exchange(self, command: str, args: tuple[Any, ...]) -> tuple[bool, Any, int]:
        assert self._conn is not None
        self._conn.send((command, args))
        try:
            ok, answer, seq = self._conn.recv()
        except EOFError:
            raise WorkerError("the event worker stopped while answering") from None
        return ok, answer, seq

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


def run(
    settings_data: dict[str, Any], conn: Connection, notes: Connection, interval: float
) -> None:
    """The worker process: process sealed segments as they appear (looking every
    :data:`SEGMENT_POLL_SECONDS`, and passing at least every ``interval`` seconds), send live
    changes on ``notes``, and answer the server's requests in between."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    keep_freed_memory()
    settings = Settings(**settings_data)
    graph = PlatformGraph(
        settings.data_dir / "platform.duckdb",
        threads=settings.duckdb_threads,
        memory_limit=settings.duckdb_memory_limit,
    )
    folder = settings.data_dir / "events"
    store = EventStore(folder, threads=settings.duckdb_threads)
    # The key index is built when the first batch with keys arrives, not at start: a platform
    # that sends no events does not hold its identity keys in memory twice.
    resolver = EventResolver(graph, key_index=settings.event_key_index)
    processor = EventProcessor(
        SealedSegments(folder / "log"),
        store,
        resolver=resolver,
        retention_days=settings.event_retention_days,
    )
    feed = LiveFeed(store, graph)
    features = FeatureFeed(FeatureStore(settings.data_dir / "features"))
    features.backfill(store)
    processor.on_usable = fan_out(feed.apply, features.apply)
    processor.on_erased = fan_out(lambda uids: feed.forget(BitMap(uids)), features.forget)
    sent = 0

    def publish(command: str = "") -> int:
        nonlocal sent
        if len(feed):
            try:
                # Views handed over one request at a time read their history together, later.
                changes = feed.changes(read_history=command not in ("watch", "unwatch"))
            except Exception:  # the worker must go on processing; the next pass tries again
                log.exception("event worker: live views failed")
                return sent
            if changes:
                sent += 1
                notes.send((sent, changes))
        return sent

    targets = {"processor": processor, "queries": EventQueries(store, graph), "feed": feed}
    log_ = processor.log
    assert isinstance(log_, SealedSegments)
    try:
        while True:
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                if not conn.poll(min(left, SEGMENT_POLL_SECONDS)):
                    if log_.has_sealed():
                        break
                    continue
                command, args = conn.recv()  # EOFError when the server is gone
                try:
                    answer = getattr(targets[COMMANDS[command]], command)(*args)
                except Exception as exc:  # the server raises it; the worker carries on
                    log.exception("event worker: %s failed", command)
                    conn.send((False, f"{command} failed: {exc}", publish(command)))
                else:
                    conn.send((True, answer, publish(command)))
            processor.tick()
            publish()
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the server closed the pipe or went away
    finally:
        store.close()
