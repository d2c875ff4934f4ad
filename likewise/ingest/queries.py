"""Reads over the event store and its state: statistics, who an event is, usable events.

They run where the state database is open: in the server process when the processor runs there
(a thread), otherwise in the event worker process (see :mod:`likewise.ingest.worker`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
from pyroaring import BitMap

from likewise.store.events import EventStore
from likewise.store.graph import PlatformGraph

STATS_KEYS = ("source_id", "day", "event", "received", "test", "deduplicated", "merged", "limited")


class EventQueries:
    def __init__(self, store: EventStore, graph: PlatformGraph | None) -> None:
        self.store = store
        self.graph = graph

    def stats(self, source_ids: list[int], start: date, end: date) -> list[dict[str, Any]]:
        """Per source, day and event: received, test, deduplicated, merged, limited."""
        if not source_ids:
            return []
        with self.store.state() as con:
            rows = con.execute(
                f"""SELECT {", ".join(STATS_KEYS)} FROM stats
                WHERE source_id IN ({", ".join("?" * len(source_ids))})
                  AND day BETWEEN ? AND ? ORDER BY source_id, day, event""",
                [*source_ids, start, end],
            ).fetchall()
        return [dict(zip(STATS_KEYS, row, strict=True)) for row in rows]

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

    def usable_uids(self, advertiser_id: int, events: Collection[str] | None = None) -> BitMap:
        """Users with at least one :func:`usable <usable_events_sql>` event of this advertiser
        (0: organic platform activity), optionally only of these event names."""
        source = self.store.sql_source(advertiser_id)
        if source is None:
            return BitMap()
        excluded = self.graph.excluded() if self.graph is not None else BitMap()
        query = f"SELECT DISTINCT uid FROM ({usable_events_sql(source)})"
        params: list[Any] = []
        if events is not None:
            query += " WHERE event IN (SELECT unnest(?::VARCHAR[]))"
            params.append(sorted(events))
        with self.store.state() as con:
            con.register(
                "excluded_uids", pa.table({"uid": np.frombuffer(excluded.to_array(), np.uint32)})
            )
            try:
                return BitMap(con.execute(query, params).fetchnumpy()["uid"])
            finally:
                con.unregister("excluded_uids")

    def members(self, query: str) -> BitMap:
        """The ``uid`` column of ``query``, an audience's SQL over the relation
        ``usable_events``: every :func:`usable <usable_events_sql>` event of every advertiser
        (organic activity too), with its ``uid``, ``advertiser_id`` and ``day``. The audience
        engine compiles the query; it runs here because only here is the state database."""
        source = self.store.sql_source()
        if source is None:
            return BitMap()
        excluded = self.graph.excluded() if self.graph is not None else BitMap()
        with self.store.state() as con:
            con.register(
                "excluded_uids", pa.table({"uid": np.frombuffer(excluded.to_array(), np.uint32)})
            )
            con.execute(f"CREATE OR REPLACE TEMP VIEW usable_events AS {usable_events_sql(source)}")
            try:
                uids = con.execute(f"SELECT DISTINCT uid FROM ({query})").fetchnumpy()["uid"]
                return BitMap(uids.astype(np.uint32))
            finally:
                con.execute("DROP VIEW IF EXISTS usable_events")
                con.unregister("excluded_uids")


def usable_events_sql(source: str, excluded: str = "excluded_uids") -> str:
    """The stored events that may build audiences, each with its user (``uid``): resolved, not
    under limited data use (or ATT denied), not a copy merged into another event, and not of a
    user who opted out of personalised ads or was erased (the graph's excluded users: a relation
    named ``excluded``, with a ``uid`` column, that the caller registers). Test events need no
    filter: they are never stored.

    ``source`` is :meth:`EventStore.sql_source`; run it on the state database (``event_uid``).
    Every audience path (batch SQL, incremental, counts) applies this one definition."""
    return f"""{usable_rows_sql(source)}
      AND u.uid NOT IN (SELECT uid FROM {excluded})"""


def usable_rows_sql(source: str) -> str:
    """:func:`usable_events_sql` before consent: the live feed counts every such event and
    leaves the excluded users out of what it publishes, so a user who opts in again is back
    exactly as the batch evaluator would have them."""
    return f"""SELECT e.*, u.uid FROM {source} e JOIN event_uid u USING (eid)
    WHERE NOT e.limited AND e.merged_into IS NULL"""
