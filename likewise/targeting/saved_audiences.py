"""Saved audiences (``dmp/saved_audience/create|list|delete/``): named targeting bundles.

Stored in TikTok's field names. What Likewise can check is checked (locations, OS, ages,
gender, and that audiences are the advertiser's or shared with it); the rest (interests,
carriers, device models, actions) is kept as sent, for clients that read it back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from likewise.domain.targeting import parse_targeting
from likewise.engine.audiences import Audiences
from likewise.errors import InvalidParameter, LimitExceeded, NotFound
from likewise.store.db import Database
from likewise.store.models import SavedAudience
from likewise.targeting.ad_groups import parse_ids

SAVED_AUDIENCE_ID_START = 1_900_000_000_000_000_000
MAX_PER_ADVERTISER = 100
NAME_MAX = 512
# Emoji and other pictographs (TikTok: "cannot contain emoji").
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")
KEPT_AS_SENT = (
    "languages",
    "interest_category_ids",
    "interest_keyword_ids",
    "carrier_ids",
    "device_model_ids",
    "device_price_ranges",
    "network_types",
    "min_android_version",
    "min_ios_version",
    "actions",
)


class SavedAudiences:
    def __init__(
        self, *, db: Database, audiences: Audiences, clock: Callable[[], datetime]
    ) -> None:
        self.db = db
        self.audiences = audiences
        self.clock = clock

    def create(self, *, advertiser_id: int, body: Mapping[str, Any]) -> int:
        name = body.get("saved_audience_name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameter(
                "saved_audience_name must not be empty", field="saved_audience_name"
            )
        if len(name) > NAME_MAX:
            raise InvalidParameter(
                f"saved_audience_name is {len(name)} characters; at most {NAME_MAX}",
                field="saved_audience_name",
            )
        if _EMOJI.search(name):
            raise InvalidParameter(
                "saved_audience_name cannot contain emoji", field="saved_audience_name"
            )
        if not body.get("location_ids"):
            raise InvalidParameter("location_ids is required", field="location_ids")
        targeting = parse_targeting(body)
        if len(targeting.operating_systems) > 1:
            raise InvalidParameter(
                "operating_systems takes only one value", field="operating_systems"
            )
        included = parse_ids(body.get("audience_ids"), "audience_ids")
        excluded = parse_ids(body.get("excluded_audience_ids"), "excluded_audience_ids")
        spec: dict[str, Any] = {
            **targeting.wire(),
            "audience_ids": [str(a) for a in included],
            "excluded_audience_ids": [str(a) for a in excluded],
        }
        for key in KEPT_AS_SENT:
            if body.get(key) is not None:
                spec[key] = body[key]
        with self.db.session() as s:
            for field, ids in (("audience_ids", included), ("excluded_audience_ids", excluded)):
                for audience_id in ids:
                    if self.audiences.find_visible(s, advertiser_id, audience_id) is None:
                        raise InvalidParameter(
                            f"{field}: custom audience {audience_id} does not exist",
                            field=field,
                        )
            count = s.execute(
                select(func.count())
                .select_from(SavedAudience)
                .where(
                    SavedAudience.advertiser_id == advertiser_id, SavedAudience.deleted.is_(False)
                )
            ).scalar_one()
            if count >= MAX_PER_ADVERTISER:
                raise LimitExceeded(
                    f"advertiser {advertiser_id} already has {count} saved audiences; at most "
                    f"{MAX_PER_ADVERTISER}",
                    field="advertiser_id",
                )
            row = SavedAudience(
                id=self.db.next_id(s, "saved_audience", SAVED_AUDIENCE_ID_START),
                advertiser_id=advertiser_id,
                name=name,
                spec=spec,
                created_at=self.clock(),
                deleted=False,
            )
            s.add(row)
            s.flush()
            return row.id

    def list(
        self, *, advertiser_id: int, ids: list[int] | None, page: int, page_size: int
    ) -> tuple[list[dict[str, Any]], int]:
        with self.db.session() as s:
            q = select(SavedAudience).where(
                SavedAudience.advertiser_id == advertiser_id, SavedAudience.deleted.is_(False)
            )
            if ids:
                q = q.where(SavedAudience.id.in_(ids))
            total = s.execute(select(func.count()).select_from(q.subquery())).scalar_one()
            rows = s.execute(
                q.order_by(SavedAudience.id.desc()).offset((page - 1) * page_size).limit(page_size)
            ).scalars()
            out = [
                {"saved_audience_id": str(r.id), "saved_audience_name": r.name, **r.spec}
                for r in rows
            ]
        return out, int(total)

    def delete(self, *, advertiser_id: int, ids: list[int]) -> None:
        """All or nothing."""
        with self.db.session() as s:
            rows = []
            for saved_id in ids:
                row = s.get(SavedAudience, saved_id)
                if row is None or row.deleted or row.advertiser_id != advertiser_id:
                    raise NotFound(
                        f"saved audience {saved_id} does not exist", field="saved_audience_ids"
                    )
                rows.append(row)
            for row in rows:
                row.deleted = True
