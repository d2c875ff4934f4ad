"""The Likewise pixel: the browser script and its collector.

``GET /pixel/v1/ttq.js`` serves a script with TikTok's ``ttq`` interface; the script posts the
page's events to ``POST /pixel/v1/collect`` on the same server. The shop runs on another
origin, so the collector answers CORS preflights and allows any origin; no cookies cross
origins (``_ttp`` is a first-party cookie of the shop, sent in the body). A pixel code is
public, as TikTok's is: it names where events go, it grants no reading.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from likewise.api.deps import RuntimeDep, read_body
from likewise.api.envelope import EnvelopeResponse, failure, ok
from likewise.api.errors import code_for
from likewise.errors import LikewiseError
from likewise.ingest import events as intake
from likewise.ingest import schema

router = APIRouter(prefix="/pixel/v1", tags=["pixel"])

SCRIPT = Path(__file__).resolve().parent.parent / "static" / "ttq.js"
MAX_COLLECT_BYTES = 256 * 1024
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}


@router.get("/ttq.js")
def script() -> Response:
    return FileResponse(
        SCRIPT,
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )


@router.options("/collect")
def preflight() -> Response:
    return Response(status_code=204, headers=CORS)


@router.post("/collect")
async def collect(request: Request, runtime: RuntimeDep) -> EnvelopeResponse:
    """Events from a browser. Errors carry the CORS headers too, so the script can read them."""
    try:
        body = schema.decode(schema.CollectBody, await read_body(request, MAX_COLLECT_BYTES))
        row = runtime.sources.resolve_public("web", body.pixel_code.strip())
        source = intake.Source(id=row.id, advertiser_id=row.advertiser_id)
        records = intake.collect_records(body, source, runtime.events.window())
        await runtime.events.accept(records)
    except LikewiseError as exc:
        response = failure(code_for(exc), exc.message)
        response.headers.update(CORS)
        return response
    response = ok({})
    response.headers.update(CORS)
    return response
