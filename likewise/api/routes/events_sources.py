"""``/pixel/{create,list,update}/`` and ``/offline/{create,get,update,delete}/``: the event
sources an advertiser manages through TikTok's API. (``/pixel/event/stats/`` reads the event
store and lives with the Events API.)"""

from __future__ import annotations

from fastapi import APIRouter, Request

from likewise.api.deps import BodyDep, PrincipalDep, RuntimeDep, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.wire.audience import page_info
from likewise.api.wire.base import parse, query_dict
from likewise.api.wire.sources import (
    OfflineCreateRequest,
    OfflineDeleteRequest,
    OfflineGetRequest,
    OfflineUpdateRequest,
    PixelCreateRequest,
    PixelListRequest,
    PixelUpdateRequest,
    event_set_item,
    json_object_param,
    pixel_created,
    pixel_item,
)
from likewise.engine.sources import SourceKind

router = APIRouter(prefix="/open_api/v1.3", tags=["event sources"])

PIXEL = {SourceKind.PIXEL}
OFFLINE = {SourceKind.OFFLINE}


# --- pixels --------------------------------------------------------------------------------------


@tiktok_route(router, "/pixel/create/", "POST")
def pixel_create(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(PixelCreateRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    src = runtime.sources.create(
        advertiser_id=advertiser_id,
        kind=SourceKind.PIXEL,
        name=req.pixel_name,
        settings={"pixel_category": req.pixel_category, "partner_name": req.partner_name},
    )
    return ok(pixel_created(src))


@tiktok_route(router, "/pixel/list/", "GET")
def pixel_list(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> EnvelopeResponse:
    values = query_dict(request.query_params.multi_items(), set())
    json_object_param(values, "filtering")
    req = parse(PixelListRequest, values)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    # A filter naming another advertiser's pixel finds nothing, as one naming no pixel does.
    rows, total = runtime.sources.list(
        advertiser_ids={advertiser_id},
        kinds=PIXEL,
        ids=[int(req.pixel_id)] if req.pixel_id is not None else None,
        code=req.code or None,
        name_contains=req.name or None,
        newest_first=req.order_by == "LATEST_CREATE",
        page=req.page,
        page_size=req.page_size,
    )
    now = runtime.clock()
    return ok(
        {
            "pixels": [pixel_item(r, now) for r in rows],
            "page_info": page_info(req.page, req.page_size, total),
        }
    )


@tiktok_route(router, "/pixel/update/", "POST")
def pixel_update(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(PixelUpdateRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    matching = req.advanced_matching_fields
    runtime.sources.update(
        advertiser_id=advertiser_id,
        source_id=int(req.pixel_id),
        kinds=PIXEL,
        name=req.pixel_name,
        settings={"advanced_matching_fields": matching.model_dump()} if matching else None,
        field="pixel_id",
        name_field="pixel_name",
    )
    return ok({})  # the file's response_rule is null: TikTok answers with empty data


# --- offline event sets --------------------------------------------------------------------------


@tiktok_route(router, "/offline/create/", "POST")
def offline_create(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(OfflineCreateRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    src = runtime.sources.create(
        advertiser_id=advertiser_id,
        kind=SourceKind.OFFLINE,
        name=req.name,
        settings={"description": req.description, "auto_tracking": req.auto_tracking},
    )
    return ok({"event_set_id": str(src.id)})


@tiktok_route(router, "/offline/get/", "GET")
def offline_get(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> EnvelopeResponse:
    req = parse(
        OfflineGetRequest, query_dict(request.query_params.multi_items(), {"event_set_ids"})
    )
    if req.advertiser_id is not None:
        advertiser_ids = {require_advertiser(principal, req.advertiser_id)}
    else:
        advertiser_ids = set(principal.advertiser_ids)
    if req.event_set_ids:
        # Named sets: all or nothing, and another advertiser's set is one that does not exist.
        rows = runtime.sources.get_many(
            advertiser_ids=advertiser_ids,
            ids=[int(i) for i in req.event_set_ids],
            kinds=OFFLINE,
            field="event_set_ids",
        )
        if req.name:
            rows = [r for r in rows if req.name.lower() in r.name.lower()]
    else:
        rows, _ = runtime.sources.list(
            advertiser_ids=advertiser_ids, kinds=OFFLINE, name_contains=req.name or None
        )
    return ok({"event_set_list": [event_set_item(r) for r in rows]})


@tiktok_route(router, "/offline/update/", "POST")
def offline_update(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(OfflineUpdateRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    src = runtime.sources.update(
        advertiser_id=advertiser_id,
        source_id=int(req.event_set_id),
        kinds=OFFLINE,
        name=req.name,
        settings={"auto_tracking": req.auto_tracking} if req.auto_tracking is not None else None,
        field="event_set_id",
    )
    return ok(event_set_item(src))


@tiktok_route(router, "/offline/delete/", "POST")
def offline_delete(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(OfflineDeleteRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    runtime.sources.delete(
        advertiser_id=advertiser_id,
        source_id=int(req.event_set_id),
        kinds=OFFLINE,
        field="event_set_id",
    )
    return ok({})
