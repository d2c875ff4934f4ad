"""Request dependencies: the runtime, the caller, and access checks."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from likewise.errors import AdvertiserMismatch, InvalidParameter
from likewise.runtime import Runtime
from likewise.store.tenants import Principal


async def get_runtime(request: Request) -> Runtime:
    # async: a plain function dependency would cost a thread hop on every request
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def current_principal(request: Request, runtime: RuntimeDep) -> Principal:
    return runtime.tenants.authenticate(request.headers.get("Access-Token"))


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_advertiser(principal: Principal, advertiser_id: str | int) -> int:
    """The advertiser id as an int, if this token may act for it."""
    value = int(advertiser_id)
    if value not in principal.advertiser_ids:
        raise AdvertiserMismatch(
            f"no permission to operate advertiser {value} with this Access-Token",
            field="advertiser_id",
        )
    return value


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes ``limit`` bytes (never read whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InvalidParameter(f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidParameter(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidParameter("the request body is empty; send a JSON object")
    return raw


async def json_body(request: Request) -> Any:
    """The body as JSON whatever Content-Type the client claimed."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidParameter("the request body is not valid JSON") from None


BodyDep = Annotated[Any, Depends(json_body)]
