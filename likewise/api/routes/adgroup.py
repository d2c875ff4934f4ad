"""``/likewise/v1/adgroup/*``: Likewise's own ad groups (TikTok's ad group API is far larger).

Same ``Access-Token``, envelope and error codes as the TikTok endpoints. An ad group has a
status, targeting in TikTok's field names and included and excluded audiences; see
``domain.targeting``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field

from likewise.api.deps import BodyDep, PrincipalDep, RuntimeDep, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.wire.audience import page_info, tiktok_time
from likewise.api.wire.base import IdStr, WireModel, parse, query_dict
from likewise.errors import InvalidParameter
from likewise.targeting.ad_groups import AdGroupView

router = APIRouter(prefix="/likewise/v1/adgroup", tags=["ad groups"])


class AdGroupBody(WireModel):
    """The common field; the rest is read by ``domain.targeting``, whose errors name it."""

    advertiser_id: IdStr


class AdGroupUpdate(AdGroupBody):
    adgroup_id: IdStr


class AdGroupIds(AdGroupBody):
    adgroup_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)]


class AdGroupGet(AdGroupBody):
    adgroup_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)] | None = None
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    page_size: Annotated[int, Field(ge=1, le=100)] = 10


def ad_group_details(v: AdGroupView) -> dict[str, Any]:
    return {
        "adgroup_id": str(v.id),
        "advertiser_id": str(v.advertiser_id),
        "adgroup_name": v.name,
        "status": v.status.value,
        "reach_frequency": v.reach_frequency,
        **v.targeting.wire(),
        "audience_ids": [str(a) for a in v.included],
        "excluded_audience_ids": [str(a) for a in v.excluded],
        "create_time": tiktok_time(v.created_at),
        "modify_time": tiktok_time(v.modified_at),
    }


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidParameter("the request body must be a JSON object")
    return body


@tiktok_route(router, "/create/", "POST")
def create(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(AdGroupBody, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    ad_group_id = runtime.ad_groups.create(advertiser_id=advertiser_id, body=_object(body))
    return ok({"adgroup_id": str(ad_group_id)})


@tiktok_route(router, "/update/", "POST")
def update(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(AdGroupUpdate, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    runtime.ad_groups.update(
        advertiser_id=advertiser_id, ad_group_id=int(req.adgroup_id), body=_object(body)
    )
    return ok({})


@tiktok_route(router, "/delete/", "POST")
def delete(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(AdGroupIds, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    runtime.ad_groups.delete(advertiser_id=advertiser_id, ids=[int(i) for i in req.adgroup_ids])
    return ok({})


@tiktok_route(router, "/get/", "GET")
def get(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> EnvelopeResponse:
    req = parse(AdGroupGet, query_dict(request.query_params.multi_items(), {"adgroup_ids"}))
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    if req.adgroup_ids:
        views = runtime.ad_groups.get(
            advertiser_id=advertiser_id, ids=[int(i) for i in req.adgroup_ids]
        )
        total = len(views)
    else:
        views, total = runtime.ad_groups.list(
            advertiser_id=advertiser_id, page=req.page, page_size=req.page_size
        )
    return ok(
        {
            "list": [ad_group_details(v) for v in views],
            "page_info": page_info(req.page, req.page_size, total),
        }
    )
