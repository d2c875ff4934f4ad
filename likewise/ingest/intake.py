"""The event intake service: durable acceptance, background processing, statistics."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

from likewise.ingest.events import Window
from likewise.ingest.identity import EventResolver
from likewise.ingest.processor import EventProcessor
from likewise.ingest.records import EventRecord, encode_batch
from likewise.settings import Settings
from likewise.store.eventlog import EventLog
from likewise.store.events import EventStore
from likewise.store.graph import PlatformGraph


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
        folder = settings.data_dir / "events"
        self.log = EventLog(folder / "log")
        self.store = EventStore(folder, threads=settings.duckdb_threads)
        self.processor = EventProcessor(
            self.log,
            self.store,
            clock=clock,
            resolver=EventResolver(graph) if graph is not None else None,
            retention_days=settings.event_retention_days,
        )

    def window(self) -> Window:
        return Window(now=self.clock(), max_age_days=self.settings.event_retention_days)

    async def accept(self, records: list[EventRecord]) -> None:
        """Return once ``records`` are on disk (then they will be processed)."""
        await self.log.append_async(encode_batch(records))

    def start(self) -> None:
        self.processor.start()

    def close(self) -> None:
        self.processor.stop()
        self.log.close()
        self.store.close()

    def erase(self, uids: list[int]) -> int:
        """Erased users' events leave the store (see :meth:`EventProcessor.erase`)."""
        return self.processor.erase(uids)

    def flush(self) -> int:
        return self.processor.flush()

    def stats(self, source_ids: list[int], start: date, end: date) -> list[dict[str, Any]]:
        """Per source, day and event: received, test, deduplicated, merged, limited."""
        if not source_ids:
            return []
        with self.store.state() as con:
            rows = con.execute(
                f"""SELECT source_id, day, event, received, test, deduplicated, merged, limited
                FROM stats WHERE source_id IN ({", ".join("?" * len(source_ids))})
                  AND day BETWEEN ? AND ? ORDER BY source_id, day, event""",
                [*source_ids, start, end],
            ).fetchall()
        keys = ("source_id", "day", "event", "received", "test", "deduplicated", "merged")
        return [dict(zip((*keys, "limited"), row, strict=True)) for row in rows]

    def users_of_events(self, advertiser_id: int) -> dict[str, int]:
        """``event_id`` → user of an advertiser's resolved events (tests, the admin API)."""
        source = self.store.sql_source(advertiser_id)
        if source is None:
            return {}
        with self.store.state() as con:
            rows = con.execute(
                f"""SELECT e.event_id, u.uid FROM {source} e JOIN event_uid u USING (eid)
                WHERE e.event_id IS NOT NULL AND e.merged_into IS NULL"""
            ).fetchall()
        return {str(event_id): int(uid) for event_id, uid in rows}
