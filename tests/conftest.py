"""Shared fixtures: a real server on 127.0.0.1 over a real data directory."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn

from likewise.api import create_app
from likewise.runtime import Runtime
from likewise.settings import Settings

ADMIN_TOKEN = "test-admin-token"

# TikTok v1.3 paths under /open_api/v1.3, shared by the API tests.
UPLOAD = "/dmp/custom_audience/file/upload/"
CREATE = "/dmp/custom_audience/create/"
UPDATE = "/dmp/custom_audience/update/"
DELETE = "/dmp/custom_audience/delete/"
GET = "/dmp/custom_audience/get/"
LIST = "/dmp/custom_audience/list/"
SEGMENT = "/segment/audience/"
MAPPING = "/segment/mapping/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running Likewise: its runtime, base URL and an admin client."""

    runtime: Runtime
    url: str
    data_dir: Path

    @property
    def api(self) -> str:
        return self.url + "/open_api/v1.3"

    def admin(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        r = httpx.request(
            method,
            self.url + "/admin/v1" + path,
            headers={"X-Admin-Token": ADMIN_TOKEN},
            timeout=120,
            **kw,
        )
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def advertiser(self, name: str = "Acme", **kw: Any) -> tuple[str, str]:
        """A new advertiser: ``(advertiser_id, access_token)``."""
        data = self.admin("POST", "/advertisers", json={"name": name, **kw})["data"]
        return data["advertiser_id"], data["access_token"]

    def call(self, method: str, path: str, token: str | None, **kw: Any) -> dict[str, Any]:
        headers = {"Access-Token": token} if token else {}
        r = httpx.request(method, self.api + path, headers=headers, timeout=120, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"code", "message", "request_id", "data"}, body
        return body  # type: ignore[no-any-return]

    def import_users(self, users: pa.Table) -> dict[str, Any]:
        """Platform users (a ``generate_users`` table) through ``POST /admin/v1/users/import``;
        the import summary."""
        buffer = io.BytesIO()
        pq.write_table(users, buffer)
        body = self.admin(
            "POST", "/users/import", files={"file": ("users.parquet", buffer.getvalue())}
        )
        assert body["code"] == 0, body
        return body["data"]  # type: ignore[no-any-return]

    def likewise(self, method: str, path: str, token: str | None, **kw: Any) -> dict[str, Any]:
        """Likewise's own advertiser API under ``/likewise/v1`` (same envelope)."""
        headers = {"Access-Token": token} if token else {}
        r = httpx.request(
            method, self.url + "/likewise/v1" + path, headers=headers, timeout=120, **kw
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def upload(
        self,
        token: str,
        advertiser_id: str,
        content: bytes,
        *,
        calculate_type: str = "EMAIL_SHA256",
        filename: str = "customers.csv",
        signature: str | None = None,
    ) -> dict[str, Any]:
        return self.call(
            "POST",
            "/dmp/custom_audience/file/upload/",
            token,
            data={
                "advertiser_id": advertiser_id,
                "calculate_type": calculate_type,
                "file_signature": signature or hashlib.md5(content).hexdigest(),
            },
            files={"file": (filename, content)},
        )

    def file_audience(
        self, token: str, advertiser_id: str, content: bytes, name: str = "customers"
    ) -> str:
        """An EMAIL_SHA256 customer-file audience of ``content``, uploaded, created and matched
        (status READY); its id."""
        up = self.upload(token, advertiser_id, content)
        assert up["code"] == 0, up
        made = self.call(
            "POST",
            "/dmp/custom_audience/create/",
            token,
            json={
                "advertiser_id": advertiser_id,
                "custom_audience_name": name,
                "calculate_type": "EMAIL_SHA256",
                "file_paths": [up["data"]["file_path"]],
            },
        )
        assert made["code"] == 0, made
        self.wait_jobs()
        audience_id = str(made["data"]["custom_audience_id"])
        assert self.details(token, advertiser_id, audience_id)["status"] == "READY"
        return audience_id

    def audience(self, token: str, advertiser_id: str, audience_id: str) -> dict[str, Any]:
        """One ``get`` item: ``{audience_details, audience_history}``."""
        body = self.call(
            "GET",
            "/dmp/custom_audience/get/",
            token,
            params={"advertiser_id": advertiser_id, "custom_audience_ids": f'["{audience_id}"]'},
        )
        assert body["code"] == 0, body
        return body["data"]["list"][0]  # type: ignore[no-any-return]

    def details(self, token: str, advertiser_id: str, audience_id: str) -> dict[str, Any]:
        return self.audience(token, advertiser_id, audience_id)["audience_details"]  # type: ignore[no-any-return]

    def wait_jobs(self) -> None:
        assert self.runtime.jobs.wait_idle(120)


def start_server(
    data_dir: Path, *, clock: Callable[[], datetime] | None = None, **settings: Any
) -> Iterator[Server]:
    """A real server on 127.0.0.1; ``clock`` replaces the runtime's clock (expiry tests)."""
    port = free_port()
    cfg = Settings(data_dir=data_dir, port=port, admin_token=ADMIN_TOKEN, **settings)
    runtime = Runtime(cfg, clock=clock) if clock is not None else Runtime(cfg)
    runtime.start()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime=runtime),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield Server(runtime, f"http://127.0.0.1:{port}", data_dir)
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server with a small minimum audience size (tests use small platforms)."""
    yield from start_server(tmp_path / "data", min_audience_size=10)
