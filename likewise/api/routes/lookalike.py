"""``/dmp/custom_audience/lookalike/*``: create, refresh and delete lookalike audiences."""

from __future__ import annotations

from fastapi import APIRouter

from likewise.api.deps import BodyDep, PrincipalDep, RuntimeDep, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.wire.audience import LookalikeCreateRequest, LookalikeIdsRequest
from likewise.api.wire.base import parse
from likewise.errors import InvalidParameter

router = APIRouter(prefix="/open_api/v1.3/dmp/custom_audience/lookalike", tags=["lookalike"])


@tiktok_route(router, "/create/", "POST")
def create(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(LookalikeCreateRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    if req.audience_sub_type != "NORMAL":
        raise InvalidParameter(
            "lookalike audiences cannot be used in Reach & Frequency ad groups: "
            "audience_sub_type must be NORMAL",
            field="audience_sub_type",
        )
    audience_id = runtime.lookalikes.create(
        advertiser_id=advertiser_id, name=req.custom_audience_name, spec_body=req.lookalike_spec
    )
    return ok({"custom_audience_id": str(audience_id)})


@tiktok_route(router, "/update/", "POST")
def update(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    """A manual refresh: the lookalike is built again from its seed's members now."""
    req = parse(LookalikeIdsRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    runtime.lookalikes.refresh(
        advertiser_id=advertiser_id, ids=[int(i) for i in req.custom_audience_ids]
    )
    return ok({})


@tiktok_route(router, "/delete/", "POST")
def delete(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(LookalikeIdsRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    runtime.lookalikes.delete(
        advertiser_id=advertiser_id, ids=[int(i) for i in req.custom_audience_ids]
    )
    return ok({})
