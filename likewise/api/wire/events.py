"""``pixel/event/stats/`` query (the Events API bodies are in ``likewise.ingest.schema``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, field_validator

from likewise.api.wire.base import IdStr, WireModel


class DateRange(WireModel):
    start_date: str
    end_date: str


class PixelEventStatsRequest(WireModel):
    advertiser_id: IdStr
    pixel_ids: list[IdStr] = Field(min_length=1, max_length=100)
    date_range: DateRange

    @field_validator("date_range", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        """Query parameters carry the object as JSON text."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(
                    'must be a JSON object like {"start_date": "2026-01-01", '
                    '"end_date": "2026-01-31"}'
                ) from None
        return value
