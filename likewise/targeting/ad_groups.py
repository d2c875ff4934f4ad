"""Ad groups and the audiences applied to them (``dmp/custom_audience/apply/``, ``apply/log/``).

An audience is applied to an ad group as included or excluded, never both; every Apply and
Disconnect is logged. Only usable audiences can be applied (ready, not expired, at least the
minimum size of reachable users), lookalikes never to a Reach & Frequency ad group. An audience
applied to an ad group cannot be deleted until it is disconnected.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from likewise.domain.audience import Source
from likewise.domain.targeting import (
    AdGroupStatus,
    Targeting,
    UsageMode,
    check_name,
    parse_status,
    parse_targeting,
    targeting_from_wire,
)
from likewise.engine.audiences import Audiences
from likewise.errors import InvalidParameter, LimitExceeded, NotFound
from likewise.store.db import Database
from likewise.store.models import AdGroup, AdGroupAudience, ApplyLog, Audience

AD_GROUP_ID_START = 1_800_000_000_000_000_000
MAX_AD_GROUPS = 5000  # per advertiser
MAX_AUDIENCES_PER_AD_GROUP = 100


@dataclass(frozen=True)
class AdGroupView:
    id: int
    advertiser_id: int
    name: str
    status: AdGroupStatus
    reach_frequency: bool
    targeting: Targeting
    included: tuple[int, ...]
    excluded: tuple[int, ...]
    created_at: datetime
    modified_at: datetime


@dataclass(frozen=True)
class ApplyEntry:
    audience_id: int
    ad_group_id: int
    ad_group_name: str
    action: str  # APPLY | DISCONNECT
    usage_mode: str  # INCLUDE | EXCLUDE
    editor: str
    at: datetime


class AdGroups:
    def __init__(
        self, *, db: Database, audiences: Audiences, clock: Callable[[], datetime]
    ) -> None:
        self.db = db
        self.audiences = audiences
        self.clock = clock
        self._listeners: list[Callable[[], None]] = []
        audiences.delete_guards.append(self._not_applied)

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Called after any change of ad groups or of what is applied to them."""
        self._listeners.append(listener)

    def changed(self) -> None:
        for listener in self._listeners:
            listener()

    # --- ad groups ---------------------------------------------------------------------------

    def create(self, *, advertiser_id: int, body: Mapping[str, Any]) -> int:
        name = check_name(body.get("adgroup_name"))
        status = parse_status(body.get("status", body.get("operation_status", "ACTIVE")))
        targeting = parse_targeting(body)
        reach_frequency = _flag(body.get("reach_frequency", False), "reach_frequency")
        included = parse_ids(body.get("audience_ids"), "audience_ids")
        excluded = parse_ids(body.get("excluded_audience_ids"), "excluded_audience_ids")
        with self.db.session() as s:
            count = s.execute(
                select(func.count())
                .select_from(AdGroup)
                .where(AdGroup.advertiser_id == advertiser_id, AdGroup.deleted.is_(False))
            ).scalar_one()
            if count >= MAX_AD_GROUPS:
                raise LimitExceeded(
                    f"advertiser {advertiser_id} already has {count} ad groups; at most "
                    f"{MAX_AD_GROUPS}",
                    field="advertiser_id",
                )
            now = self.clock()
            group = AdGroup(
                id=self.db.next_id(s, "ad_group", AD_GROUP_ID_START),
                advertiser_id=advertiser_id,
                name=name,
                status=status.value,
                reach_frequency=reach_frequency,
                targeting=targeting.wire(),
                created_at=now,
                modified_at=now,
                deleted=False,
            )
            s.add(group)
            s.flush()
            self._set_audiences(s, group, included, excluded, editor="likewise_api")
            group_id = group.id
        self.changed()
        return group_id

    def update(self, *, advertiser_id: int, ad_group_id: int, body: Mapping[str, Any]) -> None:
        """Change what ``body`` names: name, status, targeting, and the included or excluded
        audiences (each list replaces the current one)."""
        with self.db.session() as s:
            group = self._owned(s, advertiser_id, ad_group_id)
            if "adgroup_name" in body:
                group.name = check_name(body["adgroup_name"])
            if "status" in body or "operation_status" in body:
                group.status = parse_status(body.get("status", body.get("operation_status"))).value
            group.targeting = parse_targeting(body, targeting_from_wire(group.targeting)).wire()
            if "audience_ids" in body or "excluded_audience_ids" in body:
                current = self._applied(s, group.id)
                included = (
                    parse_ids(body["audience_ids"], "audience_ids")
                    if "audience_ids" in body
                    else [a for a, m in current.items() if m == UsageMode.INCLUDE]
                )
                excluded = (
                    parse_ids(body["excluded_audience_ids"], "excluded_audience_ids")
                    if "excluded_audience_ids" in body
                    else [a for a, m in current.items() if m == UsageMode.EXCLUDE]
                )
                self._set_audiences(s, group, included, excluded, editor="likewise_api")
            group.modified_at = self.clock()
        self.changed()

    def delete(self, *, advertiser_id: int, ids: list[int]) -> None:
        """Delete ad groups (all or nothing); their audiences are disconnected."""
        with self.db.session() as s:
            groups = [self._owned(s, advertiser_id, i) for i in ids]
            for group in groups:
                for audience_id, mode in self._applied(s, group.id).items():
                    self._log(s, group, audience_id, "DISCONNECT", mode, "likewise_api")
                s.execute(delete(AdGroupAudience).where(AdGroupAudience.ad_group_id == group.id))
                group.deleted = True
                group.modified_at = self.clock()
        self.changed()

    def get(self, *, advertiser_id: int, ids: list[int]) -> list[AdGroupView]:
        with self.db.session() as s:
            return [self._view(s, self._owned(s, advertiser_id, i)) for i in ids]

    def list(
        self, *, advertiser_id: int, page: int, page_size: int
    ) -> tuple[list[AdGroupView], int]:
        with self.db.session() as s:
            q = select(AdGroup).where(
                AdGroup.advertiser_id == advertiser_id, AdGroup.deleted.is_(False)
            )
            total = s.execute(select(func.count()).select_from(q.subquery())).scalar_one()
            rows = s.execute(
                q.order_by(AdGroup.id.desc()).offset((page - 1) * page_size).limit(page_size)
            ).scalars()
            return [self._view(s, g) for g in rows], int(total)

    def active(self) -> list[AdGroupView]:
        """Every active ad group (membership serving reads these): two queries in all."""
        live = (AdGroup.deleted.is_(False), AdGroup.status == AdGroupStatus.ACTIVE.value)
        with self.db.session() as s:
            groups = list(s.execute(select(AdGroup).where(*live).order_by(AdGroup.id)).scalars())
            applied: dict[int, dict[int, UsageMode]] = {}
            for group_id, audience_id, mode in s.execute(
                select(
                    AdGroupAudience.ad_group_id,
                    AdGroupAudience.audience_id,
                    AdGroupAudience.usage_mode,
                )
                .join(AdGroup, AdGroup.id == AdGroupAudience.ad_group_id)
                .where(*live)
            ).all():
                applied.setdefault(group_id, {})[audience_id] = UsageMode(mode)
            return [self._view(s, g, applied.get(g.id, {})) for g in groups]

    # --- apply -------------------------------------------------------------------------------

    def apply(
        self,
        *,
        advertiser_id: int,
        audience_id: int,
        ad_group_ids: list[int],
        action_mode: str,
        usage_mode: str | None,
        editor: str = "open_api",
    ) -> None:
        """``dmp/custom_audience/apply/``: Apply (Include or Exclude) or Disconnect one audience
        to or from ad groups of the advertiser; all or nothing."""
        if not ad_group_ids:
            raise InvalidParameter("adgroup_ids must name at least one ad group", "adgroup_ids")
        action = action_mode.strip().upper()
        if action not in ("APPLY", "DISCONNECT"):
            raise InvalidParameter(
                f"action_mode {action_mode!r} is not Apply or Disconnect", field="action_mode"
            )
        mode: UsageMode | None = None
        if action == "APPLY":
            if usage_mode is None:
                raise InvalidParameter(
                    "usage_mode (Include or Exclude) is required to Apply", field="usage_mode"
                )
            try:
                mode = UsageMode(usage_mode.strip().upper())
            except ValueError:
                raise InvalidParameter(
                    f"usage_mode {usage_mode!r} is not Include or Exclude", field="usage_mode"
                ) from None
        with self.db.session() as s:
            groups = [self._owned(s, advertiser_id, i, field="adgroup_ids") for i in ad_group_ids]
            audience = self._visible_audience(s, advertiser_id, audience_id)
            applied = {g.id: self._applied(s, g.id).get(audience_id) for g in groups}
            for group in groups:
                current = applied[group.id]
                if action == "DISCONNECT":
                    if current is None:
                        raise InvalidParameter(
                            f"custom audience {audience_id} is not applied to ad group {group.id}",
                            field="adgroup_ids",
                        )
                    continue
                assert mode is not None
                self._check_usable(s, audience, group)
                if current is not None and current != mode:
                    raise InvalidParameter(
                        f"custom audience {audience_id} is already "
                        f"{'included in' if current == UsageMode.INCLUDE else 'excluded from'} "
                        f"ad group {group.id}; an audience cannot be both included and "
                        "excluded: disconnect it first",
                        field="usage_mode",
                    )
            for group in groups:
                current = applied[group.id]
                if action == "DISCONNECT":
                    assert current is not None
                    self._detach(s, group, audience_id, current, editor)
                elif current is None:
                    assert mode is not None
                    self._attach(s, group, audience_id, mode)
                    self._log(s, group, audience_id, "APPLY", mode, editor)
            audience.last_used_at = self.clock()  # in use: it does not expire
        self.changed()

    def apply_log(
        self, *, advertiser_id: int, audience_ids: list[int], page: int, page_size: int
    ) -> tuple[list[ApplyEntry], int]:
        with self.db.session() as s:
            for audience_id in audience_ids:
                a = s.get(Audience, audience_id)
                if a is None or a.deleted or a.advertiser_id != advertiser_id:
                    raise NotFound(
                        f"custom audience {audience_id} does not exist or is not owned by "
                        f"advertiser {advertiser_id}",
                        field="custom_audience_ids",
                    )
            q = (
                select(ApplyLog, AdGroup.name)
                .join(AdGroup, AdGroup.id == ApplyLog.ad_group_id)
                .where(ApplyLog.audience_id.in_(audience_ids))
            )
            total = s.execute(select(func.count()).select_from(q.subquery())).scalar_one()
            rows = s.execute(
                q.order_by(ApplyLog.id.desc()).offset((page - 1) * page_size).limit(page_size)
            ).all()
            entries = [
                ApplyEntry(
                    log.audience_id,
                    log.ad_group_id,
                    name,
                    log.action,
                    log.usage_mode,
                    log.editor,
                    log.at,
                )
                for log, name in rows
            ]
        return entries, int(total)

    def in_use(self, audience_ids: Collection[int]) -> set[int]:
        """Those of ``audience_ids`` applied to an active ad group."""
        if not audience_ids:
            return set()
        with self.db.session() as s:
            return set(
                s.execute(
                    select(AdGroupAudience.audience_id)
                    .join(AdGroup, AdGroup.id == AdGroupAudience.ad_group_id)
                    .where(
                        AdGroupAudience.audience_id.in_(list(audience_ids)),
                        AdGroup.deleted.is_(False),
                        AdGroup.status == AdGroupStatus.ACTIVE.value,
                    )
                ).scalars()
            )

    def disconnect_everywhere(
        self, s: Session, audience_id: int, advertiser_id: int, editor: str
    ) -> None:
        """Disconnect an audience from every ad group of ``advertiser_id`` (a share was
        cancelled)."""
        rows = s.execute(
            select(AdGroup, AdGroupAudience.usage_mode)
            .join(AdGroupAudience, AdGroupAudience.ad_group_id == AdGroup.id)
            .where(
                AdGroupAudience.audience_id == audience_id, AdGroup.advertiser_id == advertiser_id
            )
        ).all()
        for group, mode in rows:
            self._detach(s, group, audience_id, UsageMode(mode), editor)

    # --- helpers -----------------------------------------------------------------------------

    def _owned(
        self, s: Session, advertiser_id: int, ad_group_id: int, *, field: str = "adgroup_id"
    ) -> AdGroup:
        group = s.get(AdGroup, ad_group_id)
        if group is None or group.deleted or group.advertiser_id != advertiser_id:
            raise NotFound(
                f"ad group {ad_group_id} does not exist under advertiser {advertiser_id}",
                field=field,
            )
        return group

    def _visible_audience(self, s: Session, advertiser_id: int, audience_id: int) -> Audience:
        audience = self.audiences.find_visible(s, advertiser_id, audience_id)
        if audience is None:
            raise NotFound(
                f"custom audience {audience_id} does not exist", field="custom_audience_id"
            )
        return audience

    def _check_usable(self, s: Session, audience: Audience, group: AdGroup) -> None:
        usable, why = self.audiences.usable(audience)
        if not usable:
            raise InvalidParameter(
                f"custom audience {audience.id} cannot be applied: {why}",
                field="custom_audience_id",
            )
        if audience.source == Source.LOOKALIKE and group.reach_frequency:
            raise InvalidParameter(
                f"custom audience {audience.id} is a lookalike audience: lookalikes cannot be "
                f"used in Reach & Frequency ad groups (ad group {group.id})",
                field="adgroup_ids",
            )

    def _applied(self, s: Session, ad_group_id: int) -> dict[int, UsageMode]:
        return {
            a: UsageMode(m)
            for a, m in s.execute(
                select(AdGroupAudience.audience_id, AdGroupAudience.usage_mode).where(
                    AdGroupAudience.ad_group_id == ad_group_id
                )
            ).all()
        }

    def _attach(self, s: Session, group: AdGroup, audience_id: int, mode: UsageMode) -> None:
        count = len(self._applied(s, group.id))
        if count >= MAX_AUDIENCES_PER_AD_GROUP:
            raise LimitExceeded(
                f"ad group {group.id} already has {count} audiences; at most "
                f"{MAX_AUDIENCES_PER_AD_GROUP}",
                field="adgroup_ids",
            )
        s.add(AdGroupAudience(ad_group_id=group.id, audience_id=audience_id, usage_mode=mode.value))
        s.flush()

    def _detach(
        self, s: Session, group: AdGroup, audience_id: int, mode: UsageMode, editor: str
    ) -> None:
        s.execute(
            delete(AdGroupAudience).where(
                AdGroupAudience.ad_group_id == group.id,
                AdGroupAudience.audience_id == audience_id,
            )
        )
        self._log(s, group, audience_id, "DISCONNECT", mode, editor)

    def _set_audiences(
        self, s: Session, group: AdGroup, included: list[int], excluded: list[int], editor: str
    ) -> None:
        both = set(included) & set(excluded)
        if both:
            raise InvalidParameter(
                f"custom audience {min(both)} is both included and excluded; an audience can "
                "only be one of them in an ad group",
                field="excluded_audience_ids",
            )
        wanted = {a: UsageMode.INCLUDE for a in included} | {a: UsageMode.EXCLUDE for a in excluded}
        current = self._applied(s, group.id)
        for audience_id, mode in wanted.items():
            if current.get(audience_id) == mode:
                continue
            audience = self._visible_audience(s, group.advertiser_id, audience_id)
            self._check_usable(s, audience, group)
        for audience_id, mode in current.items():
            if wanted.get(audience_id) != mode:
                self._detach(s, group, audience_id, mode, editor)
        s.flush()
        for audience_id, mode in wanted.items():
            if current.get(audience_id) != mode:
                self._attach(s, group, audience_id, mode)
                self._log(s, group, audience_id, "APPLY", mode, editor)

    def _log(
        self,
        s: Session,
        group: AdGroup,
        audience_id: int,
        action: str,
        mode: UsageMode,
        editor: str,
    ) -> None:
        s.add(
            ApplyLog(
                audience_id=audience_id,
                ad_group_id=group.id,
                advertiser_id=group.advertiser_id,
                action=action,
                usage_mode=mode.value,
                editor=editor,
                at=self.clock(),
            )
        )

    def _view(
        self, s: Session, g: AdGroup, applied: dict[int, UsageMode] | None = None
    ) -> AdGroupView:
        if applied is None:
            applied = self._applied(s, g.id)
        return AdGroupView(
            id=g.id,
            advertiser_id=g.advertiser_id,
            name=g.name,
            status=AdGroupStatus(g.status),
            reach_frequency=g.reach_frequency,
            targeting=targeting_from_wire(g.targeting),
            included=tuple(sorted(a for a, m in applied.items() if m == UsageMode.INCLUDE)),
            excluded=tuple(sorted(a for a, m in applied.items() if m == UsageMode.EXCLUDE)),
            created_at=g.created_at,
            modified_at=g.modified_at,
        )

    def _not_applied(self, s: Session, audience_ids: list[int]) -> None:
        """Deletion guard: an audience applied to an ad group must be disconnected first."""
        row = s.execute(
            select(
                AdGroupAudience.audience_id,
                AdGroupAudience.ad_group_id,
                AdGroup.advertiser_id,
                Audience.advertiser_id,
            )
            .join(AdGroup, AdGroup.id == AdGroupAudience.ad_group_id)
            .join(Audience, Audience.id == AdGroupAudience.audience_id)
            .where(AdGroupAudience.audience_id.in_(audience_ids), AdGroup.deleted.is_(False))
            .limit(1)
        ).first()
        if row is not None and row[2] != row[3]:
            raise InvalidParameter(
                f"custom audience {row[0]} is applied to an ad group of advertiser {row[2]}, "
                "which it is shared with; cancel the share (dmp/custom_audience/share/cancel/) "
                "before deleting it",
                field="custom_audience_ids",
            )
        if row is not None:
            raise InvalidParameter(
                f"custom audience {row[0]} is applied to ad group {row[1]}; disconnect it "
                "(dmp/custom_audience/apply/ with action_mode Disconnect) before deleting it",
                field="custom_audience_ids",
            )


def _flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidParameter(f"{field} must be true or false", field=field)


def parse_ids(value: Any, field: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidParameter(f"{field} must be a list of audience ids", field=field)
    out: list[int] = []
    for raw in value:
        text = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
        if not text.isdigit() or not 0 < int(text) < 2**63:
            raise InvalidParameter(f"{field}: {raw!r} is not an audience id", field=field)
        if int(text) not in out:
            out.append(int(text))
    return out
