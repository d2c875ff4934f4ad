"""The first invariant: no raw PII at rest or in logs.

Distinctive raw identifiers are planted through every door (users import over HTTP and in
process, customer files, bad requests); when all work is done, every file of the data directory
(bytes, and the decoded contents of DuckDB, SQLite and Parquet files, whose compression could hide
a string from a byte scan) and every log line and byte of output is searched for them, in their
raw, lowercased and normalised forms.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from likewise.ingest.users import import_users
from tests.at_rest import decoded
from tests.conftest import ADMIN_TOKEN, Server, start_server

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def email_forms(raw: str) -> list[str]:
    """Raw, lowercased, without the +tag, without the local part's dots; and the local parts."""
    lower = raw.strip().lower()
    local, domain = lower.split("@", 1)
    no_tag = local.split("+", 1)[0]
    no_dots = no_tag.replace(".", "")
    return [raw, lower, f"{no_tag}@{domain}", f"{no_dots}@{domain}", local, no_tag, no_dots]


def phone_forms(raw: str, e164: str, national: str) -> list[str]:
    return [raw, e164, e164[1:], national]


def device_forms(raw: str) -> list[str]:
    return [raw, raw.lower(), raw.upper(), raw.replace("-", "").lower()]


# Where each identifier is planted, with every form it must never be found in.
PLANTED: dict[str, list[str]] = {
    # users import over the admin HTTP API
    "admin_email": email_forms("Planted.Alice.9f3k+promo@Example.org"),
    "admin_phone": phone_forms("+44 20 7946 0958", "+442079460958", "2079460958"),
    "admin_idfa": device_forms("6D92078A-8246-4BA4-AE5B-76104861E7DC"),
    "admin_gaid": device_forms("e3c1a9b2-7f4d-4c8e-9a1b-5d6f7e8a9b0c"),
    "admin_invalid_email": ["planted.peggy.7w3e@@example", "planted.peggy.7w3e"],
    # users import in process (a file, then an Arrow table)
    "file_email": email_forms("Planted.Bob.7x2q@Example.org"),
    "file_phone": phone_forms("(415) 555-0134", "+14155550134", "4155550134"),
    "table_email": email_forms("planted.mallory.0z3x+news@example.org"),
    "table_idfa": device_forms("B7E2F1A0-3C4D-4E5F-8A9B-0C1D2E3F4A5B"),
    # customer files (raw, not hashed)
    "file_carol": email_forms("PLANTED.Carol.4h8w@example.net"),
    "file_phone2": phone_forms("+1 415-555-0177", "+14155550177", "4155550177"),
    "file_idfa": device_forms("A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D"),
    "file_invalid": ["planted.oscar.4r6y@@example", "planted.oscar.4r6y"],
    # bad requests
    "mapping_email": email_forms("planted.erin.5m1z@example.com"),
    "bad_md5_email": email_forms("planted.frank.3k9p@example.com"),
    "truncated_email": email_forms("planted.grace.8v2n@example.com"),
    "xlsx_email": email_forms("planted.heidi.6b4t@example.com"),
    "no_header_email": email_forms("planted.ivan.2c7d@example.com"),
    "too_large_email": email_forms("planted.judy.1q5e@example.com"),
    "bad_import_email": email_forms("planted.ken.9s8d@example.com"),
    "only_invalid_email": ["planted.liam.6u4i@@example", "planted.liam.6u4i"],
}


def needles() -> dict[bytes, str]:
    """Lowercased byte patterns (UTF-8 and UTF-16-LE) -> the planted name they belong to."""
    out: dict[bytes, str] = {}
    for name, forms in PLANTED.items():
        for form in forms:
            text = form.lower()
            out[text.encode()] = name
            out[text.encode("utf-16-le")] = name
    return out


def found_in(blob: bytes) -> set[str]:
    low = blob.lower()
    return {name for needle, name in needles().items() if needle in low}


def scan_data_dir(data_dir: Path) -> dict[str, set[str]]:
    hits: dict[str, set[str]] = {}
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        names = found_in(blob) | found_in(decoded(path, blob[:16]).encode())
        if names:
            hits[str(path.relative_to(data_dir))] = names
    return hits


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> list[tuple[logging.Logger, Any]]:
    """DEBUG for every logger, even those that set their own level (SQLAlchemy sets WARN);
    uvicorn's loggers do not propagate, so they log to the capture handler alone for a while.
    Returns what to restore (caplog restores the levels itself)."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
    saved = []
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:]))
        logger.handlers = [caplog.handler]
    return saved


@pytest.fixture
def server(tmp_path: Path, logs: pytest.LogCaptureFixture) -> Iterator[Server]:
    for running in start_server(
        tmp_path / "data", min_audience_size=1, max_upload_bytes=256 * 1024
    ):
        saved = every_logger_at_debug(logs)  # after start: uvicorn has set up its loggers
        yield running
        for logger, handlers in saved:
            logger.handlers = handlers


HTTP = httpx.Client(timeout=60)


def call(server: Server, method: str, path: str, token: str, **kw: Any) -> dict[str, Any]:
    r = HTTP.request(method, server.api + path, headers={"Access-Token": token}, **kw)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def upload(server: Server, adv: str, token: str, content: bytes, **kw: Any) -> dict[str, Any]:
    filename = kw.pop("filename", "customers.csv")
    fields = {
        "advertiser_id": adv,
        "calculate_type": kw.pop("calculate_type", "EMAIL_SHA256"),
        "file_signature": kw.pop("signature", hashlib.md5(content).hexdigest()),
    }
    body = call(
        server,
        "POST",
        "/dmp/custom_audience/file/upload/",
        token,
        data=fields,
        files={"file": (filename, content)},
    )
    return body


def admin_import(server: Server, content: bytes, filename: str = "users.csv") -> httpx.Response:
    return HTTP.post(
        server.url + "/admin/v1/users/import",
        headers={"X-Admin-Token": ADMIN_TOKEN},
        files={"file": (filename, content)},
    )


def raw_of(name: str) -> str:
    return PLANTED[name][0]


def test_no_raw_identifier_at_rest_or_in_logs(
    capfd: pytest.CaptureFixture[str],
    logs: pytest.LogCaptureFixture,
    server: Server,
    tmp_path: Path,
) -> None:
    # --- platform users: admin HTTP import, then import_users with a file and a table ----------
    users_csv = (
        "user_id,email,phone,idfa,gaid,country\n"
        f"pii-1,{raw_of('admin_email')},{raw_of('admin_phone')},{raw_of('admin_idfa')},,GB\n"
        f"pii-2,{raw_of('admin_invalid_email')},,,{raw_of('admin_gaid')},GB\n"
    ).encode()
    r = admin_import(server, users_csv)
    assert r.status_code == 200 and r.json()["code"] == 0, r.text
    assert r.json()["data"]["rejected"] == {"invalid_email": 1}
    path = tmp_path / "operator-users.csv"  # the operator's own file, outside the data dir
    path.write_text(
        f"user_id,email,phone,country\npii-3,{raw_of('file_email')},{raw_of('file_phone')},US\n"
    )
    import_users(server.runtime.graph, path)
    import_users(
        server.runtime.graph,
        pa.table(
            {
                "user_id": ["pii-4", "pii-5", "pii-6"],
                "email": [raw_of("table_email"), raw_of("file_carol"), None],
                "idfa": [raw_of("table_idfa"), None, raw_of("file_idfa")],
                "phone": [None, raw_of("file_phone2"), None],
                "country": ["US", "US", "US"],
            }
        ),
    )
    # Bad imports: an unsupported file type, a file without user_id, a malformed CSV.
    assert admin_import(server, raw_of("bad_import_email").encode(), "users.json").json()["code"]
    assert admin_import(server, f"email\n{raw_of('bad_import_email')}\n".encode()).json()["code"]
    bad_csv = f'user_id,email\n"pii-7,{raw_of("bad_import_email")}\n'.encode()
    assert admin_import(server, bad_csv).status_code == 200

    # --- customer files, raw --------------------------------------------------------------------
    adv, token = server.advertiser()
    emails = f"{raw_of('file_carol')}\n{raw_of('table_email').upper()}\n{raw_of('file_invalid')}\n"
    body = upload(server, adv, token, emails.encode())
    assert body["code"] == 0, body
    email_file = body["data"]["file_path"]
    multi = (
        "email,phone,idfa\n"
        f"{raw_of('admin_email')},{raw_of('file_phone2')},{raw_of('file_idfa')}\n"
        f"{raw_of('file_email').lower()},{raw_of('file_phone')},\n"
        f",{raw_of('admin_phone')},{raw_of('table_idfa').lower()}\n"
    )
    body = upload(server, adv, token, multi.encode(), calculate_type="MULTIPLE_TYPES")
    assert body["code"] == 0, body
    multi_file = body["data"]["file_path"]
    audiences = []
    for paths, calculate_type in (([email_file], "EMAIL_SHA256"), ([multi_file], "MULTIPLE_TYPES")):
        created = call(
            server,
            "POST",
            "/dmp/custom_audience/create/",
            token,
            json={
                "advertiser_id": adv,
                "custom_audience_name": "Planted",
                "calculate_type": calculate_type,
                "file_paths": paths,
            },
        )
        assert created["code"] == 0, created
        audiences.append(created["data"]["custom_audience_id"])

    # --- bad requests carrying raw identifiers --------------------------------------------------
    # The segment calls wait for the match jobs: a request and a job opening the platform graph
    # at the same moment can fail in DuckDB (likewise/store/graph.py opens one connection per
    # operation), which is not what this test is about.
    server.wait_jobs()
    segment = call(
        server,
        "POST",
        "/segment/audience/",
        token,
        json={"advertiser_id": adv, "custom_audience_name": "Stream"},
    )["data"]["audience_id"]
    mapping = {
        "advertiser_ids": [adv],
        "id_schema": ["EMAIL_SHA256"],
        "batch_data": [[{"id": raw_of("mapping_email"), "audience_ids": [segment]}]],
    }
    body = call(server, "POST", "/segment/mapping/", token, json=mapping)
    assert body["code"] == 40062, body
    mapping["batch_data"] = [
        [
            {
                "id": hashlib.sha256(raw_of("mapping_email").encode()).hexdigest(),
                "audience_ids": [segment],
            }
        ]
    ]
    assert call(server, "POST", "/segment/mapping/", token, json=mapping)["code"] == 0
    content = raw_of("bad_md5_email").encode()
    assert upload(server, adv, token, content, signature="0" * 32)["code"] == 40900
    content = raw_of("xlsx_email").encode()
    assert upload(server, adv, token, content, filename="customers.xlsx")["code"] == 40908
    content = f"{raw_of('no_header_email')},{raw_of('file_phone')}\n".encode()
    body = upload(server, adv, token, content, calculate_type="MULTIPLE_TYPES")
    assert body["code"] == 40915, body
    assert not found_in(body["message"].encode()), body  # not even echoed to its sender
    content = (raw_of("too_large_email") + "\n").encode() * 20_000
    assert upload(server, adv, token, content)["code"] == 40907
    content = f"{raw_of('only_invalid_email')}\n".encode()
    body = upload(server, adv, token, content)
    assert body["code"] == 40915 and not found_in(body["message"].encode()), body
    truncated = (
        b'--XyZ\r\nContent-Disposition: form-data; name="advertiser_id"\r\n\r\n'
        + adv.encode()
        + b'\r\n--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        + raw_of("truncated_email").encode() * 100
    )
    r = HTTP.post(
        server.api + "/dmp/custom_audience/file/upload/",
        headers={"Access-Token": token, "Content-Type": "multipart/form-data; boundary=XyZ"},
        content=truncated,
    )
    assert r.json()["code"] == 40002, r.text

    # --- everything done: the audiences did use the raw identifiers ------------------------------
    server.wait_jobs()
    got = call(
        server,
        "GET",
        "/dmp/custom_audience/get/",
        token,
        params={"advertiser_id": adv, "custom_audience_ids": str(audiences).replace("'", '"')},
    )
    assert [x["audience_details"]["cover_num"] for x in got["data"]["list"]] == [2, 5], got

    # --- at rest -----------------------------------------------------------------------------
    data_dir = server.data_dir
    # The event processor keeps its state database open; release it so the scan can read it.
    server.runtime.events.stop_processing()
    assert scan_data_dir(data_dir) == {}
    assert list((data_dir / "tmp").iterdir()) == []
    uploads = sorted((data_dir / "uploads").iterdir())
    assert uploads, "the accepted files left their hashed keys"
    for key_file in uploads:
        assert re.fullmatch(r"[a-z0-9]{16}\.parquet", key_file.name), key_file
        assert pq.read_schema(key_file).names == ["row_no", "k_hi", "k_lo", "kmask"]

    # --- in logs and output ---------------------------------------------------------------------
    records = [r for when in ("setup", "call") for r in logs.get_records(when)]
    names = {r.name for r in records}
    assert "uvicorn.access" in names and any(n.startswith("sqlalchemy.engine") for n in names)
    text = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text} {logs.handler.format(r)}"
        for r in records
    )
    assert found_in(text.encode()) == set()
    out, err = capfd.readouterr()
    assert found_in((out + err).encode()) == set()
    assert "Traceback" not in out + err
