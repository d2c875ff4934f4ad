"""The Events API's POST routes, answered before FastAPI and Starlette see the request.

These handlers take no parameters FastAPI would resolve (they read the body themselves, see
``routes.events``), so on their paths the middleware stack (Starlette's server-error and
FastAPI's telemetry layers, our error envelope), the router walk, dependency solving and
exception handlers only cost time: more than half of the CPU of a single-event request.
:class:`IntakeApp` calls the same handlers directly and turns domain errors, and unexpected
ones, into the same TikTok envelopes. The routes are read from FastAPI's own (``routes.events``'
POST handlers that take only the request) and stay there, for the OpenAPI schema and for other
methods (a GET gets FastAPI's 405).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from likewise.api.envelope import failure
from likewise.api.errors import code_for, unexpected
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


class IntakeApp(FastAPI):
    """FastAPI, with the Events API's POST routes taken first (see the module's docstring)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = (
            ROUTES.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if handler is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # what Starlette sets: handlers read the runtime from app.state
        try:
            response = await handler(Request(scope, receive))
        except LikewiseError as exc:
            response = failure(code_for(exc), exc.message)
        except Exception as exc:  # as errors.UnexpectedErrors answers every other route
            response = unexpected(exc, scope)
        await response(scope, receive, send)
