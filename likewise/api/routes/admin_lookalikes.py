"""Lookalikes and their features on the admin API: every lookalike's definition and quality
report (measured on a held-out part of its seed), and the state of the feature store. Same
``X-Admin-Token`` check as the rest of ``/admin/v1``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from likewise.api.deps import RuntimeDep
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes.admin import require_admin

router = APIRouter(
    prefix="/admin/v1", tags=["admin: lookalikes"], dependencies=[Depends(require_admin)]
)


@router.get("/lookalikes")
def lookalikes(runtime: RuntimeDep, advertiser_id: int | None = None) -> EnvelopeResponse:
    """Every lookalike (of one advertiser with ``advertiser_id``), newest first."""
    return ok({"list": runtime.lookalikes.describe(advertiser_id=advertiser_id)})


@router.get("/lookalikes/{audience_id}")
def lookalike(runtime: RuntimeDep, audience_id: int) -> EnvelopeResponse:
    return ok(runtime.lookalikes.describe(audience_id=audience_id)[0])


@router.get("/features")
def features(runtime: RuntimeDep) -> EnvelopeResponse:
    """The feature store: its generation and the delta files not merged yet."""
    store = runtime.features
    return ok({"generation": store.generation, "pending_files": store.pending()})


@router.post("/features/merge")
def merge_features(runtime: RuntimeDep) -> EnvelopeResponse:
    """Merge new engagement into the features now (otherwise every
    ``LIKEWISE_FEATURE_MERGE_SECONDS``)."""
    runtime.events.flush()
    generation = runtime.merge_features()
    return ok({"generation": generation, "pending_files": runtime.features.pending()})
