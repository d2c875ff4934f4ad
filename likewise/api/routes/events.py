"""Events API: 2.0 ``event/track/``; 1.0 ``pixel/track|batch/`` and ``offline/track|batch/``;
and ``pixel/event/stats/``.

Handlers are ``async``: each request decodes and checks its body, then waits (without holding a
thread) until the log writer has its events on disk, so concurrent senders share one fsync.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter, Request

from likewise.api.deps import PrincipalDep, RuntimeDep, read_body, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.wire.base import parse, query_dict
from likewise.api.wire.events import PixelEventStatsRequest
from likewise.errors import InvalidParameter, NotFound
from likewise.ingest import events as intake
from likewise.ingest import schema
from likewise.ingest.records import EventRecord, encode_batch
from likewise.runtime import Runtime
from likewise.store.tenants import Principal

router = APIRouter(prefix="/open_api/v1.3", tags=["events"])
Body = TypeVar("Body")


def _principal(request: Request, runtime: Runtime) -> Principal:
    return runtime.tenants.authenticate_cached(request.headers.get("Access-Token"))


def _source(runtime: Runtime, principal: Principal, kind: str, code: str) -> intake.Source:
    """The sending advertiser's source (``resolve`` caches: this runs on every request)."""
    field = "pixel_code" if kind == "web" else "event_source_id"
    if not code.strip():
        raise InvalidParameter(f"{field} is required", field=field)
    try:
        row = runtime.sources.resolve(set(principal.advertiser_ids), kind, code.strip())
    except NotFound as exc:
        raise NotFound(exc.message, field=field) from None
    return intake.Source(id=row.id, advertiser_id=row.advertiser_id)


Lines = Callable[[bytes, Body, intake.Source, intake.Window], bytes]


async def _accept(
    request: Request,
    decode: Callable[[bytes], Body],
    kind: Callable[[Body], str],
    code: Callable[[Body], str],
    lines: Lines[Body],
) -> EnvelopeResponse:
    """Decode, check the source, write every event's log line, then wait until they are
    durable.

    The intake handlers take no dependencies (FastAPI resolves those on every request): the
    runtime comes straight from the app's state."""
    runtime: Runtime = request.app.state.runtime
    principal = _principal(request, runtime)
    raw = await read_body(request, runtime.settings.max_event_body_bytes)
    body = decode(raw)
    source = _source(runtime, principal, kind(body), code(body))
    await runtime.events.accept_lines(lines(raw, body, source, runtime.events.window()), source.id)
    return ok({})


def _records(
    build: Callable[[Body, intake.Source, intake.Window], list[EventRecord]],
) -> Lines[Body]:
    """The lines of the records ``build`` makes (intakes without a compiled fast path)."""
    return lambda _raw, body, source, window: encode_batch(build(body, source, window))


@tiktok_route(router, "/event/track/", "POST")
async def event_track(request: Request) -> EnvelopeResponse:
    return await _accept(
        request,
        schema.decode_track,
        lambda b: b.event_source,
        lambda b: b.event_source_id,
        intake.track_lines,  # the compiled fast path, from the body itself
    )


@tiktok_route(router, "/pixel/track/", "POST")
async def pixel_track(request: Request) -> EnvelopeResponse:
    return await _accept(
        request,
        partial(schema.decode, schema.PixelTrackBody),
        lambda _: "web",
        lambda b: b.pixel_code,
        _records(
            lambda b, s, w: intake.pixel_records([b], s, w, test=bool(b.test_event_code), prefix="")
        ),
    )


@tiktok_route(router, "/pixel/batch/", "POST")
async def pixel_batch(request: Request) -> EnvelopeResponse:
    return await _accept(
        request,
        partial(schema.decode, schema.PixelBatchBody),
        lambda _: "web",
        lambda b: b.pixel_code,
        _records(
            lambda b, s, w: intake.pixel_records(
                b.batch, s, w, test=bool(b.test_event_code), prefix="batch"
            )
        ),
    )


@tiktok_route(router, "/offline/track/", "POST")
async def offline_track(request: Request) -> EnvelopeResponse:
    return await _accept(
        request,
        partial(schema.decode, schema.OfflineTrackBody),
        lambda _: "offline",
        lambda b: b.event_set_id,
        _records(
            lambda b, s, w: intake.offline_records(
                [b], s, w, test=bool(b.test_event_code), prefix=""
            )
        ),
    )


@tiktok_route(router, "/offline/batch/", "POST")
async def offline_batch(request: Request) -> EnvelopeResponse:
    return await _accept(
        request,
        partial(schema.decode, schema.OfflineBatchBody),
        lambda _: "offline",
        lambda b: b.event_set_id,
        _records(
            lambda b, s, w: intake.offline_records(
                b.batch, s, w, test=bool(b.test_event_code), prefix="batch"
            )
        ),
    )


@tiktok_route(router, "/pixel/event/stats/", "GET")
def pixel_event_stats(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> EnvelopeResponse:
    """Per pixel, day and event: events received, test events, duplicates dropped, copies
    merged, and events stored but not usable for audiences (limited data use / ATT denied)."""
    req = parse(
        PixelEventStatsRequest, query_dict(request.query_params.multi_items(), {"pixel_ids"})
    )
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    try:
        start = date.fromisoformat(req.date_range.start_date)
        end = date.fromisoformat(req.date_range.end_date)
    except ValueError:
        raise InvalidParameter("date_range dates must be YYYY-MM-DD", field="date_range") from None
    if end < start:
        raise InvalidParameter("date_range end_date is before start_date", field="date_range")
    ids: list[int] = []
    for raw in req.pixel_ids:
        source = runtime.sources.get_by_id(int(raw))
        if source is None or source.deleted or source.advertiser_id != advertiser_id:
            raise NotFound(f"pixel {raw} does not exist", field="pixel_ids")
        ids.append(source.id)
    by_pixel: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for row in runtime.events.stats(ids, start, end):
        source_id, day = row.pop("source_id"), row.pop("day")
        by_pixel[source_id].append({"date": day.isoformat(), **row})
    return ok({"list": [{"pixel_id": str(i), "stats": by_pixel[i]} for i in ids]})
