"""TikTok's response envelope: ``{code, message, request_id, data}``, HTTP 200 even on errors."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import Response

OK_MESSAGE = "OK"  # exactly: some clients compare the string


class EnvelopeResponse(Response):
    """JSON via orjson (fast, and handles the types our envelopes hold)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def new_request_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def envelope(code: int, message: str, data: Any, request_id: str | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "request_id": request_id or new_request_id(),
        "data": data if data is not None else {},
    }


def ok(data: Any = None) -> EnvelopeResponse:
    return EnvelopeResponse(envelope(0, OK_MESSAGE, data))


def failure(code: int, message: str, *, status_code: int = 200) -> EnvelopeResponse:
    return EnvelopeResponse(envelope(code, message, {}), status_code=status_code)
