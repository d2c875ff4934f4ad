"""``/dmp/custom_audience/*``: customer-file and rule audiences."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from likewise.api.deps import BodyDep, PrincipalDep, RuntimeDep, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.upload import receive_upload
from likewise.api.wire.audience import (
    CALCULATE_TYPE_ALIASES,
    CustomAudienceCreateRequest,
    CustomAudienceDeleteRequest,
    CustomAudienceFileUploadRequest,
    CustomAudienceGetRequest,
    CustomAudienceListRequest,
    CustomAudienceRuleCreateRequest,
    CustomAudienceUpdateRequest,
    audience_details,
    history_item,
    page_info,
)
from likewise.api.wire.base import parse, query_dict
from likewise.errors import InvalidParameter

router = APIRouter(prefix="/open_api/v1.3/dmp/custom_audience", tags=["custom audience"])


@tiktok_route(router, "/file/upload/", "POST")
async def file_upload(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> EnvelopeResponse:
    settings = runtime.settings
    fields, received = await receive_upload(
        request, settings.data_dir / "tmp", settings.max_upload_bytes
    )
    try:
        if "caculate_type" in fields and "calculate_type" not in fields:
            fields["calculate_type"] = fields["caculate_type"]  # a community SDK's spelling
        req = parse(CustomAudienceFileUploadRequest, fields)
        advertiser_id = require_advertiser(principal, req.advertiser_id)
        if received is None:
            raise InvalidParameter("file is required", field="file")
        advertiser = runtime.tenants.advertiser(advertiser_id)
        upload = await run_in_threadpool(
            runtime.uploads.accept,
            advertiser_id=advertiser_id,
            received=received,
            file_signature=req.file_signature,
            calculate_type=CALCULATE_TYPE_ALIASES.get(req.calculate_type, req.calculate_type),
            region=advertiser.country,
            now=runtime.clock(),
            name=req.name or fields.get("file_name", ""),
        )
    finally:
        if received is not None:
            received.path.unlink(missing_ok=True)
    return ok({"file_path": upload.file_path})


@tiktok_route(router, "/create/", "POST")
def create(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(CustomAudienceCreateRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    audience_id = runtime.audiences.create_from_files(
        advertiser_id=advertiser_id,
        name=req.custom_audience_name,
        calculate_type=req.calculate_type,
        file_paths=list(req.file_paths),
        sub_type=req.audience_sub_type,
        retention_in_days=req.retention_in_days,
        enhancement=req.audience_enhancement,
    )
    return ok({"custom_audience_id": str(audience_id)})


@tiktok_route(router, "/rule/create/", "POST")
def rule_create(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    """A rule audience (website, app, lead, engagement, business account, shop, offline)."""
    req = parse(CustomAudienceRuleCreateRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    if not isinstance(body, dict):
        raise InvalidParameter("the request body must be a JSON object")
    audience_id = runtime.rules.create(
        advertiser_id=advertiser_id, name=req.custom_audience_name, body=body
    )
    return ok({"custom_audience_id": str(audience_id)})


@tiktok_route(router, "/update/", "POST")
def update(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(CustomAudienceUpdateRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    # ``action`` only applies with file_paths (spec); the official SDK always sends REPLACE.
    runtime.audiences.update(
        advertiser_id=advertiser_id,
        audience_id=int(req.custom_audience_id),
        name=req.custom_audience_name,
        file_paths=list(req.file_paths) if req.file_paths is not None else None,
        action=req.action,
        sub_type=req.audience_sub_type,
    )
    return ok({})


@tiktok_route(router, "/delete/", "POST")
def delete(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(CustomAudienceDeleteRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    runtime.audiences.delete(
        advertiser_id=advertiser_id, ids=[int(i) for i in req.custom_audience_ids]
    )
    return ok({})


@tiktok_route(router, "/list/", "GET")
def list_audiences(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> EnvelopeResponse:
    req = parse(
        CustomAudienceListRequest,
        query_dict(request.query_params.multi_items(), {"custom_audience_ids"}),
    )
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    views, total = runtime.audiences.list(
        advertiser_id=advertiser_id,
        ids=[int(i) for i in req.custom_audience_ids] if req.custom_audience_ids else None,
        page=req.page,
        page_size=req.page_size,
    )
    return ok(
        {
            "list": [audience_details(v) for v in views],
            "page_info": page_info(req.page, req.page_size, total),
        }
    )


@tiktok_route(router, "/get/", "GET")
def get(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> EnvelopeResponse:
    req = parse(
        CustomAudienceGetRequest,
        query_dict(request.query_params.multi_items(), {"custom_audience_ids"}),
    )
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    views = runtime.audiences.get(
        advertiser_id=advertiser_id,
        ids=[int(i) for i in req.custom_audience_ids],
        history_size=req.history_size,
    )
    return ok(
        {
            "list": [
                {
                    "audience_details": audience_details(v),
                    "audience_history": [history_item(h) for h in v.history],
                }
                for v in views
            ]
        }
    )
