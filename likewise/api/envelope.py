"""TikTok's response envelope: ``{code, message, request_id, data}``, HTTP 200 even on errors."""

from __future__ import annotations

import itertools
import secrets
import time
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


# TikTok-shaped request ids: a timestamp, then 20 hex digits. A random per-process prefix and a
# counter keep them unique without a system call per request.
_ID_PREFIX = secrets.token_hex(4).upper()
_id_counter = itertools.count()


_stamp: tuple[int, str] = (0, "")  # (Unix second, its formatted form): formatted once a second


def new_request_id() -> str:
    global _stamp
    now = int(time.time())
    if now != _stamp[0]:
        _stamp = (now, f"{datetime.fromtimestamp(now, UTC):%Y%m%d%H%M%S}")
    return f"{_stamp[1]}{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFF:012X}"


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
