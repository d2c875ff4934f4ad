"""The one table from domain errors to TikTok return codes, and the handlers that use it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from likewise import errors as e
from likewise.api.envelope import EnvelopeResponse, failure

log = logging.getLogger("likewise.api")

# Domain error class -> TikTok code. Order does not matter: lookup walks the class's MRO.
CODES: dict[type[e.LikewiseError], int] = {
    e.LikewiseError: 40000,
    e.InvalidParameter: 40002,
    e.NotHashed: 40062,
    e.AudienceTooSmall: 40002,
    e.AudienceNotReady: 40002,
    e.LimitExceeded: 40002,
    e.ImportError_: 40002,
    e.PermissionDenied: 40001,
    e.NotFound: 40007,
    e.TooManyIds: 40011,
    e.AuthMissing: 40104,
    e.AuthInvalid: 40105,
    e.AdvertiserMismatch: 40001,
    e.FileSignatureMismatch: 40900,
    e.FileEmpty: 40906,
    e.FileTooLarge: 40907,
    e.FileTypeUnsupported: 40908,
    e.CalculateTypeUnsupported: 40909,
    e.FileInvalid: 40914,
    e.FileSpecInvalid: 40915,
}
SYSTEM_ERROR = 50000


def unexpected(exc: Exception, scope: Scope) -> EnvelopeResponse:
    """TikTok's system error for an exception no handler expected, logged by type and path only:
    an exception's text may quote request data (identifiers)."""
    log.error("unhandled %s on %s", type(exc).__name__, scope.get("path", ""))
    return failure(SYSTEM_ERROR, "system error; the request was not completed")


def code_for(exc: e.LikewiseError) -> int:
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls]  # type: ignore[index]
    return CODES[e.LikewiseError]


def install(app: FastAPI) -> None:
    @app.exception_handler(e.LikewiseError)
    async def _domain(_request: Request, exc: e.LikewiseError) -> EnvelopeResponse:
        return failure(code_for(exc), exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> EnvelopeResponse:
        return failure(40002, "invalid request: " + str(exc.errors()[:1]))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> EnvelopeResponse:
        # The request never reached API logic (unknown path, wrong method): a real HTTP error.
        message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        return failure(40000, message, status_code=exc.status_code)

    app.add_middleware(UnexpectedErrors)


class UnexpectedErrors:
    """Any exception a handler did not expect becomes TikTok's system error (50000).

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` wraps every request in a
    task group and a memory stream, which costs more than the Events API's own work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            response = unexpected(exc, scope)
            if started:  # too late for an envelope; the server closes the connection
                raise
            await response(scope, receive, send)
