"""Membership serving for the operator's ad server (admin API): which active ad groups may be
shown to a user, which audiences a user is in, and batch forms. Users are named by the
platform's own ``user_id`` (as imported) or by Likewise's ``uid``. Same ``X-Admin-Token``
check as the rest of ``/admin/v1``; see ``targeting.serving``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field

from likewise.api.deps import BodyDep, RuntimeDep
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes.admin import require_admin
from likewise.api.wire.base import WireModel, parse
from likewise.errors import InvalidParameter
from likewise.runtime import Runtime

router = APIRouter(
    prefix="/admin/v1/serving", tags=["admin: serving"], dependencies=[Depends(require_admin)]
)
MAX_BATCH = 1000


class Batch(WireModel):
    user_ids: Annotated[list[str], Field(max_length=MAX_BATCH, default_factory=list)]
    uids: Annotated[list[int], Field(max_length=MAX_BATCH, default_factory=list)]
    audience_ids: Annotated[list[int], Field(max_length=10_000)] | None = None


def _uid(runtime: Runtime, user_id: str | None, uid: int | None) -> int | None:
    """The user's uid (None: not a known user, who is then in nothing)."""
    if (user_id is None) == (uid is None):
        raise InvalidParameter("give exactly one of user_id and uid", field="user_id")
    if uid is not None:
        if uid < 0:
            raise InvalidParameter("uid must not be negative", field="uid")
        return uid
    assert user_id is not None
    return runtime.serving.uid_of(user_id)


def _users(runtime: Runtime, batch: Batch) -> list[tuple[str, int | None]]:
    if not batch.user_ids and not batch.uids:
        raise InvalidParameter("give user_ids or uids", field="user_ids")
    if len(batch.user_ids) + len(batch.uids) > MAX_BATCH:
        raise InvalidParameter(f"at most {MAX_BATCH} users per request", field="user_ids")
    out: list[tuple[str, int | None]] = [(u, runtime.serving.uid_of(u)) for u in batch.user_ids]
    out += [(str(u), u) for u in batch.uids]
    return out


@router.get("/adgroups")
async def adgroups(
    runtime: RuntimeDep, user_id: str | None = None, uid: int | None = None
) -> EnvelopeResponse:
    """The active ad groups that may be shown to the user."""
    found = _uid(runtime, user_id, uid)
    ids = runtime.serving.eligible_ad_groups(found) if found is not None else []
    return ok({"known": found is not None, "adgroup_ids": [str(i) for i in ids]})


@router.post("/adgroups")
def adgroups_batch(body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    users = _users(runtime, parse(Batch, body))
    # One pass for the whole batch: an intersection per audience, then matrix products.
    found = runtime.serving.eligible_ad_groups_many([u for _, u in users if u is not None])
    results: dict[str, Any] = {
        key: [str(i) for i in found[u]] if u is not None else [] for key, u in users
    }
    return ok({"results": results})


@router.get("/audiences")
async def audiences(
    runtime: RuntimeDep, user_id: str | None = None, uid: int | None = None
) -> EnvelopeResponse:
    """The audiences the user is in (usable ones: valid, consent applied)."""
    found = _uid(runtime, user_id, uid)
    ids = runtime.serving.audiences_of(found) if found is not None else []
    return ok({"known": found is not None, "audience_ids": [str(i) for i in ids]})


@router.post("/audiences")
def audiences_batch(body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    batch = parse(Batch, body)
    users = _users(runtime, batch)
    serving = runtime.serving
    results = {
        key: [str(i) for i in serving.audiences_of(u, batch.audience_ids)] if u is not None else []
        for key, u in users
    }
    return ok({"results": results})


@router.get("/contains")
async def contains(
    runtime: RuntimeDep, audience_id: int, user_id: str | None = None, uid: int | None = None
) -> EnvelopeResponse:
    found = _uid(runtime, user_id, uid)
    member = found is not None and runtime.serving.contains(audience_id, found)
    return ok({"member": member})


@router.get("/status")
def status(runtime: RuntimeDep) -> EnvelopeResponse:
    """What serving has loaded, and how much of it the per-user index answers for."""
    return ok(runtime.serving.status())
