"""Audience service: create, update, read and delete audiences and their memberships."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from pyroaring import BitMap
from sqlalchemy import ColumnElement, event, func, or_, select
from sqlalchemy.orm import Session

from likewise.domain.audience import (
    AudienceView,
    HistoryEntry,
    Lifecycle,
    Source,
    Status,
    SubType,
    UpdateAction,
    check_name,
    validity,
)
from likewise.engine.jobs import JobRunner
from likewise.engine.uploads import Uploads
from likewise.errors import (
    AudienceNotReady,
    AudienceTooSmall,
    InvalidParameter,
    LimitExceeded,
    NotFound,
)
from likewise.settings import Settings
from likewise.store.bitmaps import BitmapStore
from likewise.store.db import Database
from likewise.store.graph import PlatformGraph
from likewise.store.models import (
    Audience,
    AudienceCombination,
    AudienceFile,
    AudienceHistory,
    AudienceLookalike,
    AudienceRule,
    AudienceShare,
    AudienceVersion,
    Job,
    Upload,
)

log = logging.getLogger(__name__)

AUDIENCE_ID_START = 6_000_000_000_000_000_000
MATCH_FILES = "MATCH_FILES"


class Audiences:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        graph: PlatformGraph,
        bitmaps: BitmapStore,
        uploads: Uploads,
        jobs: JobRunner,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.db = db
        self.graph = graph
        self.bitmaps = bitmaps
        self.uploads = uploads
        self.jobs = jobs
        self.clock = clock
        self._cache: OrderedDict[tuple[int, int], BitMap] = OrderedDict()
        self._cache_lock = threading.Lock()
        # Membership newer than the audience's stored version (live rule audiences): replaced
        # whole on each change, so a reader holds one consistent bitmap and never waits.
        self._live: dict[int, BitMap] = {}
        self._deleted: set[int] = set()  # deleted here: late live publications are ignored
        self._listeners: list[Callable[[int], None]] = []
        # Checks before a delete (in its session): each raises to refuse it (e.g. an audience
        # still applied to an ad group).
        self.delete_guards: list[Callable[[Session, list[int]], None]] = []
        jobs.register(MATCH_FILES, self._run_match, self._match_failed)

    def add_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(audience_id)`` whenever an audience's membership changes (a new
        stored version, or live membership published). Called on the thread that made the
        change, after it is visible; a listener must be quick or hand the work off."""
        self._listeners.append(listener)

    def notify(self, audience_id: int) -> None:
        """Tell the listeners something about the audience changed that is not its members
        (who may use it: a share made or cancelled)."""
        self._changed(audience_id)

    def _changed(self, audience_id: int) -> None:
        for listener in self._listeners:
            try:
                listener(audience_id)
            except Exception:  # a listener's failure is its own: the change is made
                log.exception("audience listener %r failed for %s", listener, audience_id)

    # --- create ------------------------------------------------------------------------------

    def new_audience(
        self,
        s: Session,
        *,
        advertiser_id: int,
        name: str,
        source: Source,
        status: Status,
        calculate_type: str | None = None,
        sub_type: str = SubType.NORMAL,
        retention_in_days: int | None = None,
        enhancement: bool = False,
    ) -> Audience:
        """Insert an audience after the checks every kind shares (name, quota)."""
        problem = check_name(name)
        if problem:
            raise InvalidParameter(problem, field="custom_audience_name")
        if retention_in_days is not None and not 1 <= retention_in_days <= 365:
            raise InvalidParameter(
                "retention_in_days must be between 1 and 365", field="retention_in_days"
            )
        count = s.execute(
            select(func.count())
            .select_from(Audience)
            .where(Audience.advertiser_id == advertiser_id, Audience.deleted.is_(False))
        ).scalar_one()
        limit = self.settings.max_audiences_per_advertiser
        if count >= limit:
            raise LimitExceeded(
                f"advertiser {advertiser_id} already has {count} custom audiences; at most "
                f"{limit} are allowed: delete some first",
                field="advertiser_id",
            )
        now = self.clock()
        audience = Audience(
            id=self.db.next_id(s, "audience", AUDIENCE_ID_START),
            advertiser_id=advertiser_id,
            name=name,
            source=source.value,
            calculate_type=calculate_type,
            audience_sub_type=sub_type,
            retention_in_days=retention_in_days,
            audience_enhancement=enhancement,
            status=status.value,
            version=0,
            created_at=now,
            modified_at=now,
            last_used_at=now,
        )
        s.add(audience)
        s.flush()
        return audience

    def create_from_files(
        self,
        *,
        advertiser_id: int,
        name: str,
        calculate_type: str,
        file_paths: list[str],
        sub_type: str = SubType.NORMAL,
        retention_in_days: int | None = None,
        enhancement: bool = False,
    ) -> int:
        uploads = self._files(advertiser_id, file_paths, calculate_type)
        with self.db.session() as s:
            audience = self.new_audience(
                s,
                advertiser_id=advertiser_id,
                name=name,
                source=Source.CUSTOMER_FILE,
                status=Status.CALCULATING,
                calculate_type=calculate_type,
                sub_type=sub_type,
                retention_in_days=retention_in_days,
                enhancement=enhancement,
            )
            for u in uploads:
                s.add(AudienceFile(audience_id=audience.id, file_path=u.file_path))
            self.history(s, audience.id, "CREATE", "file_paths: " + ", ".join(file_paths))
            job = Job(
                audience_id=audience.id,
                kind=MATCH_FILES,
                payload={"file_paths": file_paths},
                status="QUEUED",
                created_at=self.clock(),
            )
            s.add(job)
            s.flush()
            audience_id, job_id = audience.id, job.id
        self.jobs.submit(job_id)
        return audience_id

    def _files(
        self, advertiser_id: int, file_paths: list[str], calculate_type: str
    ) -> list[Upload]:
        if not file_paths:
            raise InvalidParameter("file_paths must name at least one file", field="file_paths")
        if len(set(file_paths)) != len(file_paths):
            raise InvalidParameter("file_paths contains the same file twice", field="file_paths")
        uploads = [self.uploads.get(advertiser_id, p) for p in file_paths]
        for u in uploads:
            if u.calculate_type != calculate_type:
                raise InvalidParameter(
                    f"file_path {u.file_path!r} was uploaded with calculate_type "
                    f"{u.calculate_type}, not {calculate_type}",
                    field="calculate_type",
                )
        return uploads

    def _match(self, uploads: list[Upload]) -> tuple[BitMap, list[str]]:
        """Members matched by these files, and one history line per file."""
        paths = [self.uploads.keys_path(u) for u in uploads]
        result = self.graph.match(paths)
        lines = []
        for u, p in zip(uploads, paths, strict=True):
            stats = u.rejects or {}
            matched = result.matched_rows_by_file.get(str(p), 0)
            lines.append(
                f"file {u.file_path}: {u.rows_total} rows, {u.rows_valid} valid, "
                f"{matched} matched" + _rejects_text(u.rows_rejected, stats)
            )
        return result.members, lines

    def _run_match(self, job: Job) -> None:
        with self.db.session() as s:
            audience = s.get(Audience, job.audience_id)
            if audience is None or audience.deleted:
                return
            uploads = [s.get(Upload, p) for p in job.payload["file_paths"]]
        members, lines = self._match([u for u in uploads if u is not None])
        with self.db.session() as s:
            audience = s.get(Audience, job.audience_id)
            if audience is None or audience.deleted:
                return
            self.new_version(s, audience, members)
            audience.status = Status.READY.value
            audience.error_msg = ""
            self.history(
                s, audience.id, "CALCULATED", f"version {audience.version}", msg="; ".join(lines)
            )

    def _match_failed(self, job: Job, error: str) -> None:
        with self.db.session() as s:
            audience = s.get(Audience, job.audience_id)
            if audience is None:
                return
            audience.status = Status.FAILED.value
            audience.error_msg = "matching failed; upload the files again or contact the operator"
            self.history(s, audience.id, "FAILED", error[:500], msg=audience.error_msg)

    def new_version(
        self, s: Session, audience: Audience, members: BitMap, *, supersede_live: bool = True
    ) -> None:
        """Store ``members`` as the audience's next version. ``supersede_live=False``: live
        membership published for it stays what readers see (it may be newer than this)."""
        version = audience.version + 1
        path = self.bitmaps.write(audience.id, version, members)
        s.add(
            AudienceVersion(
                audience_id=audience.id,
                version=version,
                bitmap_file=path.name,
                size=len(members),
                created_at=self.clock(),
            )
        )
        audience.version = version
        audience.matched_num = len(members)
        self.bitmaps.prune(audience.id, {version, version - 1})
        with self._cache_lock:
            self._cache[(audience.id, version)] = members
        if supersede_live:
            self._live.pop(audience.id, None)  # the stored version is now the newest
        # Listeners hear of it once the caller commits: then they read the new version (and
        # the status set with it); a rollback tells them nothing.
        audience_id = audience.id
        event.listen(s, "after_commit", lambda _s: self._changed(audience_id), once=True)

    def publish_live(self, audience_id: int, members: BitMap) -> None:
        """Make ``members`` the audience's membership now, ahead of its next stored version
        (the rule engine stores one now and then, not on every change). Ignored once the
        audience is deleted."""
        if audience_id in self._deleted:
            return
        self._live[audience_id] = members
        self._changed(audience_id)

    def live_members(self, audience_id: int) -> BitMap | None:
        """Membership published live and not stored as a version yet, if any."""
        return self._live.get(audience_id)

    def history(
        self,
        s: Session,
        audience_id: int,
        action: str,
        detail: str = "",
        *,
        msg: str = "",
        editor: str = "open_api",
    ) -> None:
        s.add(
            AudienceHistory(
                audience_id=audience_id,
                action=action,
                action_detail=detail,
                editor=editor,
                msg=msg,
                opt_time=self.clock(),
            )
        )

    # --- update ------------------------------------------------------------------------------

    def update(
        self,
        *,
        advertiser_id: int,
        audience_id: int,
        name: str | None = None,
        file_paths: list[str] | None = None,
        action: str | None = None,
        sub_type: str | None = None,
    ) -> None:
        if name is None and file_paths is None and sub_type is None:
            raise InvalidParameter(
                "nothing to update: give custom_audience_name, file_paths or audience_sub_type",
                field="custom_audience_name",
            )
        audience = self._owned(advertiser_id, audience_id)
        life = Lifecycle(
            audience.created_at,
            audience.modified_at,
            audience.last_used_at,
            audience.retention_in_days,
        )
        if life.is_expired(self.clock()):
            raise InvalidParameter(
                f"custom audience {audience_id} has expired; it can only be deleted",
                field="custom_audience_id",
            )
        if sub_type is not None:
            # TikTok: only NORMAL -> REACH_FREQUENCY, and it overrides every other change.
            if sub_type != SubType.REACH_FREQUENCY:
                raise InvalidParameter(
                    "audience_sub_type can only be changed to REACH_FREQUENCY",
                    field="audience_sub_type",
                )
            if audience.source == Source.LOOKALIKE:
                raise InvalidParameter(
                    "a lookalike audience cannot be used in Reach & Frequency ad groups, so it "
                    "cannot become REACH_FREQUENCY",
                    field="audience_sub_type",
                )
            with self.db.session() as s:
                row = s.get(Audience, audience_id)
                assert row is not None
                row.audience_sub_type = sub_type
                row.modified_at = self.clock()
                self.history(s, audience_id, "UPDATE_SUB_TYPE", sub_type)
            return
        if name is not None:
            problem = check_name(name)
            if problem:
                raise InvalidParameter(problem, field="custom_audience_name")
        if file_paths is not None:
            self._update_members(audience, file_paths, UpdateAction(action or "REPLACE"))
        if name is not None:
            with self.db.session() as s:
                row = s.get(Audience, audience_id)
                assert row is not None
                old, row.name, row.modified_at = row.name, name, self.clock()
                self.history(s, audience_id, "RENAME", f"{old} -> {name}")

    def _update_members(
        self, audience: Audience, file_paths: list[str], action: UpdateAction
    ) -> None:
        if audience.source != Source.CUSTOMER_FILE:
            raise InvalidParameter(
                "file_paths can only be used with customer file audiences", field="file_paths"
            )
        if audience.status == Status.CALCULATING:
            raise AudienceNotReady(
                "the audience is still being calculated; update it when it is ready",
                field="custom_audience_id",
            )
        assert audience.calculate_type is not None
        uploads = self._files(audience.advertiser_id, file_paths, audience.calculate_type)
        matched, lines = self._match(uploads)
        current = self.members(audience.id, audience.version)
        if action is UpdateAction.APPEND:
            members = current | matched
        elif action is UpdateAction.REMOVE:
            members = current - matched
        else:
            members = matched
        reachable = members.difference_cardinality(self.graph.excluded())
        minimum = self.settings.min_audience_size
        if reachable < minimum:
            raise AudienceTooSmall(
                f"{action.value} would leave the audience with fewer than {minimum} reachable "
                "users; it was not changed",
                field="action",
            )
        with self.db.session() as s:
            row = s.get(Audience, audience.id)
            assert row is not None
            if action is not UpdateAction.REMOVE:
                if action is UpdateAction.REPLACE:
                    for f in s.execute(
                        select(AudienceFile).where(AudienceFile.audience_id == row.id)
                    ).scalars():
                        s.delete(f)
                    s.flush()
                known = set(
                    s.execute(
                        select(AudienceFile.file_path).where(AudienceFile.audience_id == row.id)
                    ).scalars()
                )
                for u in uploads:
                    if u.file_path not in known:
                        s.add(AudienceFile(audience_id=row.id, file_path=u.file_path))
            self.new_version(s, row, members)
            row.status = Status.READY.value
            row.modified_at = self.clock()
            self.history(
                s,
                row.id,
                action.value,
                "file_paths: " + ", ".join(file_paths),
                msg="; ".join(lines),
            )

    # --- read --------------------------------------------------------------------------------

    def members(self, audience_id: int, version: int) -> BitMap:
        """All matched users of one version (consent not applied)."""
        key = (audience_id, version)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        bitmap = self.bitmaps.read(audience_id, version) if version else BitMap()
        with self._cache_lock:
            self._cache[key] = bitmap
            while len(self._cache) > 256:
                self._cache.popitem(last=False)
        return bitmap

    def current_members(self, audience_id: int) -> BitMap:
        """All members now: live membership if published, else the current version
        (consent not applied)."""
        live = self._live.get(audience_id)
        if live is not None:
            return live
        with self.db.session() as s:
            audience = s.get(Audience, audience_id)
            version = audience.version if audience is not None else 0
        return self.members(audience_id, version)

    def latest_members(self, audience: Audience) -> BitMap:
        live = self._live.get(audience.id)
        return live if live is not None else self.members(audience.id, audience.version)

    def reachable(self, audience: Audience) -> BitMap:
        """Members who may be targeted and counted: consent and erasure applied."""
        return self.latest_members(audience) - self.graph.excluded()

    def validity(self, audience: Audience) -> tuple[bool, int, str]:
        """``(is_valid, cover_num, msg)`` now: what ``get`` shows and what targeting obeys."""
        life = Lifecycle(
            audience.created_at,
            audience.modified_at,
            audience.last_used_at,
            audience.retention_in_days,
        )
        reachable = (
            self.latest_members(audience).difference_cardinality(self.graph.excluded())
            if audience.status == Status.READY
            else 0
        )
        return validity(
            status=Status(audience.status),
            reachable=reachable,
            min_size=self.settings.min_audience_size,
            expired=life.is_expired(self.clock()),
            error_msg=audience.error_msg,
        )

    def usable(self, audience: Audience) -> tuple[bool, str]:
        """Whether the audience may be targeted now (``is_valid``), and why not."""
        is_valid, _, msg = self.validity(audience)
        return is_valid, msg

    def find_visible(self, s: Session, advertiser_id: int, audience_id: int) -> Audience | None:
        """The audience, if the advertiser may see and use it (its own or shared with it)."""
        return s.execute(
            select(Audience).where(self.visible_to(advertiser_id), Audience.id == audience_id)
        ).scalar_one_or_none()

    def _owned(self, advertiser_id: int, audience_id: int) -> Audience:
        with self.db.session() as s:
            audience = s.get(Audience, audience_id)
        if audience is None or audience.deleted or audience.advertiser_id != advertiser_id:
            raise NotFound(
                f"custom audience {audience_id} does not exist", field="custom_audience_id"
            )
        return audience

    def visible_to(self, advertiser_id: int) -> ColumnElement[bool]:
        """The audiences an advertiser may see and use: its own and those shared with it."""
        shared = select(AudienceShare.audience_id).where(
            AudienceShare.advertiser_id == advertiser_id
        )
        return Audience.deleted.is_(False) & or_(
            Audience.advertiser_id == advertiser_id, Audience.id.in_(shared)
        )

    def list(
        self, *, advertiser_id: int, ids: list[int] | None, page: int, page_size: int
    ) -> tuple[list[AudienceView], int]:
        with self.db.session() as s:
            q = select(Audience).where(self.visible_to(advertiser_id))
            if ids:
                q = q.where(Audience.id.in_(ids))
            total = s.execute(select(func.count()).select_from(q.subquery())).scalar_one()
            rows = list(
                s.execute(
                    q.order_by(Audience.id.desc()).offset((page - 1) * page_size).limit(page_size)
                ).scalars()
            )
            return [self._view(s, a, advertiser_id, 0) for a in rows], int(total)

    def get(
        self, *, advertiser_id: int, ids: list[int], history_size: int | None
    ) -> list[AudienceView]:
        with self.db.session() as s:
            rows = {
                a.id: a
                for a in s.execute(
                    select(Audience).where(self.visible_to(advertiser_id), Audience.id.in_(ids))
                ).scalars()
            }
            missing = [i for i in ids if i not in rows]
            if missing:
                raise NotFound(
                    f"custom audience {missing[0]} does not exist", field="custom_audience_ids"
                )
            return [self._view(s, rows[i], advertiser_id, history_size) for i in ids]

    def _view(self, s: Session, a: Audience, viewer: int, history_size: int | None) -> AudienceView:
        now = self.clock()
        life = Lifecycle(a.created_at, a.modified_at, a.last_used_at, a.retention_in_days)
        expired = life.is_expired(now)
        is_valid, cover, msg = self.validity(a)
        shared_count = s.execute(
            select(func.count()).select_from(AudienceShare).where(AudienceShare.audience_id == a.id)
        ).scalar_one()
        history: list[HistoryEntry] = []
        if history_size != 0:
            q = (
                select(AudienceHistory)
                .where(AudienceHistory.audience_id == a.id)
                .order_by(AudienceHistory.id.desc())
            )
            if history_size is not None:
                q = q.limit(history_size)
            history = [
                HistoryEntry(h.action, h.action_detail, h.editor, h.msg, h.opt_time)
                for h in s.execute(q).scalars()
            ]
        owner = a.advertiser_id == viewer
        rule = s.get(AudienceRule, a.id) if a.source == Source.RULE else None
        definition: str | None = None
        if rule is not None:
            # TikTok's `rule`: the definition as a string; here the body's rule fields.
            definition = json.dumps(
                {"audience_type": rule.audience_type, "rule_spec": rule.rule_spec},
                separators=(",", ":"),
            )
        elif a.source == Source.COMBINED:
            combination = s.get(AudienceCombination, a.id)
            if combination is not None:
                definition = json.dumps(
                    {"combination_spec": combination.spec}, separators=(",", ":")
                )
        lookalike = s.get(AudienceLookalike, a.id) if a.source == Source.LOOKALIKE else None
        quality: dict[str, object] | None = None
        if lookalike is not None:
            quality = dict(lookalike.quality or {})
            quality["built_time"] = (
                lookalike.built_at.strftime("%Y-%m-%d %H:%M:%S") if lookalike.built_at else None
            )
            quality["refresh_stopped"] = lookalike.refresh_stopped or None
        return AudienceView(
            id=a.id,
            advertiser_id=viewer,
            owner_id=a.advertiser_id,
            name=a.name,
            source=Source(a.source),
            calculate_type=a.calculate_type,
            sub_type=a.audience_sub_type,
            status=Status(a.status),
            cover_num=cover,
            is_valid=is_valid,
            is_expiring=life.is_expiring(now),
            is_expired=expired,
            is_shared=(shared_count > 0) if owner else True,
            is_creator=owner,
            msg=msg,
            error_msg=a.error_msg,
            created_at=a.created_at,
            expires_at=life.expires_at(),
            retention_in_days=a.retention_in_days,
            audience_enhancement=a.audience_enhancement,
            history=history,
            rule_type=rule.audience_type if rule is not None else None,
            auto_refresh=rule.auto_refresh if rule is not None else False,
            rule=definition,
            lookalike_spec=dict(lookalike.spec) if lookalike is not None else None,
            lookalike_quality=quality,
        )

    # --- delete ------------------------------------------------------------------------------

    def delete(self, *, advertiser_id: int, ids: list[int]) -> None:
        """Delete owned audiences; all or nothing."""
        with self.db.session() as s:
            rows = []
            for audience_id in ids:
                a = s.get(Audience, audience_id)
                if a is None or a.deleted or a.advertiser_id != advertiser_id:
                    raise NotFound(
                        f"custom audience {audience_id} does not exist", field="custom_audience_ids"
                    )
                rows.append(a)
            for guard in self.delete_guards:
                guard(s, ids)
            for a in rows:
                a.deleted = True
                a.modified_at = self.clock()
                for share in s.execute(
                    select(AudienceShare).where(AudienceShare.audience_id == a.id)
                ).scalars():
                    s.delete(share)
                self.history(s, a.id, "DELETE")
        for a in rows:
            if a.source == Source.SEGMENT:
                self.graph.segment_drop(a.id)  # its hashed keys go with it
            self.bitmaps.drop(a.id)
            self._deleted.add(a.id)
            self._live.pop(a.id, None)
            with self._cache_lock:
                for key in [k for k in self._cache if k[0] == a.id]:
                    del self._cache[key]
            self._changed(a.id)


def _rejects_text(rejected: int, stats: dict[str, object]) -> str:
    if not rejected:
        return ""
    reasons = stats.get("rejects", {})
    assert isinstance(reasons, dict)
    parts = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return f", {rejected} rejected ({parts})"
