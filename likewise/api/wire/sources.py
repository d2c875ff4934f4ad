"""Wire models of the pixel and offline event set endpoints (names as in TikTok's OpenAPI files:
``pixel_{create,list,update}.yml``, ``offline_{create,get,update,delete}.yml``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from likewise.api.wire.audience import tiktok_time
from likewise.api.wire.base import IdStr, WireModel
from likewise.engine.sources import NAME_MAX, PixelCategory, activity_status
from likewise.errors import InvalidParameter
from likewise.store.models import EventSource


def _not_blank(value: str) -> str:
    if not value.strip():
        # A custom error: its message is used as is (a ValueError's gets "Value error, ").
        raise PydanticCustomError("blank", "must not be blank")
    return value


# TikTok's own limit on pixel names is 40 characters; Likewise takes what every name takes.
SourceName = Annotated[str, Field(min_length=1, max_length=NAME_MAX), AfterValidator(_not_blank)]
Description = Annotated[str, Field(max_length=1024)]


# --- requests ------------------------------------------------------------------------------------


class PixelCreateRequest(WireModel):
    advertiser_id: IdStr
    pixel_name: SourceName
    pixel_category: PixelCategory | None = None
    partner_name: Annotated[str, Field(max_length=256)] | None = None


class AdvancedMatchingFields(WireModel):
    email: bool = True
    phone_number: bool = True


class PixelUpdateRequest(WireModel):
    advertiser_id: IdStr
    pixel_id: IdStr
    pixel_name: SourceName
    advanced_matching_fields: AdvancedMatchingFields | None = None


class PixelListFiltering(WireModel):
    # Likewise has no catalogs, so no pixel is bound to one: every pixel is available.
    available_for_catalog_only: bool = False


class PixelListRequest(WireModel):
    advertiser_id: IdStr
    pixel_id: IdStr | None = None
    code: str | None = None
    name: str | None = None
    order_by: Literal["LATEST_CREATE", "EARLIEST_CREATE"] = "EARLIEST_CREATE"
    filtering: PixelListFiltering | None = None
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    page_size: Annotated[int, Field(ge=1, le=20)] = 10


class OfflineCreateRequest(WireModel):
    advertiser_id: IdStr
    name: SourceName
    description: Description
    auto_tracking: bool = False


class OfflineGetRequest(WireModel):
    # Optional in TikTok's file: without it, the event sets of every advertiser of the token.
    advertiser_id: IdStr | None = None
    event_set_ids: Annotated[list[IdStr], Field(max_length=100)] | None = None
    name: str | None = None


class OfflineUpdateRequest(WireModel):
    advertiser_id: IdStr
    event_set_id: IdStr
    name: SourceName | None = None
    auto_tracking: bool | None = None


class OfflineDeleteRequest(WireModel):
    advertiser_id: IdStr
    event_set_id: IdStr


def json_object_param(values: dict[str, Any], key: str) -> None:
    """Decode the query parameter ``key`` in place: an object sent as JSON text."""
    if key not in values:
        return
    try:
        parsed = json.loads(values[key])
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidParameter(
            f'{key} must be a JSON object, like {{"available_for_catalog_only": false}}',
            field=key,
        )
    values[key] = parsed


# --- responses -----------------------------------------------------------------------------------


def _matching(src: EventSource) -> dict[str, bool]:
    fields = src.settings.get("advanced_matching_fields") or {}
    return {
        "email": bool(fields.get("email", True)),
        "phone_number": bool(fields.get("phone_number", True)),
    }


def pixel_created(src: EventSource) -> dict[str, Any]:
    """``pixel/create`` data: the fields of the file's ``response_rule``."""
    return {
        "pixel_id": str(src.id),
        "pixel_code": src.code,
        "pixel_name": src.name,
        "pixel_category": src.settings.get("pixel_category"),
        "partner_name": src.settings.get("partner_name"),
        "advanced_matching_fields": _matching(src),
    }


def pixel_item(src: EventSource, now: datetime) -> dict[str, Any]:
    """One ``pixel/list`` item. Pixels made through the API are in DEVELOPER setup mode (TikTok
    says so since 2022); Likewise has no configured pixel events and no business-center asset
    transfers, so ``events`` is empty and the advertiser owns the pixel outright."""
    return {
        **pixel_created(src),
        "pixel_setup_mode": "DEVELOPER",
        "create_time": tiktok_time(src.created_at),
        "activity_status": activity_status(src.last_event_at, now),
        "asset_ownership": {
            "asset_relation_status": None,
            "ownership_status": True,
            "owner_bc_id": None,
        },
        "events": [],
    }


def event_set_item(src: EventSource) -> dict[str, Any]:
    """One offline event set, as ``offline/get`` lists it and ``offline/update`` returns it."""
    return {
        "event_set_id": str(src.id),
        "advertiser_id": str(src.advertiser_id),
        "name": src.name,
        "description": src.settings.get("description", ""),
        "auto_tracking": bool(src.settings.get("auto_tracking", False)),
        "create_time": tiktok_time(src.created_at),
        "update_time": tiktok_time(src.modified_at),
    }
