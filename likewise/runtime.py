"""The running system: settings, stores and services wired together once.

Both the HTTP app and the CLI build one ``Runtime``; nothing is created at import time.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pyroaring import BitMap

from likewise.engine.audiences import Audiences
from likewise.engine.combined_audiences import CombinedAudiences
from likewise.engine.jobs import JobRunner
from likewise.engine.lookalike_audiences import LookalikeAudiences
from likewise.engine.rule_audiences import RuleAudiences
from likewise.engine.segments import Segments
from likewise.engine.sources import EventSources
from likewise.engine.uploads import Uploads
from likewise.ingest.intake import EventIntake
from likewise.lookalike.features import FeatureSnapshots
from likewise.settings import Settings
from likewise.store.bitmaps import BitmapStore
from likewise.store.db import Database, migrate
from likewise.store.features import FeatureStore, month_of
from likewise.store.graph import GraphBusy, PlatformGraph
from likewise.store.tenants import Tenants
from likewise.targeting.ad_groups import AdGroups
from likewise.targeting.insights import Insights
from likewise.targeting.saved_audiences import SavedAudiences
from likewise.targeting.serving import MembershipServer
from likewise.targeting.sharing import Sharing


def utc_now() -> datetime:
    """Naive UTC: what the metadata database stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class Runtime:
    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        settings.ensure_dirs()
        # A crash can leave half-received uploads behind: they may hold raw identifiers.
        for leftover in (settings.data_dir / "tmp").iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        self.db = Database(settings.metadata_url)
        migrate(self.db.engine)
        self.graph = PlatformGraph(
            settings.data_dir / "platform.duckdb",
            threads=settings.duckdb_threads,
            memory_limit=settings.duckdb_memory_limit,
        )
        self.bitmaps = BitmapStore(settings.data_dir / "bitmaps")
        self.tenants = Tenants(self.db)
        self.uploads = Uploads(settings, self.db)
        self.jobs = JobRunner(self.db, workers=settings.job_workers, clock=clock)
        self.audiences = Audiences(
            settings=settings,
            db=self.db,
            graph=self.graph,
            bitmaps=self.bitmaps,
            uploads=self.uploads,
            jobs=self.jobs,
            clock=clock,
        )
        self.segments = Segments(self.audiences)
        # Combined audiences follow their parts (a listener on every membership change).
        self.combined = CombinedAudiences(db=self.db, audiences=self.audiences)
        self.sources = EventSources(self.db, clock)
        # The same clock as Unix seconds (time.time itself unless a test injected one).
        seconds = time.time if clock is utc_now else lambda: clock().replace(tzinfo=UTC).timestamp()
        self.events = EventIntake(settings, clock=seconds, graph=self.graph)
        self.rules = RuleAudiences(
            db=self.db,
            audiences=self.audiences,
            sources=self.sources,
            run_query=self.events.members,
            clock=clock,
            refresh_seconds=settings.rule_refresh_seconds,
            watch=self.events.watch if settings.rule_live else None,
            unwatch=self.events.unwatch,
        )
        self.events.on_live = self.rules.on_live
        self.features = FeatureStore(
            settings.data_dir / "features",
            threads=settings.duckdb_threads,
            memory_limit=settings.duckdb_memory_limit,
        )
        self.feature_snapshots = FeatureSnapshots(
            self.features, self.graph, min_month=self.feature_min_month
        )
        self.lookalikes = LookalikeAudiences(
            settings=settings,
            db=self.db,
            audiences=self.audiences,
            snapshots=self.feature_snapshots,
            merge_features=self.merge_features,
            clock=clock,
        )
        # Ad groups: lookalikes applied to an active one refresh twice a week.
        self.ad_groups = AdGroups(db=self.db, audiences=self.audiences, clock=clock)
        self.lookalikes.in_use = self.ad_groups.in_use
        self.sharing = Sharing(
            db=self.db, audiences=self.audiences, ad_groups=self.ad_groups, clock=clock
        )
        # What the operator's ad server asks on every request.
        self.serving = MembershipServer(
            audiences=self.audiences,
            ad_groups=self.ad_groups,
            graph=self.graph,
            index=settings.serving_index,
            index_rebuild_seconds=settings.serving_index_rebuild_seconds,
        )
        self.insights = Insights(
            audiences=self.audiences, ad_groups=self.ad_groups, serving=self.serving
        )
        self.saved_audiences = SavedAudiences(db=self.db, audiences=self.audiences, clock=clock)
        # Sources show ACTIVE once events are accepted (a write now and then, not per request).
        self.events.on_accepted = lambda ids: self.sources.record_activity(ids, clock())

    def merge_features(self) -> int:
        """Merge new engagement into the lookalike features; returns the generation."""
        try:
            gone = self.graph.erased(wait_seconds=5)
        except GraphBusy:  # an import holds the graph: the erasure files still apply
            gone = BitMap()
        return self.features.merge(min_month=self.feature_min_month(), forget=gone)

    def feature_min_month(self) -> int:
        """Features older than the event retention are dropped, as the events are."""
        oldest = self.clock() - timedelta(days=self.settings.event_retention_days)
        return month_of(oldest.replace(tzinfo=UTC).timestamp())

    def erase_users(self, ext_ids: list[str]) -> tuple[int, list[str]]:
        """Erase platform users everywhere: identity graph, audiences (at once), events."""
        # Events acknowledged before the erasure are processed (resolved) first, so they go too.
        self.events.flush()
        uids, missing = self.graph.erase_uids(ext_ids)
        self.events.erase(uids, user_refs=ext_ids)
        return len(uids), missing

    def start(self) -> None:
        """Start background work (jobs left over from a previous run resume)."""
        # The event worker process keeps processing off the request path; a clock injected
        # here (tests) cannot cross into it, so then processing stays in a thread. First: rule
        # audience jobs read events through it.
        self.events.start(separate_process=self.settings.event_worker and self.clock is utc_now)
        self.jobs.start()
        self.rules.start()
        self.combined.start()
        self.lookalikes.start()
        self.serving.start()

    def close(self) -> None:
        self.serving.stop()
        self.lookalikes.stop()
        self.combined.stop()
        self.rules.stop()
        self.jobs.stop()
        self.events.close()
        self.db.engine.dispose()
