"""The platform admin API (Likewise's own, versioned): users, consent, erasure, advertisers.

Authenticated by the ``X-Admin-Token`` header against ``LIKEWISE_ADMIN_TOKEN``; disabled when
that setting is empty.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from likewise.api.deps import BodyDep, RuntimeDep
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.upload import receive_upload
from likewise.api.wire.base import WireModel, parse
from likewise.errors import AuthInvalid, AuthMissing, InvalidParameter, PermissionDenied
from likewise.ingest.users import import_users
from likewise.runtime import Runtime


async def require_admin(request: Request, runtime: RuntimeDep) -> None:
    # async: a plain function would cost a thread hop on every admin request (serving's p99)
    expected = runtime.settings.admin_token
    if not expected:
        raise PermissionDenied("the admin API is disabled: set LIKEWISE_ADMIN_TOKEN")
    sent = request.headers.get("X-Admin-Token")
    if not sent:
        raise AuthMissing("X-Admin-Token header is missing")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise AuthInvalid("X-Admin-Token is invalid")


router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(require_admin)])


class AdvertiserCreate(WireModel):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    business_center_id: str | None = None
    country: Annotated[str, Field(min_length=2, max_length=2)] = "US"
    currency: str = "USD"
    timezone: str = "Etc/GMT"


class TokenCreate(WireModel):
    advertiser_ids: Annotated[list[int], Field(min_length=1, max_length=1000)]
    display_name: str = ""


class UserIds(WireModel):
    user_ids: Annotated[list[str], Field(min_length=1, max_length=100_000)]


class ConsentChange(UserIds):
    personalized_ads: bool


def create_advertiser(runtime: Runtime, req: AdvertiserCreate) -> dict[str, Any]:
    adv = runtime.tenants.create_advertiser(
        name=req.name,
        now=runtime.clock(),
        business_center_id=req.business_center_id,
        country=req.country,
        currency=req.currency,
        timezone=req.timezone,
    )
    token = runtime.tenants.create_token(
        advertiser_ids=[adv.id], now=runtime.clock(), display_name=req.name
    )
    return {"advertiser_id": str(adv.id), "access_token": token}


@router.post("/advertisers")
def advertisers_create(body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    return ok(create_advertiser(runtime, parse(AdvertiserCreate, body)))


@router.get("/advertisers")
def advertisers_list(runtime: RuntimeDep) -> EnvelopeResponse:
    return ok(
        {
            "list": [
                {
                    "advertiser_id": str(a.id),
                    "name": a.name,
                    "business_center_id": a.business_center_id,
                    "country": a.country,
                }
                for a in runtime.tenants.all_advertisers()
            ]
        }
    )


@router.post("/tokens")
def tokens_create(body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(TokenCreate, body)
    token = runtime.tenants.create_token(
        advertiser_ids=req.advertiser_ids, now=runtime.clock(), display_name=req.display_name
    )
    return ok({"access_token": token})


@router.post("/users/import")
async def users_import(request: Request, runtime: RuntimeDep) -> EnvelopeResponse:
    """Multipart upload with a ``file`` part (``.csv`` or ``.parquet``)."""
    settings = runtime.settings
    _fields, received = await receive_upload(
        request, settings.data_dir / "tmp", settings.max_upload_bytes
    )
    if received is None:
        raise InvalidParameter("file is required", field="file")
    suffix = "." + received.filename.rsplit(".", 1)[-1].lower() if "." in received.filename else ""
    if suffix not in (".csv", ".parquet", ".txt"):
        received.path.unlink(missing_ok=True)
        raise InvalidParameter("the file name must end in .csv or .parquet", field="file")
    path = received.path.rename(received.path.with_suffix(suffix))
    try:
        summary = await run_in_threadpool(import_users, runtime.graph, path)
    finally:
        path.unlink(missing_ok=True)
    return ok(summary)


@router.post("/users/consent")
def users_consent(body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(ConsentChange, body)
    changed, missing = runtime.graph.set_consent(list(req.user_ids), req.personalized_ads)
    return ok({"updated": changed, "not_found": missing})


@router.post("/users/erase")
def users_erase(body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    req = parse(UserIds, body)
    erased, missing = runtime.erase_users(list(req.user_ids))
    return ok({"erased": erased, "not_found": missing})


@router.get("/stats")
def stats(runtime: RuntimeDep) -> EnvelopeResponse:
    return ok(runtime.graph.counts())
