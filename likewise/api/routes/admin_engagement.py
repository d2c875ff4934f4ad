"""Platform engagement intake (admin API): the operator's ad server and apps report ad
impressions and clicks, video plays, likes, follows, LIVE views, lead forms and shop events.
Same ``X-Admin-Token`` check as the rest of ``/admin/v1``; see ``ingest.engagement``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from likewise.api.deps import RuntimeDep, read_body
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes.admin import require_admin
from likewise.ingest import engagement

router = APIRouter(
    prefix="/admin/v1", tags=["admin: engagement"], dependencies=[Depends(require_admin)]
)


@router.post("/engagement/track")
async def engagement_track(request: Request, runtime: RuntimeDep) -> EnvelopeResponse:
    """``{data: [1–1,000 events]}``; answers ``{accepted}`` once the events are durable."""
    body = engagement.decode(await read_body(request, runtime.settings.max_event_body_bytes))
    records = engagement.records(body, runtime.events.window())
    named = sorted({r.advertiser_id for r in records} - {engagement.ORGANIC})
    if named:  # one query per request, off the event loop
        found = await run_in_threadpool(runtime.tenants.advertisers, named)
        engagement.check_advertisers(records, {a.id for a in found})
    await runtime.events.accept(records)
    return ok({"accepted": len(records)})
