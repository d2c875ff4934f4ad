"""``/segment/audience/`` and ``/segment/mapping/``: the streaming (CDP) path."""

from __future__ import annotations

from fastapi import APIRouter

from likewise.api.deps import BodyDep, PrincipalDep, RuntimeDep, require_advertiser
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.routes import tiktok_route
from likewise.api.wire.base import parse
from likewise.api.wire.segment import ID_SCHEMA, SegmentAudienceRequest, SegmentMappingRequest
from likewise.engine.segments import Mapping
from likewise.errors import InvalidParameter, NotHashed
from likewise.identity.hashing import hash_key, is_md5_hex, is_sha256_hex

router = APIRouter(prefix="/open_api/v1.3/segment", tags=["segment"])


@tiktok_route(router, "/audience/", "POST")
def segment_audience(
    principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep
) -> EnvelopeResponse:
    req = parse(SegmentAudienceRequest, body)
    advertiser_id = require_advertiser(principal, req.advertiser_id)
    if req.action == "delete":
        if req.delete_audience_id is None:
            raise InvalidParameter(
                "delete_audience_id is required to delete", field="delete_audience_id"
            )
        runtime.segments.delete(
            advertiser_id=advertiser_id, audience_id=int(req.delete_audience_id)
        )
        return ok({"audience_id": req.delete_audience_id})
    if not req.custom_audience_name:
        raise InvalidParameter(
            "custom_audience_name is required to create", field="custom_audience_name"
        )
    audience_id = runtime.segments.create(
        advertiser_id=advertiser_id, name=req.custom_audience_name
    )
    return ok({"audience_id": str(audience_id)})


@tiktok_route(router, "/mapping/", "POST")
def segment_mapping(
    principal: PrincipalDep, body: BodyDep, runtime: RuntimeDep
) -> EnvelopeResponse:
    req = parse(SegmentMappingRequest, body)
    advertisers = [require_advertiser(principal, a) for a in req.advertiser_ids]
    mappings: list[Mapping] = []
    checked: set[int] = set()
    for i, row in enumerate(req.batch_data):
        if len(row) > len(req.id_schema):
            raise InvalidParameter(
                f"batch_data[{i}] has {len(row)} entries but id_schema has {len(req.id_schema)}",
                field="batch_data",
            )
        for j, item in enumerate(row):
            if not item:
                continue  # {} stands for an identifier this person does not have
            schema = req.id_schema[j]
            mask, length = ID_SCHEMA[schema]
            value = item.get("id")
            audience_ids = item.get("audience_ids")
            where = f"batch_data[{i}][{j}]"
            if not isinstance(value, str) or not value.strip():
                raise InvalidParameter(f"{where}.id must be a non-empty string", field="batch_data")
            if not isinstance(audience_ids, list) or not audience_ids:
                raise InvalidParameter(
                    f"{where}.audience_ids must be a non-empty list", field="batch_data"
                )
            digest = value.strip().lower()
            hashed = is_sha256_hex(digest) if length == 64 else is_md5_hex(digest)
            if not hashed:
                raise NotHashed(
                    f"{where}.id is not a {'SHA-256' if length == 64 else 'MD5'} hex digest "
                    f"as {schema} requires: identifiers must be hashed before sending",
                    field="batch_data",
                )
            ids = []
            for a in audience_ids:
                if not str(a).isdigit():
                    raise InvalidParameter(
                        f"{where}.audience_ids has a non-numeric id", field="batch_data"
                    )
                aid = int(a)
                if aid not in checked:
                    runtime.segments.owner_of(aid, advertisers)
                    checked.add(aid)
                ids.append(aid)
            mappings.append(Mapping(hash_key(digest), mask, tuple(ids)))
    runtime.segments.apply(mappings, add=req.action == "add")
    return ok({})
