"""``/likewise/v1/audience/*``: Likewise's own audience API, beyond TikTok's (docs/rules.md).

Same ``Access-Token``, envelope and error codes as the TikTok routes; the audiences made here are
listed, read and deleted through ``/open_api/v1.3/dmp/custom_audience/*`` like any other.
"""

from __future__ import annotations

from fastapi import APIRouter

from likewise.api.deps import BodyDep, PrincipalDep, RuntimeDep, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.wire.audience import CustomAudienceRuleCreateRequest, Name
from likewise.api.wire.base import IdStr, WireModel, parse
from likewise.errors import InvalidParameter

router = APIRouter(prefix="/likewise/v1/audience", tags=["likewise audiences"])


class CombinedAudienceCreateRequest(WireModel):
    """The common fields; ``combination_spec`` is read by the engine, whose errors name the
    exact field (``combination_spec.any_of[2]``)."""

    advertiser_id: IdStr
    custom_audience_name: Name


@tiktok_route(router, "/rule/create/", "POST")
def rule_create(principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep) -> EnvelopeResponse:
    """TikTok's ``rule/create`` body, plus ``operator`` ``AND`` between inclusion rules and
    per-rule ``min_count``, ``min_value`` and ``top_share``."""
    req = parse(CustomAudienceRuleCreateRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    if not isinstance(body, dict):
        raise InvalidParameter("the request body must be a JSON object")
    audience_id = runtime.rules.create(
        advertiser_id=advertiser_id, name=req.custom_audience_name, body=body, extended=True
    )
    return ok({"custom_audience_id": str(audience_id)})


@tiktok_route(router, "/combined/create/", "POST")
def combined_create(
    principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep
) -> EnvelopeResponse:
    """Members of any or all of other audiences, minus others, kept up to date."""
    req = parse(CombinedAudienceCreateRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    audience_id = runtime.combined.create(
        advertiser_id=advertiser_id,
        name=req.custom_audience_name,
        spec=body.get("combination_spec"),
    )
    return ok({"custom_audience_id": str(audience_id)})
