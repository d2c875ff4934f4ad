"""Platform engagement intake (admin API): the operator's ad server and apps report ad
impressions and clicks, video plays, likes, follows, LIVE views, lead forms and shop events.
Same ``X-Admin-Token`` check as the rest of ``/admin/v1``; see ``ingest.engagement``."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from likewise.api.deps import RuntimeDep, read_body
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes.admin import require_admin
from likewise.errors import InvalidParameter
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


@router.get("/engagement/stats")
def engagement_stats(runtime: RuntimeDep, start_date: str, end_date: str) -> EnvelopeResponse:
    """Per day and event, platform-wide: events received, duplicates dropped, events stored
    but not usable for audiences (limited). ``start_date``/``end_date``: YYYY-MM-DD, inclusive."""
    try:
        start, end = date.fromisoformat(start_date), date.fromisoformat(end_date)
    except ValueError:
        raise InvalidParameter("start_date and end_date must be YYYY-MM-DD") from None
    if end < start:
        raise InvalidParameter("end_date is before start_date", field="end_date")
    stats = [
        {"date": row["day"].isoformat(), **{k: v for k, v in row.items() if k not in DROP}}
        for row in runtime.events.stats([engagement.SOURCE_ID], start, end)
    ]
    return ok({"stats": stats})


DROP = {"source_id", "day", "test", "merged"}  # engagement has no test events or pixel copies
