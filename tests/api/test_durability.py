"""Acknowledged means durable: a crash (kill -9) loses no acknowledged audience or job."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from likewise.ingest.users import import_users
from likewise.runtime import Runtime
from likewise.settings import Settings
from tests.conftest import ADMIN_TOKEN, free_port

EMAILS = [f"durable{i}@example.com" for i in range(50)]


def _platform(data: Path) -> None:
    rt = Runtime(Settings(data_dir=data))
    import_users(rt.graph, pa.table({"user_id": [f"d{i}" for i in range(50)], "email": EMAILS}))
    rt.close()


def _file_audience(rt: Runtime, advertiser_id: int, name: str) -> tuple[int, Any]:
    """Upload 20 known e-mails and create an audience from them, through the services."""
    from likewise.engine.uploads import ReceivedFile

    raw = rt.settings.data_dir / "tmp" / "raw.csv"
    content = "\n".join(EMAILS[:20]).encode()
    raw.write_bytes(content)
    md5 = hashlib.md5(content).hexdigest()
    upload = rt.uploads.accept(
        advertiser_id=advertiser_id,
        received=ReceivedFile(raw, "c.csv", len(content), md5),
        file_signature=md5,
        calculate_type="EMAIL_SHA256",
        region="US",
        now=rt.clock(),
    )
    audience_id = rt.audiences.create_from_files(
        advertiser_id=advertiser_id,
        name=name,
        calculate_type="EMAIL_SHA256",
        file_paths=[upload.file_path],
    )
    return audience_id, upload


def _serve(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LIKEWISE_DATA_DIR": str(data),
        "LIKEWISE_PORT": str(port),
        "LIKEWISE_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIKEWISE_MIN_AUDIENCE_SIZE": "10",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "likewise.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except httpx.TransportError:
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.05)


def test_kill_9_after_create_keeps_the_audience(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _platform(data)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(data, port)
    try:
        adv = httpx.post(
            url + "/admin/v1/advertisers",
            json={"name": "d"},
            headers={"X-Admin-Token": ADMIN_TOKEN},
        ).json()["data"]
        h = {"Access-Token": adv["access_token"]}
        content = "\n".join(EMAILS[:30]).encode()
        up = httpx.post(
            url + "/open_api/v1.3/dmp/custom_audience/file/upload/",
            headers=h,
            data={
                "advertiser_id": adv["advertiser_id"],
                "calculate_type": "EMAIL_SHA256",
                "file_signature": hashlib.md5(content).hexdigest(),
            },
            files={"file": ("c.csv", content)},
        ).json()
        created = httpx.post(
            url + "/open_api/v1.3/dmp/custom_audience/create/",
            headers=h,
            json={
                "advertiser_id": adv["advertiser_id"],
                "custom_audience_name": "survives",
                "calculate_type": "EMAIL_SHA256",
                "file_paths": [up["data"]["file_path"]],
            },
        ).json()
        assert created["code"] == 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = _serve(data, port)
    try:
        params = {
            "advertiser_id": adv["advertiser_id"],
            "custom_audience_ids": json.dumps([created["data"]["custom_audience_id"]]),
        }
        deadline = time.monotonic() + 30
        while True:
            got = httpx.get(
                url + "/open_api/v1.3/dmp/custom_audience/get/", headers=h, params=params
            ).json()
            details = got["data"]["list"][0]["audience_details"]
            if details["status"] != "CALCULATING" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert details["is_valid"] is True
        assert details["cover_num"] == 30
    finally:
        proc.terminate()
        proc.wait()


def test_queued_job_resumes_at_start(tmp_path: Path) -> None:
    """A job acknowledged but never run (the process died first) runs at the next start."""
    data = tmp_path / "data"
    _platform(data)
    rt = Runtime(Settings(data_dir=data, min_audience_size=10))  # jobs not started
    adv = rt.tenants.create_advertiser(name="x", now=rt.clock())
    audience_id, _ = _file_audience(rt, adv.id, "later")
    view = rt.audiences.get(advertiser_id=adv.id, ids=[audience_id], history_size=0)[0]
    assert view.status.value == "CALCULATING" and not view.is_valid
    rt.close()

    rt = Runtime(Settings(data_dir=data, min_audience_size=10))
    rt.start()
    assert rt.jobs.wait_idle(30)
    view = rt.audiences.get(advertiser_id=adv.id, ids=[audience_id], history_size=0)[0]
    rt.close()
    assert view.is_valid and view.cover_num == 20


def test_a_failing_job_ends_in_a_visible_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _platform(data)
    rt = Runtime(Settings(data_dir=data, min_audience_size=10))
    adv = rt.tenants.create_advertiser(name="x", now=rt.clock())
    audience_id, upload = _file_audience(rt, adv.id, "doomed")
    # The hashed keys vanish before the job runs (disk trouble): every attempt fails.
    rt.uploads.keys_path(upload).unlink()
    rt.start()
    assert rt.jobs.wait_idle(30)
    view = rt.audiences.get(advertiser_id=adv.id, ids=[audience_id], history_size=5)[0]
    rt.close()
    assert view.status.value == "FAILED" and not view.is_valid
    assert view.error_msg and view.msg
    assert view.history[0].action == "FAILED"
