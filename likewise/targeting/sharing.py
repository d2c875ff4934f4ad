"""Sharing audiences inside a business center (``dmp/custom_audience/share/``,
``share/cancel/``, ``share/log/``).

The owner shares an audience with other advertisers of its business center. A recipient sees it
in ``list`` (``is_creator`` false), may apply it to its ad groups and seed lookalikes from it,
and cannot change or delete it. Cancelling a share disconnects the audience from the
recipient's ad groups. Every share and cancellation is logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from likewise.engine.audiences import Audiences
from likewise.errors import InvalidParameter, NotFound
from likewise.store.db import Database
from likewise.store.models import Advertiser, Audience, AudienceShare, ShareLog
from likewise.targeting.ad_groups import AdGroups

SHARED = "SHARED"
CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class ShareEntry:
    audience_id: int
    advertiser_id: int
    advertiser_name: str
    status: str  # SHARED | CANCELLED
    at: datetime  # of the last share or cancellation


class Sharing:
    def __init__(
        self,
        *,
        db: Database,
        audiences: Audiences,
        ad_groups: AdGroups,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.audiences = audiences
        self.ad_groups = ad_groups
        self.clock = clock

    def share(self, *, advertiser_id: int, audience_ids: list[int], with_ids: list[int]) -> None:
        """All or nothing; sharing again what is shared already changes nothing."""
        with self.db.session() as s:
            owner = s.get(Advertiser, advertiser_id)
            assert owner is not None  # the principal acts for it
            for audience_id in audience_ids:
                self._owned(s, advertiser_id, audience_id, "custom_audience_ids")
            for other in with_ids:
                target = s.get(Advertiser, other)
                if other == advertiser_id:
                    raise InvalidParameter(
                        "an audience cannot be shared with its own advertiser",
                        field="shared_advertiser_ids",
                    )
                if (
                    target is None
                    or owner.business_center_id is None
                    or target.business_center_id != owner.business_center_id
                ):
                    raise InvalidParameter(
                        f"advertiser {other} is not in the business center of advertiser "
                        f"{advertiser_id}; audiences are shared only inside one",
                        field="shared_advertiser_ids",
                    )
            now = self.clock()
            for audience_id in audience_ids:
                for other in with_ids:
                    if s.get(AudienceShare, (audience_id, other)) is not None:
                        continue
                    s.add(
                        AudienceShare(audience_id=audience_id, advertiser_id=other, shared_at=now)
                    )
                    s.add(
                        ShareLog(
                            audience_id=audience_id,
                            owner_id=advertiser_id,
                            advertiser_id=other,
                            action="SHARE",
                            at=now,
                        )
                    )
                    self.audiences.history(s, audience_id, "SHARE", f"with {other}")
        for audience_id in audience_ids:  # combined audiences of a recipient may use it again
            self.audiences.notify(audience_id)

    def cancel(self, *, advertiser_id: int, audience_id: int, with_id: int) -> None:
        with self.db.session() as s:
            self._owned(s, advertiser_id, audience_id, "custom_audience_id")
            share = s.get(AudienceShare, (audience_id, with_id))
            if share is None:
                raise InvalidParameter(
                    f"custom audience {audience_id} is not shared with advertiser {with_id}",
                    field="shared_advertiser_id",
                )
            s.delete(share)
            self.ad_groups.disconnect_everywhere(s, audience_id, with_id, "share_cancel")
            s.add(
                ShareLog(
                    audience_id=audience_id,
                    owner_id=advertiser_id,
                    advertiser_id=with_id,
                    action="CANCEL",
                    at=self.clock(),
                )
            )
            self.audiences.history(s, audience_id, "SHARE_CANCEL", f"with {with_id}")
        self.ad_groups.changed()
        # The recipient's combined audiences and lookalikes built on it stop using it.
        self.audiences.notify(audience_id)

    def log(self, *, advertiser_id: int, audience_id: int) -> list[ShareEntry]:
        """Per advertiser it was ever shared with, the current status (newest first)."""
        with self.db.session() as s:
            self._owned(s, advertiser_id, audience_id, "custom_audience_id")
            rows = s.execute(
                select(ShareLog, Advertiser.name)
                .join(Advertiser, Advertiser.id == ShareLog.advertiser_id)
                .where(ShareLog.audience_id == audience_id)
                .order_by(ShareLog.id)
            ).all()
        latest: dict[int, ShareEntry] = {}
        for log, name in rows:
            status = SHARED if log.action == "SHARE" else CANCELLED
            latest[log.advertiser_id] = ShareEntry(
                audience_id, log.advertiser_id, name, status, log.at
            )
        return sorted(latest.values(), key=lambda e: e.at, reverse=True)

    @staticmethod
    def _owned(s: Session, advertiser_id: int, audience_id: int, field: str) -> Audience:
        audience = s.get(Audience, audience_id)
        if audience is None or audience.deleted or audience.advertiser_id != advertiser_id:
            raise NotFound(
                f"custom audience {audience_id} does not exist or is not owned by advertiser "
                f"{advertiser_id}",
                field=field,
            )
        return audience
