"""The live feed: views kept up to date event by event, next to the event processor.

A *view* (a live rule audience: :class:`likewise.engine.rule_live.LiveAudience`) is handed
over once; the feed first applies the stored history it needs (its advertisers' usable events
within its horizon, one scan for every view waiting), then every event as soon as it becomes
usable: stored and resolved, or resolved later (the processor's ``on_usable``). Users who are
erased are forgotten; users who opted out stay counted but are left out of what is published,
so opting in again brings them back exactly as the batch evaluator would.

:meth:`LiveFeed.changes` says which views' members changed since it was last asked: those that
took events, whose :meth:`LiveView.next_change` has come (a window expiring), or all of them when
the excluded users changed. It runs where the event state is: in the event worker process,
which sends the changes to the server (``likewise.ingest.worker``), or in the server's
processing thread.

The feed knows views only through :class:`LiveView`, so this layer needs nothing from the
engine that defines them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import BitMap

from likewise.ingest.queries import usable_rows_sql
from likewise.store.events import EventStore
from likewise.store.graph import PlatformGraph

log = logging.getLogger(__name__)

DAY = 86_400.0
BOOTSTRAP_ROWS = 1 << 18  # rows per batch when reading history


class LiveView(Protocol):
    """What the feed needs of a view."""

    @property
    def advertiser_ids(self) -> frozenset[int]:
        """Whose events it reads (``0``: organic platform activity)."""
        ...

    @property
    def horizon_days(self) -> int:
        """How far back an event can still count."""
        ...

    @property
    def as_of(self) -> float:
        """The newest time it was asked about (it refuses earlier ones)."""
        ...

    def prepare(self, events: pa.Table) -> Any:
        """``events`` read once for every view of this kind reading the same advertisers."""
        ...

    def apply(self, events: Any) -> None:
        """Count events: a table, or what :meth:`prepare` made of one."""
        ...

    def forget(self, uids: BitMap) -> None: ...

    def members(self, as_of: float) -> BitMap: ...

    def next_change(self) -> float | None: ...


class LiveFeed:
    def __init__(
        self,
        store: EventStore,
        graph: PlatformGraph | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.graph = graph
        self.clock = clock
        self._views: dict[Hashable, LiveView] = {}
        self._waiting: dict[Hashable, LiveView] = {}  # their history is not read yet
        self._dirty: set[Hashable] = set()
        self._due: dict[Hashable, float] = {}
        self._published: dict[Hashable, BitMap] = {}
        self._excluded: BitMap | None = None

    def __len__(self) -> int:
        return len(self._views) + len(self._waiting)

    def watch(self, key: Hashable, view: LiveView) -> None:
        """Keep ``view`` up to date from now on (replacing any view under ``key``); its
        history is read at the next :meth:`changes`."""
        self.unwatch(key)
        self._waiting[key] = view

    def unwatch(self, key: Hashable) -> None:
        for table in (self._views, self._waiting, self._due, self._published):
            table.pop(key, None)
        self._dirty.discard(key)

    # --- events in ---------------------------------------------------------------------------

    def apply(self, events: pa.Table) -> None:
        """Events that just became usable (stored event columns plus ``uid``)."""
        if not self._views or events.num_rows == 0:
            return
        for part, keys in self._parts(events, self._views):
            prepared = self._views[keys[0]].prepare(part)
            for key in keys:
                self._views[key].apply(prepared)
            self._dirty.update(keys)

    def forget(self, uids: BitMap) -> None:
        """Erased users: their events no longer count anywhere."""
        for key, view in self._views.items():
            view.forget(uids)
            self._dirty.add(key)

    @staticmethod
    def _parts(
        events: pa.Table, views: dict[Hashable, LiveView]
    ) -> Iterable[tuple[pa.Table, list[Hashable]]]:
        """The views' shares of ``events`` (only their advertisers' rows), each with the views
        reading it: views of one kind and the same advertisers share one."""
        advertiser = events.column("advertiser_id")
        by_advertiser: dict[int, pa.Table] = {}
        for a in pc.unique(advertiser).to_pylist():
            if a is not None:
                by_advertiser[int(a)] = events.filter(pc.equal(advertiser, a))
        groups: dict[tuple[type, frozenset[int]], list[Hashable]] = {}
        for key, view in views.items():
            wanted = frozenset(a for a in view.advertiser_ids if a in by_advertiser)
            if wanted:
                groups.setdefault((type(view), wanted), []).append(key)
        for (_, wanted), keys in groups.items():
            tables = [by_advertiser[a] for a in sorted(wanted)]
            if len(tables) == 1:
                yield tables[0], keys
            else:
                yield pa.concat_tables(tables, promote_options="permissive"), keys

    def _bootstrap(self, now: float) -> None:
        """Read the history of every waiting view in one scan."""
        waiting, self._waiting = self._waiting, {}
        if not waiting:
            return
        source = self.store.sql_source()
        if source is not None:
            advertisers = sorted({a for v in waiting.values() for a in v.advertiser_ids})
            start = now - max(v.horizon_days for v in waiting.values()) * DAY
            with self.store.state() as con:
                reader = con.sql(
                    f"""SELECT * FROM ({usable_rows_sql(source)})
                    WHERE advertiser_id IN ({", ".join(str(int(a)) for a in advertisers)})
                      AND event_time > {float(start)!r}"""
                ).to_arrow_reader(BOOTSTRAP_ROWS)
                for batch in reader:
                    events = pa.Table.from_batches([batch])
                    for part, keys in self._parts(events, waiting):
                        # Each view takes its own horizon; those sharing one share the rows.
                        by_horizon: dict[int, list[Hashable]] = {}
                        for key in keys:
                            by_horizon.setdefault(waiting[key].horizon_days, []).append(key)
                        for days, same in by_horizon.items():
                            recent = part.filter(pc.greater(part["event_time"], now - days * DAY))
                            prepared = waiting[same[0]].prepare(recent)
                            for key in same:
                                waiting[key].apply(prepared)
        self._views.update(waiting)
        self._dirty.update(waiting)

    # --- changes out -------------------------------------------------------------------------

    def changes(self, *, read_history: bool = True) -> dict[Hashable, BitMap]:
        """Views whose published members (consent applied) changed since the last call, with
        their members now. Reads the history of views handed over since (unless
        ``read_history`` is false: views handed over together share one scan later)."""
        now = self.clock()
        if read_history:
            self._bootstrap(now)
        excluded = self.graph.excluded() if self.graph is not None else BitMap()
        if excluded is not self._excluded:  # the graph returns the same bitmap until it changes
            self._excluded = excluded
            self._dirty.update(self._views)
        due = [k for k, t in self._due.items() if t <= now]
        out: dict[Hashable, BitMap] = {}
        for key in self._dirty.union(due):
            view = self._views.get(key)
            if view is None:
                continue
            members = view.members(max(now, view.as_of)) - excluded
            if self._published.get(key) != members:
                self._published[key] = members
                out[key] = members
            upcoming = view.next_change()
            self._due[key] = math.inf if upcoming is None else upcoming
        self._dirty.clear()
        return out
