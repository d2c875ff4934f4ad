"""The benchmark's baseline: an endpoint in the same framework and server as Likewise that only
parses the JSON body and answers with TikTok's envelope (``uvicorn bench.bare_app:app``)."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

app = FastAPI()
OK = orjson.dumps({"code": 0, "message": "OK", "request_id": "bare", "data": {}})


@app.post("/open_api/v1.3/event/track/")
async def track(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(OK, media_type="application/json")


@app.get("/admin/v1/serving/adgroups")
async def serving(uid: int) -> Response:
    """The serving benchmark's floor: a query parameter in, a constant envelope out."""
    return Response(OK, media_type="application/json")
