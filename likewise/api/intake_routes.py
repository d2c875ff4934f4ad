"""The Events API's POST routes, answered before FastAPI's router.

These handlers take no parameters FastAPI would resolve (they read the body themselves, see
``routes.events``), so on their paths the router walk, dependency solving and exception-handler
layers only cost time: about half of the CPU of a single-event request. This ASGI middleware
calls the same handlers directly and turns domain errors into the same TikTok envelope. The
routes are read from FastAPI's own (``routes.events``' POST handlers that take only the request)
and stay there, for the OpenAPI schema and for other methods (a GET gets FastAPI's 405).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from likewise.api.envelope import failure
from likewise.api.errors import code_for
from likewise.api.routes import events
from likewise.errors import LikewiseError

Handler = Callable[[Request], Awaitable[Response]]


def _direct(route: BaseRoute) -> Handler | None:
    """The handler of a POST route of ``routes.events`` that takes only the request."""
    if not isinstance(route, APIRoute) or "POST" not in route.methods:
        return None
    if list(inspect.signature(route.endpoint).parameters) != ["request"]:
        return None
    return route.endpoint  # type: ignore[no-any-return]


# Path -> handler, both spellings (``tiktok_route`` registers each path with and without the
# trailing slash).
ROUTES: dict[str, Handler] = {
    route.path: handler  # type: ignore[attr-defined]
    for route in events.router.routes
    if (handler := _direct(route)) is not None
}


class IntakeRoutes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            response = await handler(Request(scope, receive))
        except LikewiseError as exc:
            response = failure(code_for(exc), exc.message)
        await response(scope, receive, send)
