"""One router per path group; ``wire`` holds the models, services do the work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter


def tiktok_route(router: APIRouter, path: str, method: str) -> Callable[[Any], Any]:
    """Register a handler at ``path`` with and without the trailing slash."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_route(path, fn, methods=[method])
        router.add_api_route(path.rstrip("/"), fn, methods=[method], include_in_schema=False)
        return fn

    return register
