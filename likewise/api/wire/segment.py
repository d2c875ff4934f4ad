"""Wire models of the streaming segment API (``/segment/audience/``, ``/segment/mapping/``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from likewise.api.wire.base import IdStr, WireModel
from likewise.identity.kinds import MAID_MASK, IdKind

# id_schema value -> (match mask, hash length in hex characters)
ID_SCHEMA: dict[str, tuple[int, int]] = {
    "EMAIL_SHA256": (IdKind.EMAIL.bit, 64),
    "PHONE_SHA256": (IdKind.PHONE.bit, 64),
    "IDFA_SHA256": (IdKind.IDFA.bit, 64),
    "IDFA_MD5": (IdKind.IDFA.bit, 32),
    "AAID_SHA256": (IdKind.GAID.bit, 64),
    "AAID_MD5": (IdKind.GAID.bit, 32),
    "GAID_SHA256": (IdKind.GAID.bit, 64),
    "GAID_MD5": (IdKind.GAID.bit, 32),
    "MAID_SHA256": (MAID_MASK, 64),
    "MAID_MD5": (MAID_MASK, 32),
}


class SegmentAudienceRequest(WireModel):
    advertiser_id: IdStr
    action: Literal["create", "delete"] = "create"
    custom_audience_name: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    delete_audience_id: IdStr | None = None

    @field_validator("action", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class SegmentMappingRequest(WireModel):
    advertiser_ids: Annotated[list[IdStr], Field(min_length=1, max_length=100)]
    action: Literal["add", "delete"] = "add"
    id_schema: Annotated[list[str], Field(min_length=1, max_length=len(ID_SCHEMA))]
    batch_data: Annotated[list[list[dict[str, Any]]], Field(min_length=1, max_length=10_000)]

    @field_validator("action", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("id_schema")
    @classmethod
    def _schema(cls, v: list[str]) -> list[str]:
        upper = [s.strip().upper() for s in v]
        for s in upper:
            if s not in ID_SCHEMA:
                raise ValueError(f"{s!r} is not one of {', '.join(ID_SCHEMA)}")
        if len(set(upper)) != len(upper):
            raise ValueError("must not repeat a type")
        return upper
