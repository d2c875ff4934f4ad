"""Lookalike audiences (``dmp/custom_audience/lookalike/create|update|delete/``).

A lookalike is stored with its seed and TikTok's ``lookalike_spec``; building it is a job
(:data:`BUILD_LOOKALIKE`): the latest features (:class:`~likewise.lookalike.features.
FeatureSnapshots`), the seed's usable members, then :func:`~likewise.lookalike.build.
build_lookalike`, whose members become a new version and whose quality report is kept with the
definition (``get`` shows it as ``lookalike_quality``).

Refresh: ``lookalike/update/`` builds again now. Lookalikes in use (``in_use``: applied to an
active ad group) are built again every ``lookalike_refresh_days`` (twice a week by default).
A deleted seed stops refreshing: the lookalike keeps its members, and its history and report
say why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from pyroaring import BitMap
from sqlalchemy import select
from sqlalchemy.orm import Session

from likewise.background import Periodic
from likewise.domain.audience import Lifecycle, Source, Status
from likewise.domain.lookalike import LookalikeSpec, Size, parse_lookalike_spec, spec_from_wire
from likewise.engine.audiences import Audiences
from likewise.errors import AudienceNotReady, AudienceTooSmall, InvalidParameter, NotFound
from likewise.lookalike.build import QualityReport, build_lookalike
from likewise.lookalike.features import FeatureSnapshots
from likewise.settings import Settings
from likewise.store.db import Database
from likewise.store.models import Audience, AudienceLookalike, AudienceShare, Job

log = logging.getLogger(__name__)

BUILD_LOOKALIKE = "BUILD_LOOKALIKE"
SEED_UNSHARED = (
    "The source audience is no longer shared with this advertiser: this lookalike keeps its "
    "members but can no longer refresh."
)
SEED_DELETED = (
    "The source audience was deleted: this lookalike keeps its members but can no longer "
    "refresh. Create a new lookalike from another source audience."
)


def shares(settings: Settings) -> dict[Size, float]:
    """The documented share of the eligible population per size tier."""
    return {
        Size.NARROW: settings.lookalike_narrow_share,
        Size.BALANCED: settings.lookalike_balanced_share,
        Size.BROAD: settings.lookalike_broad_share,
    }


def quality_text(report: QualityReport) -> str:
    """One line for the audience history."""
    text = f"seed {report.seed_size} usable members; {report.size} similar users"
    if report.recall is None:
        return f"{text}; {report.note}"
    return (
        f"{text}; held-out seed members found: recall {report.recall:.0%}, lift "
        f"{report.lift:.1f}x at {report.share:.0%} of {report.eligible} eligible users, "
        f"AUC {report.auc:.3f} ({report.model} model)"
    )


class LookalikeAudiences:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        audiences: Audiences,
        snapshots: FeatureSnapshots,
        merge_features: Callable[[], object],
        clock: Callable[[], datetime],
        in_use: Callable[[Collection[int]], set[int]] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.audiences = audiences
        self.snapshots = snapshots
        self.merge_features = merge_features
        self.clock = clock
        self.in_use = in_use
        self._seeds: set[int] = set()  # seeds of lookalikes: their deletion is noticed
        self._seeds_lock = threading.Lock()
        self._rounds = Periodic(
            "lookalike-refresh", lambda: settings.feature_merge_seconds, self._round
        )
        audiences.jobs.register(BUILD_LOOKALIKE, self._build_job, self._failed)
        audiences.add_listener(self._on_change)

    # --- create, refresh, delete -------------------------------------------------------------

    def create(self, *, advertiser_id: int, name: str, spec_body: Any) -> int:
        spec = parse_lookalike_spec(spec_body)
        self._check_seed(advertiser_id, spec.source_audience_id)
        with self.db.session() as s:
            audience = self.audiences.new_audience(
                s,
                advertiser_id=advertiser_id,
                name=name,
                source=Source.LOOKALIKE,
                status=Status.CALCULATING,
            )
            s.add(
                AudienceLookalike(
                    audience_id=audience.id,
                    seed_id=spec.source_audience_id,
                    spec=spec.wire(),
                    refresh_stopped="",
                )
            )
            self.audiences.history(
                s,
                audience.id,
                "CREATE",
                f"seed {spec.source_audience_id}, {spec.audience_size.value}, "
                f"{', '.join(spec.countries)}, {spec.mobile_os.value}"
                + (", including the seed" if spec.include_source else ""),
            )
            audience_id = audience.id
        with self._seeds_lock:
            self._seeds.add(spec.source_audience_id)
        self._queue(audience_id, "CREATE")
        return audience_id

    def _check_seed(self, advertiser_id: int, seed_id: int) -> Audience:
        """The seed, if it may seed a lookalike of this advertiser; else the reason, as an
        error (code 40002)."""
        field = "lookalike_spec.source_audience_id"
        with self.db.session() as s:
            seed = self.audiences.find_visible(s, advertiser_id, seed_id)
        if seed is None:
            raise InvalidParameter(
                f"source audience {seed_id} does not exist or is not shared with advertiser "
                f"{advertiser_id}",
                field=field,
            )
        if seed.source == Source.LOOKALIKE:
            raise InvalidParameter(
                f"source audience {seed_id} is a lookalike audience; a lookalike cannot be the "
                "source of another",
                field=field,
            )
        if seed.status == Status.CALCULATING:
            raise AudienceNotReady(
                f"source audience {seed_id} is still being calculated; create the lookalike "
                "when it is ready",
                field=field,
            )
        if seed.status == Status.FAILED:
            raise InvalidParameter(
                f"source audience {seed_id} could not be calculated: {seed.error_msg}",
                field=field,
            )
        life = Lifecycle(
            seed.created_at, seed.modified_at, seed.last_used_at, seed.retention_in_days
        )
        if life.is_expired(self.clock()):
            raise InvalidParameter(f"source audience {seed_id} has expired", field=field)
        minimum = self.settings.min_lookalike_seed
        if len(self.audiences.reachable(seed)) < minimum:
            raise AudienceTooSmall(
                f"source audience {seed_id} has fewer than {minimum} usable members (people "
                f"who allow personalised ads); a lookalike needs at least {minimum}",
                field=field,
            )
        return seed

    def _own_lookalikes(self, advertiser_id: int, ids: list[int]) -> list[int]:
        if not ids:
            raise InvalidParameter(
                "custom_audience_ids must name at least one audience", field="custom_audience_ids"
            )
        with self.db.session() as s:
            for audience_id in ids:
                a = s.get(Audience, audience_id)
                if a is None or a.deleted or a.advertiser_id != advertiser_id:
                    raise NotFound(
                        f"custom audience {audience_id} does not exist",
                        field="custom_audience_ids",
                    )
                if a.source != Source.LOOKALIKE:
                    raise InvalidParameter(
                        f"custom audience {audience_id} is not a lookalike audience",
                        field="custom_audience_ids",
                    )
        return ids

    def refresh(self, *, advertiser_id: int, ids: list[int]) -> None:
        """Build the lookalikes again now (``lookalike/update/``); all or nothing."""
        self._own_lookalikes(advertiser_id, ids)
        with self.db.session() as s:
            for audience_id in ids:
                row = s.get(AudienceLookalike, audience_id)
                assert row is not None
                if row.refresh_stopped:
                    raise InvalidParameter(
                        f"custom audience {audience_id}: {row.refresh_stopped}",
                        field="custom_audience_ids",
                    )
                seed = s.get(Audience, row.seed_id)
                if seed is not None and seed.status == Status.CALCULATING:
                    raise AudienceNotReady(
                        f"custom audience {audience_id}: its source audience is being "
                        "calculated; refresh it when that is done",
                        field="custom_audience_ids",
                    )
        for audience_id in ids:
            self._queue(audience_id, "REFRESH")

    def delete(self, *, advertiser_id: int, ids: list[int]) -> None:
        """``lookalike/delete/``: only lookalikes, all or nothing."""
        self._own_lookalikes(advertiser_id, ids)
        self.audiences.delete(advertiser_id=advertiser_id, ids=ids)

    def _queue(self, audience_id: int, reason: str) -> None:
        with self.db.session() as s:
            job = Job(
                audience_id=audience_id,
                kind=BUILD_LOOKALIKE,
                payload={"reason": reason},
                status="QUEUED",
                created_at=self.clock(),
            )
            s.add(job)
            s.flush()
            job_id = job.id
        self.audiences.jobs.submit(job_id)

    # --- building ----------------------------------------------------------------------------

    def _build_job(self, job: Job) -> None:
        with self.db.session() as s:
            audience = s.get(Audience, job.audience_id)
            row = s.get(AudienceLookalike, job.audience_id)
            if audience is None or audience.deleted or row is None:
                return
            spec = spec_from_wire(row.spec)
            seed = s.get(Audience, row.seed_id)
            problem = self._seed_problem(s, seed, audience.advertiser_id)
            if problem is not None:
                self._cannot_build(s, audience, row, problem)
                return
            assert seed is not None
        members = self.audiences.reachable(seed)
        minimum = self.settings.min_lookalike_seed
        if len(members) < minimum:
            with self.db.session() as s:
                audience = s.get(Audience, job.audience_id)
                row = s.get(AudienceLookalike, job.audience_id)
                if audience is not None and row is not None and not audience.deleted:
                    self._cannot_build(
                        s,
                        audience,
                        row,
                        f"the source audience has fewer than {minimum} usable members now",
                    )
            return
        result = self._compute(spec, members)
        with self.db.session() as s:
            audience = s.get(Audience, job.audience_id)
            row = s.get(AudienceLookalike, job.audience_id)
            if audience is None or audience.deleted or row is None:
                return
            self.audiences.new_version(s, audience, result.members)
            audience.status = Status.READY.value
            audience.error_msg = ""
            audience.modified_at = self.clock()
            row.quality = result.report.to_json()
            row.built_at = self.clock()
            self.audiences.history(
                s,
                audience.id,
                "CALCULATED",
                f"version {audience.version} ({job.payload.get('reason', 'REFRESH')})",
                msg=quality_text(result.report),
            )

    def _compute(self, spec: LookalikeSpec, seed: BitMap) -> Any:
        self.merge_features()  # the events processed until now count
        features = self.snapshots.get()
        return build_lookalike(
            features,
            seed,
            countries=spec.countries,
            os=spec.mobile_os,
            share=shares(self.settings)[spec.audience_size],
            include_source=spec.include_source,
            excluded=self.audiences.graph.excluded(),
            holdout=self.settings.lookalike_holdout,
        )

    @staticmethod
    def _seed_problem(s: Session, seed: Audience | None, advertiser_id: int) -> str | None:
        if seed is None or seed.deleted:
            return SEED_DELETED
        if (
            seed.advertiser_id != advertiser_id
            and s.get(AudienceShare, (seed.id, advertiser_id)) is None
        ):
            return SEED_UNSHARED
        if seed.status == Status.FAILED:
            return "the source audience could not be calculated"
        return None

    def _cannot_build(
        self, s: Session, audience: Audience, row: AudienceLookalike, problem: str
    ) -> None:
        """A first build fails; a lookalike built before keeps its members and says why it
        did not refresh."""
        if problem in (SEED_DELETED, SEED_UNSHARED):
            row.refresh_stopped = problem
        if audience.version == 0:
            audience.status = Status.FAILED.value
            audience.error_msg = problem[:500]
            self.audiences.history(s, audience.id, "FAILED", problem[:500], msg=problem[:500])
        else:
            self.audiences.history(
                s, audience.id, "REFRESH_SKIPPED", problem[:500], msg=problem[:500]
            )

    def _failed(self, job: Job, error: str) -> None:
        with self.db.session() as s:
            audience = s.get(Audience, job.audience_id)
            if audience is None:
                return
            message = "the lookalike could not be built; refresh it to try again"
            if audience.version == 0:
                audience.status = Status.FAILED.value
                audience.error_msg = message
            self.audiences.history(s, audience.id, "FAILED", error[:500], msg=message)

    # --- reading (admin API) ------------------------------------------------------------------

    def describe(
        self, *, audience_id: int | None = None, advertiser_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Lookalikes with their definition, status and last quality report (newest first)."""
        with self.db.session() as s:
            q = (
                select(Audience, AudienceLookalike)
                .join(AudienceLookalike, AudienceLookalike.audience_id == Audience.id)
                .where(Audience.deleted.is_(False))
                .order_by(Audience.id.desc())
            )
            if audience_id is not None:
                q = q.where(Audience.id == audience_id)
            if advertiser_id is not None:
                q = q.where(Audience.advertiser_id == advertiser_id)
            rows = s.execute(q).all()
            out = []
            for audience, row in rows:
                out.append(
                    {
                        "audience_id": str(audience.id),
                        "advertiser_id": str(audience.advertiser_id),
                        "name": audience.name,
                        "status": audience.status,
                        "error_msg": audience.error_msg,
                        "version": audience.version,
                        "size": audience.matched_num,
                        "lookalike_spec": dict(row.spec),
                        "quality": row.quality,
                        "built_at": row.built_at.isoformat() if row.built_at else None,
                        "refresh_stopped": row.refresh_stopped or None,
                    }
                )
        if audience_id is not None and not out:
            raise NotFound(f"lookalike audience {audience_id} does not exist", field="audience_id")
        return out

    # --- seeds deleted -----------------------------------------------------------------------

    def _on_change(self, audience_id: int) -> None:
        """A seed was deleted, or is no longer shared with a lookalike's advertiser: those
        lookalikes stop refreshing, and say why."""
        with self._seeds_lock:
            if audience_id not in self._seeds:
                return
        still_used = False
        with self.db.session() as s:
            seed = s.get(Audience, audience_id)
            for row in s.execute(
                select(AudienceLookalike).where(AudienceLookalike.seed_id == audience_id)
            ).scalars():
                audience = s.get(Audience, row.audience_id)
                if audience is None or audience.deleted or row.refresh_stopped:
                    continue
                problem = self._seed_problem(s, seed, audience.advertiser_id)
                if problem not in (SEED_DELETED, SEED_UNSHARED):
                    still_used = True
                    continue
                row.refresh_stopped = problem
                action = "SEED_DELETED" if problem == SEED_DELETED else "SEED_UNSHARED"
                self.audiences.history(s, row.audience_id, action, str(audience_id), msg=problem)
        if still_used:
            return
        with self._seeds_lock:
            self._seeds.discard(audience_id)

    # --- automatic refresh -------------------------------------------------------------------

    def refresh_due(self) -> int:
        """Queue builds of lookalikes in use that were last built more than
        ``lookalike_refresh_days`` ago; returns how many."""
        if self.in_use is None:
            return 0
        cutoff = self.clock() - timedelta(days=self.settings.lookalike_refresh_days)
        with self.db.session() as s:
            rows = s.execute(
                select(AudienceLookalike.audience_id)
                .join(Audience, Audience.id == AudienceLookalike.audience_id)
                .where(
                    Audience.deleted.is_(False),
                    Audience.status == Status.READY.value,
                    AudienceLookalike.refresh_stopped == "",
                    AudienceLookalike.built_at < cutoff,
                )
            ).scalars()
            due = list(rows)
        used = self.in_use(due) if due else set()
        busy = self._queued()
        queued = 0
        for audience_id in due:
            if audience_id in used and audience_id not in busy:
                self._queue(audience_id, "AUTO_REFRESH")
                queued += 1
        return queued

    def _queued(self) -> set[int]:
        with self.db.session() as s:
            return set(
                s.execute(
                    select(Job.audience_id).where(
                        Job.kind == BUILD_LOOKALIKE, Job.status.in_(("QUEUED", "RUNNING"))
                    )
                ).scalars()
            )

    def start(self) -> None:
        with self.db.session() as s:
            seeds = set(
                s.execute(
                    select(AudienceLookalike.seed_id).where(AudienceLookalike.refresh_stopped == "")
                ).scalars()
            )
        with self._seeds_lock:
            self._seeds |= seeds
        for seed_id in seeds:  # deleted while the server was down
            self._on_change(seed_id)
        self._rounds.start()

    def stop(self) -> None:
        self._rounds.stop()

    def _round(self) -> None:
        self.merge_features()
        self.refresh_due()
