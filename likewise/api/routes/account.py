"""``/advertiser/info/``, ``/user/info/`` and ``/oauth2/advertiser/get/``: what integrations call
to check a token and list the accounts it reaches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import Field

from likewise.api.deps import PrincipalDep, RuntimeDep, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.wire.base import IdStr, WireModel, parse, query_dict

router = APIRouter(prefix="/open_api/v1.3", tags=["account"])


class AdvertiserInfoRequest(WireModel):
    advertiser_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)]
    fields: list[str] | None = None


@tiktok_route(router, "/advertiser/info/", "GET")
def advertiser_info(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> EnvelopeResponse:
    req = parse(
        AdvertiserInfoRequest,
        query_dict(request.query_params.multi_items(), {"advertiser_ids", "fields"}),
    )
    ids = [require_advertiser(principal, a) for a in req.advertiser_ids]
    rows = []
    for adv in runtime.tenants.advertisers(ids):
        info = {
            "advertiser_id": str(adv.id),
            "name": adv.name,
            "status": "STATUS_ENABLE",
            "role": "ROLE_ADVERTISER",
            "country": adv.country,
            "currency": adv.currency,
            "timezone": adv.timezone,
            "display_timezone": adv.timezone,
            "company": adv.name,
            "owner_bc_id": adv.business_center_id,
            "create_time": int(adv.created_at.timestamp()),
        }
        if req.fields:
            info = {k: v for k, v in info.items() if k in req.fields or k == "advertiser_id"}
        rows.append(info)
    return ok({"list": rows})


@tiktok_route(router, "/user/info/", "GET")
def user_info(principal: PrincipalDep) -> EnvelopeResponse:
    return ok(
        {
            "core_user_id": str(principal.core_user_id),
            "display_name": principal.display_name,
            "email": "",
            "avatar_url": "",
            "create_time": int(principal.created_at.timestamp()),
        }
    )


@tiktok_route(router, "/oauth2/advertiser/get/", "GET")
def oauth2_advertisers(runtime: RuntimeDep, principal: PrincipalDep) -> EnvelopeResponse:
    rows = runtime.tenants.advertisers(sorted(principal.advertiser_ids))
    return ok({"list": [{"advertiser_id": str(a.id), "advertiser_name": a.name} for a in rows]})
