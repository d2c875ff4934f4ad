"""``/dmp/custom_audience/share/``, ``share/cancel/`` and ``share/log/``: sharing audiences
inside a business center."""

from __future__ import annotations

from fastapi import APIRouter, Request

from likewise.api.deps import BodyDep, PrincipalDep, RuntimeDep, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.wire.audience import (
    ShareCancelRequest,
    ShareLogRequest,
    ShareRequest,
    tiktok_time,
)
from likewise.api.wire.base import parse, query_dict

router = APIRouter(prefix="/open_api/v1.3/dmp/custom_audience", tags=["share"])


@tiktok_route(router, "/share/", "POST")
def share(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(ShareRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    runtime.sharing.share(
        advertiser_id=advertiser_id,
        audience_ids=[int(i) for i in req.custom_audience_ids],
        with_ids=[int(i) for i in req.shared_advertiser_ids],
    )
    return ok({})


@tiktok_route(router, "/share/cancel/", "POST")
def cancel(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(ShareCancelRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    runtime.sharing.cancel(
        advertiser_id=advertiser_id,
        audience_id=int(req.custom_audience_id),
        with_id=int(req.shared_advertiser_id),
    )
    return ok({})


@tiktok_route(router, "/share/log/", "GET")
def log(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> EnvelopeResponse:
    req = parse(ShareLogRequest, query_dict(request.query_params.multi_items(), set()))
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    entries = runtime.sharing.log(
        advertiser_id=advertiser_id, audience_id=int(req.custom_audience_id)
    )
    return ok(
        {
            "list": [
                {
                    "custom_audience_id": str(e.audience_id),
                    "shared_advertiser_id": str(e.advertiser_id),
                    "shared_advertiser_name": e.advertiser_name,
                    "status": e.status,
                    "opt_time": tiktok_time(e.at),
                }
                for e in entries
            ]
        }
    )
