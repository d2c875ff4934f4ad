"""``/dmp/custom_audience/apply/`` and ``apply/log/``: audiences on ad groups."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request

from likewise.api.deps import BodyDep, PrincipalDep, RuntimeDep, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.wire.audience import ApplyLogRequest, ApplyRequest, page_info
from likewise.api.wire.base import parse, query_dict
from likewise.errors import InvalidParameter

router = APIRouter(prefix="/open_api/v1.3/dmp/custom_audience", tags=["apply"])
_TIKTOK_CASE = {
    "INCLUDE": "Include",
    "EXCLUDE": "Exclude",
    "APPLY": "Apply",
    "DISCONNECT": "Disconnect",
}


@tiktok_route(router, "/apply/", "POST")
def apply(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(ApplyRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    runtime.ad_groups.apply(
        advertiser_id=advertiser_id,
        audience_id=int(req.custom_audience_id),
        ad_group_ids=[int(i) for i in req.adgroup_ids],
        action_mode=req.action_mode,
        usage_mode=req.usage_mode,
    )
    return ok({})


@tiktok_route(router, "/apply/log/", "GET")
def apply_log(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> EnvelopeResponse:
    req = parse(
        ApplyLogRequest,
        query_dict(request.query_params.multi_items(), {"custom_audience_ids"}),
    )
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    try:
        zone = ZoneInfo(req.timezone) if req.timezone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameter(
            f"timezone {req.timezone!r} is not a time zone name (e.g. Etc/GMT, America/New_York)",
            field="timezone",
        ) from None
    entries, total = runtime.ad_groups.apply_log(
        advertiser_id=advertiser_id,
        audience_ids=[int(i) for i in req.custom_audience_ids],
        page=req.page,
        page_size=req.page_size,
    )
    return ok(
        {
            "advertiser_id": str(advertiser_id),
            "list": [
                {
                    "action_timestamp": e.at.replace(tzinfo=UTC)
                    .astimezone(zone)
                    .strftime("%Y-%m-%d %H:%M:%S"),
                    "adgroup_id": str(e.ad_group_id),
                    "adgroup_name": e.ad_group_name,
                    "audience_id": str(e.audience_id),
                    "editor": e.editor,
                    "usage_mode": _TIKTOK_CASE[e.usage_mode],
                    "action_mode": _TIKTOK_CASE[e.action],
                }
                for e in entries
            ],
            "page_info": page_info(req.page, req.page_size, total),
        }
    )
