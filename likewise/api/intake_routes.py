"""The Events API's POST routes, answered before FastAPI's router.

These handlers take no parameters FastAPI would resolve (they read the body themselves, see
``routes.events``), so on their paths the router walk, dependency solving and exception-handler
layers only cost time: about half of the CPU of a single-event request. This ASGI middleware
calls the same handlers directly and turns domain errors into the same TikTok envelope. The
routes stay registered with FastAPI too, for the OpenAPI schema and for other methods (a GET
on them gets FastAPI's 405).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from likewise.api.envelope import failure
from likewise.api.errors import code_for
from likewise.api.routes import events
from likewise.errors import LikewiseError

Handler = Callable[[Request], Awaitable[Response]]

PREFIX = "/open_api/v1.3"
HANDLERS: dict[str, Handler] = {
    "/event/track/": events.event_track,
    "/pixel/track/": events.pixel_track,
    "/pixel/batch/": events.pixel_batch,
    "/offline/track/": events.offline_track,
    "/offline/batch/": events.offline_batch,
}
# Both spellings, as ``tiktok_route`` registers them: the trailing slash is optional.
ROUTES: dict[str, Handler] = {
    f"{PREFIX}{path.rstrip('/')}{end}": handler
    for path, handler in HANDLERS.items()
    for end in ("", "/")
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
