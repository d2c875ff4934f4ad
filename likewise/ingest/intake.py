"""The event intake service: durable acceptance, background processing, statistics.

Processing runs in a thread of this process (``start()``: the CLI, tests with an injected clock)
or in the event worker process (``start(separate_process=True)``: ``likewise serve``); either
way the methods below mean the same. So do live views (:meth:`EventIntake.watch`): they live
beside the processor, and their changes reach ``on_live`` in this process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Collection, Hashable
from datetime import date
from typing import Any

from pyroaring import BitMap

from likewise.ingest.events import Window
from likewise.ingest.features import FeatureFeed, fan_out
from likewise.ingest.identity import EventResolver
from likewise.ingest.live import LiveFeed, LiveView
from likewise.ingest.processor import EventProcessor
from likewise.ingest.queries import EventQueries, usable_events_sql
from likewise.ingest.records import EventRecord, encode_batch
from likewise.ingest.worker import EventWorker
from likewise.settings import Settings
from likewise.store.eventlog import EventLog
from likewise.store.events import EventStore
from likewise.store.features import FeatureStore
from likewise.store.graph import PlatformGraph

__all__ = ["EventIntake", "usable_events_sql"]

NOTE_ACTIVITY_EVERY = 30.0  # seconds between activity notes for one source


class EventIntake:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        graph: PlatformGraph | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.graph = graph
        folder = settings.data_dir / "events"
        self.log = EventLog(folder / "log")
        self.store = EventStore(folder, threads=settings.duckdb_threads)
        self.processor = EventProcessor(
            self.log,
            self.store,
            clock=clock,
            resolver=(
                EventResolver(graph, key_index=settings.event_key_index)
                if graph is not None
                else None
            ),
            retention_days=settings.event_retention_days,
        )
        self.queries = EventQueries(self.store, graph)
        self.worker: EventWorker | None = None
        # Live views when processing runs here; the worker has its own otherwise.
        self.feed = LiveFeed(self.store, graph, clock=clock)
        self._feed_lock = threading.Lock()  # the processing thread and callers of watch()
        # Lookalike features, from the same events (the worker has its own feed otherwise).
        self.features = FeatureFeed(FeatureStore(settings.data_dir / "features"))
        self.processor.on_usable = fan_out(self._locked(self.feed.apply), self.features.apply)
        self.processor.on_erased = fan_out(
            self._locked(lambda uids: self.feed.forget(BitMap(uids))), self.features.forget
        )
        self.processor.on_tick = self._publish
        # Told which live views' members changed, with their members now.
        self.on_live: Callable[[dict[Hashable, BitMap]], None] | None = None
        # Told which sources just had events accepted (at most every NOTE_ACTIVITY_EVERY
        # seconds per source), so sources show ACTIVE without a write per request.
        self.on_accepted: Callable[[set[int]], None] | None = None
        self._noted: dict[int, float] = {}

    def window(self) -> Window:
        return Window(now=self.clock(), max_age_days=self.settings.event_retention_days)

    async def accept(self, records: list[EventRecord]) -> None:
        """Return once ``records`` are on disk (then they will be processed)."""
        await self.log.append_async(encode_batch(records))
        await self._note({r.source_id for r in records})

    async def accept_lines(self, lines: bytes, source_id: int) -> None:
        """:meth:`accept` for records already encoded (``records.encode_batch``'s lines), all of
        one source."""
        await self.log.append_async(lines)
        await self._note({source_id})

    async def _note(self, source_ids: set[int]) -> None:
        if self.on_accepted is not None:
            now = time.monotonic()
            due = {
                source_id
                for source_id in source_ids
                if source_id and now - self._noted.get(source_id, -1e9) > NOTE_ACTIVITY_EVERY
            }
            if due:
                self._noted.update(dict.fromkeys(due, now))
                await asyncio.to_thread(self.on_accepted, due)

    def start(self, *, separate_process: bool = False) -> None:
        if separate_process:
            self.log.seal_every(self.settings.event_seal_seconds)
            self.worker = EventWorker(
                self.settings, interval=self.processor.interval, on_changes=self._deliver
            )
            self.worker.start()
        else:
            self.features.backfill(self.store)
            self.processor.start()

    # --- live views --------------------------------------------------------------------------

    def watch(self, key: Hashable, view: LiveView) -> None:
        """Keep ``view`` up to date with every usable event (its history first); its changes
        reach ``on_live`` under ``key``."""
        if self.worker is not None:
            self.worker.watch(key, view)
        else:
            with self._feed_lock:
                self.feed.watch(key, view)

    def unwatch(self, key: Hashable) -> None:
        if self.worker is not None:
            self.worker.unwatch(key)
        else:
            with self._feed_lock:
                self.feed.unwatch(key)

    def _locked(self, f: Callable[[Any], None]) -> Callable[[Any], None]:
        def call(arg: Any) -> None:
            with self._feed_lock:
                f(arg)

        return call

    def _publish(self) -> None:
        with self._feed_lock:
            changes = self.feed.changes() if len(self.feed) else {}
        self._deliver(changes)

    def _deliver(self, changes: dict[Hashable, BitMap]) -> None:
        if changes and self.on_live is not None:
            self.on_live(changes)

    def stop_processing(self) -> None:
        """Stop background processing and release the state database. Acceptance goes on (the
        log keeps what arrives); the methods below then work in this process."""
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.processor.stop()
        self.store.close()

    def close(self) -> None:
        self.log.close()
        self.stop_processing()

    def flush(self) -> int:
        """Process everything acknowledged so far and retry unresolved events (tests, CLI)."""
        if self.worker is not None:
            self.log.rotate()
            return int(self.worker.call("flush"))
        stored = self.processor.flush()
        self._publish()
        return stored

    def erase(self, uids: list[int], user_refs: Collection[str] = ()) -> int:
        """Erased users' events leave the store (see :meth:`EventProcessor.erase`)."""
        if self.worker is not None:
            return int(self.worker.call("erase", uids, list(user_refs)))
        removed = self.processor.erase(uids, user_refs)
        self._publish()
        return removed

    def stats(self, source_ids: list[int], start: date, end: date) -> list[dict[str, Any]]:
        """Per source, day and event: received, test, deduplicated, merged, limited."""
        if self.worker is not None:
            return list(self.worker.call("stats", source_ids, start, end))
        return self.queries.stats(source_ids, start, end)

    def users_of_events(self, advertiser_id: int) -> dict[str, int]:
        """``event_id`` → user of an advertiser's resolved events (tests, the admin API)."""
        if self.worker is not None:
            return dict(self.worker.call("users_of_events", advertiser_id))
        return self.queries.users_of_events(advertiser_id)

    def usable_uids(self, advertiser_id: int, *, events: Collection[str] | None = None) -> BitMap:
        """See :meth:`EventQueries.usable_uids`."""
        if self.worker is not None:
            found = self.worker.call("usable_uids", advertiser_id, events)
            assert isinstance(found, BitMap)
            return found
        return self.queries.usable_uids(advertiser_id, events)

    def members(self, query: str) -> BitMap:
        """See :meth:`EventQueries.members` (the audience engine's queries run here)."""
        if self.worker is not None:
            found = self.worker.call("members", query)
            assert isinstance(found, BitMap)
            return found
        return self.queries.members(query)
