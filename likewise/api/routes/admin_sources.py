"""Admin API for event sources of every kind (pixels, apps, offline and CRM event sets, lead
forms, platform accounts), for any advertiser. Same ``X-Admin-Token`` check as the rest of
``/admin/v1``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BeforeValidator, Field

from likewise.api.deps import BodyDep, RuntimeDep
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes.admin import require_admin
from likewise.api.wire.audience import page_info
from likewise.api.wire.base import MAX_ID, WireModel, parse, query_dict
from likewise.api.wire.sources import SourceName
from likewise.engine.sources import EVENT_SOURCE_OF, SourceKind, activity_status
from likewise.errors import InvalidParameter, NotFound
from likewise.runtime import Runtime
from likewise.store.models import EventSource

router = APIRouter(
    prefix="/admin/v1", tags=["admin: event sources"], dependencies=[Depends(require_admin)]
)


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Kind = Annotated[
    Literal["PIXEL", "APP", "OFFLINE", "CRM", "LEAD_FORM", "ACCOUNT"], BeforeValidator(_upper)
]


class SourceCreate(WireModel):
    kind: Kind
    name: SourceName
    code: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class SourceUpdate(WireModel):
    name: SourceName | None = None
    settings: dict[str, Any] | None = None


class SourceListQuery(WireModel):
    kind: Kind | None = None
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    page_size: Annotated[int, Field(ge=1, le=1000)] = 100


def path_id(value: str, field: str) -> int:
    """A numeric id from the path, or 40002 naming it (never FastAPI's generic message)."""
    if not value.isdigit() or len(value) > 19 or int(value) > MAX_ID:
        raise InvalidParameter(f"{field} must be a numeric id, got {value[:40]!r}", field=field)
    return int(value)


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def source_view(src: EventSource, now: datetime) -> dict[str, Any]:
    kind = SourceKind(src.kind)
    return {
        "event_source_id": str(src.id),
        "advertiser_id": str(src.advertiser_id),
        "kind": kind.value,
        # what an Events API request puts in event_source / event_source_id to send here
        "event_source": EVENT_SOURCE_OF[kind],
        "code": src.code,
        "name": src.name,
        "settings": src.settings,
        "create_time": _time(src.created_at),
        "modify_time": _time(src.modified_at),
        "last_event_time": _time(src.last_event_at),
        "activity_status": activity_status(src.last_event_at, now),
    }


def _existing(runtime: Runtime, source_id: str) -> EventSource:
    src = runtime.sources.get_by_id(path_id(source_id, "event_source_id"))
    if src is None:
        raise NotFound(f"event source {source_id} does not exist", field="event_source_id")
    return src


@router.post("/advertisers/{advertiser_id}/event-sources")
def sources_create(advertiser_id: str, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    owner = path_id(advertiser_id, "advertiser_id")
    req = parse(SourceCreate, body)
    src = runtime.sources.create(
        advertiser_id=owner,
        kind=req.kind,
        name=req.name,
        code=req.code,
        settings=req.settings,
    )
    return ok(source_view(src, runtime.clock()))


@router.get("/advertisers/{advertiser_id}/event-sources")
def sources_list(advertiser_id: str, request: Request, runtime: RuntimeDep) -> EnvelopeResponse:
    adv = runtime.tenants.advertiser(path_id(advertiser_id, "advertiser_id"))
    req = parse(SourceListQuery, query_dict(request.query_params.multi_items(), set()))
    rows, total = runtime.sources.list(
        advertiser_ids={adv.id},
        kinds={SourceKind(req.kind)} if req.kind else None,
        page=req.page,
        page_size=req.page_size,
    )
    now = runtime.clock()
    return ok(
        {
            "list": [source_view(r, now) for r in rows],
            "page_info": page_info(req.page, req.page_size, total),
        }
    )


@router.get("/event-sources/{source_id}")
def sources_get(source_id: str, runtime: RuntimeDep) -> EnvelopeResponse:
    return ok(source_view(_existing(runtime, source_id), runtime.clock()))


@router.patch("/event-sources/{source_id}")
def sources_update(source_id: str, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    src = _existing(runtime, source_id)
    req = parse(SourceUpdate, body)
    changed = runtime.sources.update(
        advertiser_id=src.advertiser_id, source_id=src.id, name=req.name, settings=req.settings
    )
    return ok(source_view(changed, runtime.clock()))


@router.delete("/event-sources/{source_id}")
def sources_delete(source_id: str, runtime: RuntimeDep) -> EnvelopeResponse:
    src = _existing(runtime, source_id)
    runtime.sources.delete(advertiser_id=src.advertiser_id, source_id=src.id)
    return ok({})
