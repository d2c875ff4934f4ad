"""``/audience/insight/overlap/``, ``/dmp/saved_audience/*``, and Likewise's own reach
estimate (``/likewise/v1/reach/estimate/``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import Field

from likewise.api.deps import BodyDep, PrincipalDep, RuntimeDep, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.wire.audience import page_info
from likewise.api.wire.base import IdStr, WireModel, parse, query_dict
from likewise.errors import InvalidParameter

router = APIRouter(prefix="/open_api/v1.3", tags=["insights and saved audiences"])
likewise_router = APIRouter(prefix="/likewise/v1", tags=["reach"])


class OverlapRequest(WireModel):
    advertiser_id: IdStr
    benchmark_custom_audience_id: IdStr
    comparison_custom_audience_ids: Annotated[list[IdStr], Field(max_length=4)] = []  # noqa: RUF012


class Advertiser(WireModel):
    advertiser_id: IdStr


class SavedAudienceList(WireModel):
    advertiser_id: IdStr
    saved_audience_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)] | None = None
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    page_size: Annotated[int, Field(ge=1, le=100)] = 10


class SavedAudienceDelete(WireModel):
    advertiser_id: IdStr
    saved_audience_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)]


@tiktok_route(router, "/audience/insight/overlap/", "GET")
def overlap(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> EnvelopeResponse:
    req = parse(
        OverlapRequest,
        query_dict(request.query_params.multi_items(), {"comparison_custom_audience_ids"}),
    )
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    return ok(
        runtime.insights.overlap(
            advertiser_id=advertiser_id,
            benchmark_id=int(req.benchmark_custom_audience_id),
            comparison_ids=[int(i) for i in req.comparison_custom_audience_ids],
        )
    )


@tiktok_route(router, "/dmp/saved_audience/create/", "POST")
def saved_create(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(Advertiser, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    if not isinstance(body, dict):
        raise InvalidParameter("the request body must be a JSON object")
    saved_id = runtime.saved_audiences.create(advertiser_id=advertiser_id, body=body)
    return ok({"saved_audience_id": str(saved_id)})


@tiktok_route(router, "/dmp/saved_audience/list/", "GET")
def saved_list(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> EnvelopeResponse:
    req = parse(
        SavedAudienceList,
        query_dict(request.query_params.multi_items(), {"saved_audience_ids"}),
    )
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    rows, total = runtime.saved_audiences.list(
        advertiser_id=advertiser_id,
        ids=[int(i) for i in req.saved_audience_ids] if req.saved_audience_ids else None,
        page=req.page,
        page_size=req.page_size,
    )
    return ok({"saved_audiences": rows, "page_info": page_info(req.page, req.page_size, total)})


@tiktok_route(router, "/dmp/saved_audience/delete/", "POST")
def saved_delete(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(SavedAudienceDelete, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    runtime.saved_audiences.delete(
        advertiser_id=advertiser_id, ids=[int(i) for i in req.saved_audience_ids]
    )
    return ok({})


@tiktok_route(likewise_router, "/reach/estimate/", "POST")
def reach(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    """Users a targeting spec (or an ad group, ``adgroup_id``) reaches now."""
    req = parse(Advertiser, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    if not isinstance(body, dict):
        raise InvalidParameter("the request body must be a JSON object")
    return ok(runtime.insights.reach(advertiser_id=advertiser_id, body=body))
