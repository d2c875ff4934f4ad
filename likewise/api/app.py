"""``create_app(settings)``: the HTTP application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from likewise import __version__
from likewise.api import errors
from likewise.api.envelope import EnvelopeResponse, ok
from likewise.api.intake_routes import IntakeApp
from likewise.api.routes import (
    account,
    adgroup,
    admin,
    admin_engagement,
    admin_lookalikes,
    admin_serving,
    admin_sources,
    apply,
    custom_audience,
    events,
    events_sources,
    insights,
    likewise_audience,
    lookalike,
    pixel,
    segment,
    share,
)
from likewise.runtime import Runtime
from likewise.settings import Settings


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. Pass ``runtime`` to share one (tests, the demo); otherwise one is built
    from ``settings`` (or the environment) when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = runtime is None
        rt = runtime or Runtime(settings or Settings())
        app.state.runtime = rt
        if own:
            rt.start()
        # Everything built so far lives as long as the server: take it out of the collector's
        # view, so collections triggered by request garbage stay short (latency) and cheap.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # collectable again: bindings check for leaks at exit
            if own:
                rt.close()

    app = IntakeApp(
        title="Likewise",
        version=__version__,
        summary="Custom Audiences engine with TikTok-compatible audience APIs",
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    errors.install(app)
    # Routes are matched in order, one pattern at a time: the hot paths go first (the event
    # intake, then the ad server's membership lookups).
    for router in (
        events.router,
        admin_serving.router,
        pixel.router,
        lookalike.router,
        apply.router,
        share.router,
        custom_audience.router,
        segment.router,
        account.router,
        admin.router,
        admin_sources.router,
        admin_engagement.router,
        admin_lookalikes.router,
        events_sources.router,
        likewise_audience.router,
        adgroup.router,
        insights.router,
        insights.likewise_router,
    ):
        app.include_router(router)

    @app.get("/health", tags=["admin"])
    def health() -> EnvelopeResponse:
        return ok({"status": "ok", "version": __version__})

    return app
