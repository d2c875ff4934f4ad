"""Audiences: kinds, lifecycle and the rules for validity and expiry.

Time is always an argument (``now``), never read here, so the rules are testable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

EXPIRY_WITHOUT_RETENTION = timedelta(days=365)  # 12 months without use or change
EXPIRING_WINDOW = timedelta(days=60)
NAME_MAX = 128


class Source(enum.StrEnum):
    CUSTOMER_FILE = "CUSTOMER_FILE"
    SEGMENT = "SEGMENT"
    RULE = "RULE"  # website, app, lead, engagement, business account, shop, offline
    COMBINED = "COMBINED"  # Likewise's own: any or all of other audiences, minus others
    LOOKALIKE = "LOOKALIKE"

    @property
    def display(self) -> str:
        """The type string TikTok shows in list/get."""
        return {
            "CUSTOMER_FILE": "Customer File Audience",
            "SEGMENT": "Partner",
            "RULE": "Rule Audience",  # the view names the kind (RULE_DISPLAY) when it knows it
            "COMBINED": "Combined Audience",
            "LOOKALIKE": "Lookalike Audience",
        }[self.value]


class Status(enum.StrEnum):
    CALCULATING = "CALCULATING"
    READY = "READY"
    FAILED = "FAILED"


class UpdateAction(enum.StrEnum):
    APPEND = "APPEND"
    REMOVE = "REMOVE"
    REPLACE = "REPLACE"


class SubType(enum.StrEnum):
    NORMAL = "NORMAL"
    REACH_FREQUENCY = "REACH_FREQUENCY"


@dataclass(frozen=True)
class Lifecycle:
    """The dates that decide expiry."""

    created_at: datetime
    modified_at: datetime
    last_used_at: datetime
    retention_in_days: int | None

    def expires_at(self) -> datetime:
        """Fixed ``retention_in_days`` after creation; otherwise 12 months after the last change
        or use, whichever is later (TikTok's expiration policy)."""
        if self.retention_in_days is not None:
            return self.created_at + timedelta(days=self.retention_in_days)
        return max(self.modified_at, self.last_used_at) + EXPIRY_WITHOUT_RETENTION

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at()

    def is_expiring(self, now: datetime) -> bool:
        return not self.is_expired(now) and now >= self.expires_at() - EXPIRING_WINDOW


@dataclass(frozen=True)
class AudienceView:
    """Everything list/get report about one audience, computed at ``now``."""

    id: int
    advertiser_id: int
    owner_id: int
    name: str
    source: Source
    calculate_type: str | None
    sub_type: str
    status: Status
    cover_num: int
    is_valid: bool
    is_expiring: bool
    is_expired: bool
    is_shared: bool
    is_creator: bool
    msg: str
    error_msg: str
    created_at: datetime
    expires_at: datetime
    retention_in_days: int | None
    audience_enhancement: bool
    history: list[HistoryEntry] = field(default_factory=list)
    rule_type: str | None = None  # a rule audience's audience_type (PIXEL, APP, ...)
    auto_refresh: bool = False
    rule: str | None = None  # the definition of a rule or combined audience, as JSON text
    lookalike_spec: dict[str, Any] | None = None  # TikTok's field names
    lookalike_quality: dict[str, Any] | None = None  # the last build's quality report

    @property
    def display(self) -> str:
        """The type list/get show: the kind of rule audience when it is one."""
        if self.rule_type is not None:
            return RULE_DISPLAY.get(self.rule_type, self.source.display)
        return self.source.display


@dataclass(frozen=True)
class HistoryEntry:
    action: str
    action_detail: str
    editor: str
    msg: str
    opt_time: datetime


def validity(
    *,
    status: Status,
    reachable: int,
    min_size: int,
    expired: bool,
    error_msg: str,
) -> tuple[bool, int, str]:
    """``(is_valid, cover_num, msg)`` for an audience.

    Sizes below ``min_size`` are never reported exactly (``cover_num`` 0) and the audience is not
    usable; the message says why.
    """
    if expired:
        return False, 0, "The audience has expired; it can only be deleted."
    if status is Status.CALCULATING:
        return False, 0, "The audience is being calculated."
    if status is Status.FAILED:
        return False, 0, error_msg or "The audience could not be calculated."
    if reachable < min_size:
        return (
            False,
            0,
            f"Fewer than {min_size} matched users can be reached; the audience cannot be used "
            "in ad groups until it grows.",
        )
    return True, reachable, ""


def check_name(name: str) -> str | None:
    """The problem with an audience name, or None."""
    if not name or not name.strip():
        return "custom_audience_name must not be empty"
    if len(name) > NAME_MAX:
        return f"custom_audience_name is {len(name)} characters; at most {NAME_MAX} allowed"
    return None


# What list/get call each kind of rule audience.
RULE_DISPLAY: dict[str, str] = {
    "PIXEL": "Website Traffic",
    "APP": "App Activity",
    "ENGAGEMENT": "Engagement",
    "ENGAGEMENT_ORGANIC_VIDEO": "Engagement",
    "ENGAGEMENT_LIVE_VIDEO": "Engagement",
    "LEAD_GENERATION": "Lead Generation",
    "BUSINESS_ACCOUNT": "Business Account",
    "TIKTOK_SHOP": "Shop Activity",
    "OFFLINE": "Offline Activity",
}
