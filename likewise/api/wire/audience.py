"""Wire models of the DMP custom audience endpoints (names as in TikTok's OpenAPI files)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from likewise.api.wire.base import IdStr, WireModel
from likewise.domain.audience import AudienceView, HistoryEntry

CalculateType = Literal[
    "EMAIL_SHA256",
    "FIRST_MD5",
    "FIRST_SHA256",
    "GAID_MD5",
    "GAID_SHA256",
    "IDFA_MD5",
    "IDFA_SHA256",
    "MULTIPLE_TYPES",
    "PHONE_SHA256",
]
# The upload endpoint also takes the MAID_* aliases of FIRST_*.
UploadCalculateType = Literal[CalculateType, "MAID_SHA256", "MAID_MD5"]
# TikTok gives each alias the same internal code as FIRST_*, and create/update only name FIRST_*:
# an upload is stored under the canonical name so its file_path works with create and update.
CALCULATE_TYPE_ALIASES = {"MAID_SHA256": "FIRST_SHA256", "MAID_MD5": "FIRST_MD5"}
SubType = Literal["NORMAL", "REACH_FREQUENCY"]
Action = Literal["APPEND", "REMOVE", "REPLACE"]
FilePath = Annotated[str, Field(min_length=16, max_length=16)]
Name = Annotated[str, Field(min_length=1, max_length=128)]


class CustomAudienceFileUploadRequest(WireModel):
    advertiser_id: IdStr
    calculate_type: UploadCalculateType
    file_signature: Annotated[str, Field(min_length=1)]
    name: str | None = None


class CustomAudienceCreateRequest(WireModel):
    advertiser_id: IdStr
    custom_audience_name: Name
    calculate_type: CalculateType
    file_paths: Annotated[list[FilePath], Field(min_length=1, max_length=500)]
    audience_sub_type: SubType = "NORMAL"
    retention_in_days: Annotated[int, Field(ge=1, le=365)] | None = None
    audience_enhancement: bool = False


class CustomAudienceRuleCreateRequest(WireModel):
    """The common fields; ``audience_type``, ``rule_spec``, ``is_auto_refresh`` and
    ``retention_in_days`` are read by the rule parser (``domain.rule_spec``), whose errors name
    the exact field. ``identity_*`` and ``audience_enhancement`` are accepted and ignored."""

    advertiser_id: IdStr
    custom_audience_name: Name


class CustomAudienceUpdateRequest(WireModel):
    advertiser_id: IdStr
    custom_audience_id: IdStr
    custom_audience_name: Name | None = None
    file_paths: Annotated[list[FilePath], Field(min_length=1, max_length=500)] | None = None
    action: Action | None = None
    audience_sub_type: SubType | None = None


class CustomAudienceDeleteRequest(WireModel):
    advertiser_id: IdStr
    custom_audience_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)]


class CustomAudienceListRequest(WireModel):
    advertiser_id: IdStr
    custom_audience_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)] | None = None
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    page_size: Annotated[int, Field(ge=1, le=100)] = 10


class CustomAudienceGetRequest(WireModel):
    advertiser_id: IdStr
    custom_audience_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)]
    history_size: Annotated[int, Field(ge=0, le=1000)] | None = None


def tiktok_time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def audience_details(v: AudienceView) -> dict[str, Any]:
    """One audience as list/get report it; the type appears as both ``type`` and
    ``audience_type`` because TikTok's own documents disagree on the name."""
    return {
        "audience_id": str(v.id),
        "custom_audience_id": str(v.id),
        "name": v.name,
        "type": v.display,
        "audience_type": v.display,
        "audience_sub_type": v.sub_type,
        "calculate_type": v.calculate_type,
        "cover_num": v.cover_num,
        "is_valid": v.is_valid,
        "is_expiring": v.is_expiring,
        "is_expired": v.is_expired,
        "is_auto_refresh": v.auto_refresh,
        "shared": v.is_shared,
        "is_creator": v.is_creator,
        "owner_id": str(v.owner_id),
        "advertiser_id": str(v.owner_id),
        "status": v.status.value,
        "msg": v.msg,
        "error_msg": v.error_msg,
        "create_time": tiktok_time(v.created_at),
        "expired_time": tiktok_time(v.expires_at),
        "retention_in_days": v.retention_in_days,
        "audience_enhancement": v.audience_enhancement,
        "enhancement_status": None,
        "rule": v.rule,
        "lookalike_spec": v.lookalike_spec,
        # Likewise's own: how good the lookalike is, measured on a held-out part of its seed.
        "lookalike_quality": v.lookalike_quality,
    }


def history_item(h: HistoryEntry) -> dict[str, Any]:
    return {
        "action": h.action,
        "action_detail": h.action_detail,
        "editor": h.editor,
        "msg": h.msg,
        "opt_time": tiktok_time(h.opt_time),
    }


def page_info(page: int, page_size: int, total: int) -> dict[str, int]:
    return {
        "page": page,
        "page_size": page_size,
        "total_number": total,
        "total_page": (total + page_size - 1) // page_size,
    }


class LookalikeCreateRequest(WireModel):
    """``lookalike_spec`` is read by ``domain.lookalike``, whose errors name the exact field."""

    advertiser_id: IdStr
    custom_audience_name: Name
    lookalike_spec: dict[str, Any]
    audience_sub_type: SubType = "NORMAL"


class LookalikeIdsRequest(WireModel):
    """``lookalike/update/`` (refresh) and ``lookalike/delete/``."""

    advertiser_id: IdStr
    custom_audience_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)]


class ApplyRequest(WireModel):
    advertiser_id: IdStr
    custom_audience_id: IdStr
    adgroup_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)]
    action_mode: Literal["Apply", "Disconnect", "APPLY", "DISCONNECT"]
    usage_mode: Literal["Include", "Exclude", "INCLUDE", "EXCLUDE"] | None = None


class ApplyLogRequest(WireModel):
    advertiser_id: IdStr
    custom_audience_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)]
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    page_size: Annotated[int, Field(ge=1, le=100)] = 10
    timezone: str | None = None


class ShareRequest(WireModel):
    advertiser_id: IdStr
    custom_audience_ids: Annotated[list[IdStr], Field(min_length=1, max_length=10)]
    shared_advertiser_ids: Annotated[list[IdStr], Field(min_length=1, max_length=10)]


class ShareCancelRequest(WireModel):
    advertiser_id: IdStr
    custom_audience_id: IdStr
    shared_advertiser_id: IdStr


class ShareLogRequest(WireModel):
    advertiser_id: IdStr
    custom_audience_id: IdStr
