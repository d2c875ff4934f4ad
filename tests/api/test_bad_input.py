"""Bad input to the customer-file upload and the audience API: a TikTok code and a message that
says what is wrong, HTTP 200 with the envelope, never a 500, a traceback or silent loss."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import select

from likewise.api import create_app
from likewise.ingest.users import import_users
from likewise.store.models import AccessToken
from likewise.store.tenants import token_digest
from tests.conftest import (
    ADMIN_TOKEN,
    CREATE,
    DELETE,
    GET,
    LIST,
    MAPPING,
    SEGMENT,
    UPDATE,
    UPLOAD,
    Server,
    start_server,
)

EMAILS = [f"buyer.{i}@example.com" for i in range(40)]
IDFA = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
GOOD = "\n".join(EMAILS[:20]).encode()
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def envelope(r: httpx.Response) -> dict[str, Any]:
    """An answer that reached API logic: HTTP 200 and exactly TikTok's envelope."""
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"code", "message", "request_id", "data"}, body
    assert isinstance(body["request_id"], str) and body["request_id"]
    if body["code"] == 0:
        assert body["message"] == "OK"
    else:
        assert body["data"] == {}, body
    return body  # type: ignore[no-any-return]


def expect(body: dict[str, Any], code: int, *words: str) -> None:
    """``code`` and a message mentioning every one of ``words`` (case-insensitive)."""
    assert body["code"] == code, body
    message = body["message"].lower()
    for word in words:  # "a|b": either will do
        assert any(w.lower() in message for w in word.split("|")), (word, body["message"])


# One client for the module: ``httpx.request`` builds a new one (and an SSL context) every call.
HTTP = httpx.Client(timeout=60)


def raw(server: Server, method: str, path: str, headers: dict[str, str], **kw: Any) -> dict:
    return envelope(HTTP.request(method, server.api + path, headers=headers, **kw))


def call(server: Server, method: str, path: str, token: str, **kw: Any) -> dict[str, Any]:
    return raw(server, method, path, {"Access-Token": token}, **kw)


@pytest.fixture
def logs(server: Server, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]):
    """Every log record at DEBUG (uvicorn's loggers do not propagate, so they get the handler
    too); afterwards, no error was logged and nothing printed a traceback."""
    caplog.set_level(logging.DEBUG)
    saved = []
    for name in UVICORN_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:]))
        logger.handlers = [caplog.handler]
    yield caplog
    server.wait_jobs()  # a job's failure belongs to the test that started it
    for logger, handlers in saved:
        logger.handlers = handlers
    records = [r for when in ("setup", "call") for r in caplog.get_records(when)]
    bad = [
        r
        for r in records
        if r.levelno >= logging.ERROR
        or r.exc_info
        or (r.name.startswith("likewise") and r.levelno >= logging.WARNING)  # e.g. a failed job
    ]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]
    assert not any("Traceback" in r.getMessage() for r in records)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, err[-2000:]
    # Whatever was refused, nothing raw is left behind half-received.
    assert list((server.data_dir / "tmp").iterdir()) == []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module (bad input changes nothing others see), with users to match."""
    for running in start_server(
        tmp_path_factory.mktemp("bad-input") / "data", min_audience_size=10
    ):
        import_users(
            running.runtime.graph,
            pa.table({"user_id": [f"u{i}" for i in range(40)], "email": EMAILS}),
        )
        yield running
    HTTP.close()


@pytest.fixture
def acct(server: Server, logs: pytest.LogCaptureFixture) -> tuple[str, str]:
    """A fresh advertiser ``(advertiser_id, token)`` for each test."""
    return new_advertiser(server)


def new_advertiser(server: Server, name: str = "Acme") -> tuple[str, str]:
    r = HTTP.post(
        server.url + "/admin/v1/advertisers",
        headers={"X-Admin-Token": ADMIN_TOKEN},
        json={"name": name},
    )
    data = r.json()["data"]
    return data["advertiser_id"], data["access_token"]


def upload(server: Server, acct: tuple[str, str], content: bytes, **kw: Any) -> dict[str, Any]:
    return send_file(server, *acct, content, **kw)


def send_file(
    server: Server,
    advertiser_id: str,
    token: str,
    content: bytes,
    *,
    calculate_type: str = "EMAIL_SHA256",
    filename: str = "customers.csv",
    signature: str | None = None,
) -> dict[str, Any]:
    fields = {
        "advertiser_id": advertiser_id,
        "calculate_type": calculate_type,
        "file_signature": signature or hashlib.md5(content).hexdigest(),
    }
    return call(server, "POST", UPLOAD, token, data=fields, files={"file": (filename, content)})


def file_path(server: Server, acct: tuple[str, str], content: bytes = GOOD, **kw: Any) -> str:
    body = upload(server, acct, content, **kw)
    assert body["code"] == 0, body
    return str(body["data"]["file_path"])


def create(
    server: Server, acct: tuple[str, str], paths: list[str], **fields: Any
) -> dict[str, Any]:
    payload = {
        "advertiser_id": acct[0],
        "custom_audience_name": "Buyers",
        "calculate_type": "EMAIL_SHA256",
        "file_paths": paths,
        **fields,
    }
    return call(server, "POST", CREATE, acct[1], json=payload)


def audience(server: Server, acct: tuple[str, str], content: bytes, **kw: Any) -> dict[str, Any]:
    """Upload, create and calculate; ``get`` of the audience (details and history)."""
    calculate_type = kw.get("calculate_type", "EMAIL_SHA256")
    created = create(
        server, acct, [file_path(server, acct, content, **kw)], calculate_type=calculate_type
    )
    assert created["code"] == 0, created
    server.wait_jobs()
    return get(server, acct, created["data"]["custom_audience_id"])


def get(server: Server, acct: tuple[str, str], audience_id: str) -> dict[str, Any]:
    got = call(
        server,
        "GET",
        GET,
        acct[1],
        params={"advertiser_id": acct[0], "custom_audience_ids": f'["{audience_id}"]'},
    )
    assert got["code"] == 0, got
    return got["data"]["list"][0]  # type: ignore[no-any-return]


def reject_counts(msg: str) -> dict[str, int]:
    """``{"rows": .., "valid": .., "rejected": .., <reason>: ..}`` from a history message."""
    m = re.search(r"(\d+) rows, (\d+) valid, (\d+) matched(?:, (\d+) rejected \(([^)]*)\))?", msg)
    assert m, msg
    out = {"rows": int(m[1]), "valid": int(m[2]), "matched": int(m[3]), "rejected": int(m[4] or 0)}
    for part in (m[5] or "").split(", "):
        if part:
            n, reason = part.split(" ", 1)
            out[reason] = int(n)
    return out


# --- the file itself --------------------------------------------------------------------------


def test_wrong_file_signature(server: Server, acct: tuple[str, str]) -> None:
    body = upload(server, acct, GOOD, signature=hashlib.md5(b"other").hexdigest())
    expect(body, 40900, "file_signature", "md5")


@pytest.mark.parametrize("name", ["customers.xlsx", "customers.zip", "customers", "csv"])
def test_unsupported_suffix(server: Server, acct: tuple[str, str], name: str) -> None:
    body = upload(server, acct, GOOD, filename=name)
    expect(body, 40908, name, ".csv", ".txt")


def test_suffix_case_and_txt_are_accepted(server: Server, acct: tuple[str, str]) -> None:
    assert upload(server, acct, GOOD, filename="LIST.TXT")["code"] == 0
    assert upload(server, acct, GOOD, filename="list.CSV")["code"] == 0


def test_empty_file(server: Server, acct: tuple[str, str]) -> None:
    expect(upload(server, acct, b""), 40906, "empty")


def test_blank_lines_only(server: Server, acct: tuple[str, str]) -> None:
    expect(upload(server, acct, b"\n  \r\n\t\n"), 40914, "no data rows")
    expect(upload(server, acct, b"email\n\n"), 40914, "no data rows")


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02\x03garbage\x00" * 50,
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 4,  # a zip named .csv
        bytes((i * 7919 + 13) % 255 + 1 for i in range(4000)),  # no NUL byte, not UTF-8
    ],
    ids=["nul-bytes", "zip", "no-nul-not-utf8"],
)
def test_binary_garbage(server: Server, acct: tuple[str, str], content: bytes) -> None:
    body = upload(server, acct, content)
    expect(body, 40914, "not a")
    assert "text" in body["message"]


def test_line_of_100kb_among_good_lines(server: Server, acct: tuple[str, str]) -> None:
    content = "\n".join([*EMAILS[:10], "x" * 100_000 + "@example.com", *EMAILS[10:20]]).encode()
    item = audience(server, acct, content)
    counts = reject_counts(item["audience_history"][0]["msg"])
    assert counts == {"rows": 21, "valid": 20, "matched": 20, "rejected": 1, "line_too_long": 1}
    assert item["audience_details"]["cover_num"] == 20


def test_multiple_types_unknown_header(server: Server, acct: tuple[str, str]) -> None:
    content = b"email,phone_sha265\n" + GOOD.replace(b"\n", b",\n") + b","
    body = upload(server, acct, content, calculate_type="MULTIPLE_TYPES")
    expect(body, 40915, "header", "phone_sha265", "multiple_types")


def test_multiple_types_without_header_does_not_echo_data(
    server: Server, acct: tuple[str, str]
) -> None:
    body = upload(server, acct, GOOD, calculate_type="MULTIPLE_TYPES")
    expect(body, 40915, "header")
    assert "@" not in body["message"], body  # the first line is data: it is not quoted back


def test_multiple_types_header_repeated_four_times(server: Server, acct: tuple[str, str]) -> None:
    content = b"email,EMAIL,email,Email\n" + b"\n".join(
        ",".join([e, "", "", ""]).encode() for e in EMAILS[:5]
    )
    body = upload(server, acct, content, calculate_type="MULTIPLE_TYPES")
    expect(body, 40915, "'email'", "4 times", "at most 3")


def test_multiple_types_header_three_times_is_fine(server: Server, acct: tuple[str, str]) -> None:
    rows = [",".join(EMAILS[i : i + 3]) for i in range(0, 30, 3)]
    item = audience(
        server,
        acct,
        ("email,email,Email_SHA256\n" + "\n".join(rows)).encode(),
        calculate_type="MULTIPLE_TYPES",
    )
    assert reject_counts(item["audience_history"][0]["msg"])["valid"] == 10
    assert item["audience_details"]["cover_num"] == 30


@pytest.mark.parametrize("header", [b"", b"email\n", b'"Email"\n'])
def test_utf8_bom(server: Server, acct: tuple[str, str], header: bytes) -> None:
    item = audience(server, acct, b"\xef\xbb\xbf" + header + GOOD)
    counts = reject_counts(item["audience_history"][0]["msg"])
    assert counts == {"rows": 20, "valid": 20, "matched": 20, "rejected": 0}


def test_utf8_bom_multiple_types(server: Server, acct: tuple[str, str]) -> None:
    content = b"\xef\xbb\xbfEMAIL,phone\n" + b"\n".join(e.encode() + b"," for e in EMAILS[:20])
    item = audience(server, acct, content, calculate_type="MULTIPLE_TYPES")
    counts = reject_counts(item["audience_history"][0]["msg"])
    assert counts == {"rows": 20, "valid": 20, "matched": 20, "rejected": 0}


def test_crlf_line_ends(server: Server, acct: tuple[str, str]) -> None:
    hashed = "\r\n".join(sha256(e) for e in EMAILS[:20]) + "\r\n"
    item = audience(server, acct, hashed.encode())
    assert reject_counts(item["audience_history"][0]["msg"])["matched"] == 20
    multi = "email_sha256,phone\r\n" + "".join(f"{sha256(e)},\r\n" for e in EMAILS[:20])
    item = audience(server, acct, multi.encode(), calculate_type="MULTIPLE_TYPES")
    counts = reject_counts(item["audience_history"][0]["msg"])
    assert counts == {"rows": 20, "valid": 20, "matched": 20, "rejected": 0}


def test_non_utf8_lines(server: Server, acct: tuple[str, str]) -> None:
    lines = [e.encode() for e in EMAILS[:10]]
    lines[2] = "café.latin1@example.com".encode("latin-1")
    lines[6] = b"\xff\xfe\xfd"
    lines.append(b"not-an-email")  # after the unreadable lines: numbered as in the file
    body = upload(server, acct, b"\n".join(lines))
    assert body["code"] == 0, body
    stored = server.runtime.uploads.get(int(acct[0]), body["data"]["file_path"])
    assert stored.rejects["rejects"] == {"invalid_utf8": 2, "invalid_email": 1}
    assert stored.rejects["reject_lines"] == {"invalid_utf8": [3, 7], "invalid_email": [11]}
    created = create(server, acct, [body["data"]["file_path"]])
    server.wait_jobs()
    item = get(server, acct, created["data"]["custom_audience_id"])
    counts = reject_counts(item["audience_history"][0]["msg"])
    assert counts == {
        "rows": 11,
        "valid": 8,
        "matched": 8,
        "rejected": 3,
        "invalid_utf8": 2,
        "invalid_email": 1,
    }


def test_only_invalid_rows(server: Server, acct: tuple[str, str]) -> None:
    body = upload(server, acct, b"not-an-email\nalso@bad\n@example.com\n")
    expect(body, 40915, "no valid identifiers", "EMAIL_SHA256", "3 invalid_email")
    body = upload(server, acct, GOOD, calculate_type="PHONE_SHA256")
    expect(body, 40915, "no valid identifiers", "PHONE_SHA256", "20 invalid_phone")


def test_exact_counts_per_reason(server: Server, acct: tuple[str, str]) -> None:
    rows = [
        "email,phone,idfa",  # 1: header
        f"{EMAILS[0]},,",  # 2: valid
        ",+1 415 555 0100,",  # 3: valid (no such user)
        f",,{IDFA}",  # 4: valid
        "not-an-email,,",  # 5: invalid_email
        ",12,",  # 6: invalid_phone
        ",,not-a-device-id",  # 7: invalid_device_id
        f"{hashlib.md5(EMAILS[1].encode()).hexdigest()},,",  # 8: md5_not_supported_for_email
        "0123456789abcdef0123,,",  # 9: invalid_hash_length
        f"{EMAILS[2]},",  # 10: wrong_field_count
        ",,",  # 11: no_identifier
        "y" * 100_000 + ",,",  # 12: line_too_long
        None,  # 13: invalid_utf8
        "still-not-an-email,12,",  # 14: invalid_email (first reason of the row)
        f"{EMAILS[3].upper()},12,",  # 15: valid (one good identifier is enough)
    ]
    content = b"\r\n".join(b"\xffbad,," if r is None else r.encode() for r in rows)
    body = upload(server, acct, content, calculate_type="MULTIPLE_TYPES")
    assert body["code"] == 0, body
    stored = server.runtime.uploads.get(int(acct[0]), body["data"]["file_path"])
    expected = {
        "invalid_email": 2,
        "invalid_phone": 1,
        "invalid_device_id": 1,
        "md5_not_supported_for_email": 1,
        "invalid_hash_length": 1,
        "wrong_field_count": 1,
        "no_identifier": 1,
        "line_too_long": 1,
        "invalid_utf8": 1,
    }
    assert (stored.rows_total, stored.rows_valid, stored.rows_rejected) == (14, 4, 10)
    assert stored.rejects["rejects"] == expected
    assert stored.rejects["reject_lines"] == {
        "invalid_email": [5, 14],
        "invalid_phone": [6],
        "invalid_device_id": [7],
        "md5_not_supported_for_email": [8],
        "invalid_hash_length": [9],
        "wrong_field_count": [10],
        "no_identifier": [11],
        "line_too_long": [12],
        "invalid_utf8": [13],
    }
    created = create(server, acct, [body["data"]["file_path"]], calculate_type="MULTIPLE_TYPES")
    server.wait_jobs()
    item = get(server, acct, created["data"]["custom_audience_id"])
    counts = reject_counts(item["audience_history"][0]["msg"])
    assert counts == {"rows": 14, "valid": 4, "matched": 2, "rejected": 10, **expected}


def test_control_byte_line_is_rejected_not_cut_short(server: Server, acct: tuple[str, str]) -> None:
    """A \\x01 byte (the reader's internal delimiter) must not silently truncate a line."""
    content = f"{EMAILS[0]}\n{EMAILS[1]}\x01{EMAILS[2]}\n\x01{EMAILS[3]}\n{EMAILS[4]}\n".encode()
    body = upload(server, acct, content)
    assert body["code"] == 0, body
    stored = server.runtime.uploads.get(int(acct[0]), body["data"]["file_path"])
    assert (stored.rows_total, stored.rows_valid, stored.rows_rejected) == (4, 2, 2)
    assert stored.rejects["reject_lines"] == {"control_character": [2, 3]}


def test_upload_request_shape(server: Server, acct: tuple[str, str]) -> None:
    adv, token = acct
    fields = {
        "advertiser_id": adv,
        "calculate_type": "EMAIL_SHA256",
        "file_signature": hashlib.md5(GOOD).hexdigest(),
    }
    headers = {"Access-Token": token}
    # Not multipart at all.
    expect(raw(server, "POST", UPLOAD, headers, json=fields), 40002, "multipart/form-data")
    expect(raw(server, "POST", UPLOAD, headers, data=fields), 40002, "multipart/form-data")
    no_boundary = {**headers, "Content-Type": "multipart/form-data"}
    expect(raw(server, "POST", UPLOAD, no_boundary, content=b"x"), 40002, "multipart")
    # Multipart without the file part, or with two.
    body = raw(server, "POST", UPLOAD, headers, data=fields, files={"other": ("a.csv", GOOD)})
    expect(body, 40002, "file is required")
    two = [("file", ("a.csv", GOOD)), ("file", ("b.csv", GOOD))]
    expect(raw(server, "POST", UPLOAD, headers, data=fields, files=two), 40002, "one file")
    # Missing or wrong form fields.
    for missing in fields:
        partial = {k: v for k, v in fields.items() if k != missing}
        body = raw(server, "POST", UPLOAD, headers, data=partial, files={"file": ("a.csv", GOOD)})
        expect(body, 40002, missing, "required")
    body = raw(
        server,
        "POST",
        UPLOAD,
        headers,
        data={**fields, "calculate_type": "SHA1"},
        files={"file": ("a.csv", GOOD)},
    )
    expect(body, 40002, "calculate_type", "SHA1", "EMAIL_SHA256")
    # A garbled multipart body.
    garbled = {**headers, "Content-Type": "multipart/form-data; boundary=XyZ"}
    expect(raw(server, "POST", UPLOAD, garbled, content=b"garbage\r\n"), 40002, "multipart")


def _multipart(adv: str, file_header: bytes, data: bytes, *, close: bool) -> bytes:
    parts = b"".join(
        b'--XyZ\r\nContent-Disposition: form-data; name="' + k + b'"\r\n\r\n' + v + b"\r\n"
        for k, v in (
            (b"advertiser_id", adv.encode()),
            (b"calculate_type", b"EMAIL_SHA256"),
            (b"file_signature", hashlib.md5(data).hexdigest().encode()),
        )
    )
    body = parts + b"--XyZ\r\nContent-Disposition: form-data; " + file_header + b"\r\n\r\n" + data
    return body + b"\r\n--XyZ--\r\n" if close else body


def test_truncated_multipart_leaves_nothing(server: Server, acct: tuple[str, str]) -> None:
    headers = {"Access-Token": acct[1], "Content-Type": "multipart/form-data; boundary=XyZ"}
    content = _multipart(acct[0], b'name="file"; filename="a.csv"', GOOD, close=False)
    body = raw(server, "POST", UPLOAD, headers, content=content)
    expect(body, 40002, "multipart", "file part")
    # (the ``logs`` fixture checks that tmp/ holds nothing afterwards)


def test_file_part_without_filename(server: Server, acct: tuple[str, str]) -> None:
    headers = {"Access-Token": acct[1], "Content-Type": "multipart/form-data; boundary=XyZ"}
    content = _multipart(acct[0], b'name="file"', GOOD * 5000, close=True)  # > 64 KB
    expect(raw(server, "POST", UPLOAD, headers, content=content), 40908, "no filename", ".csv")


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path / "small", min_audience_size=10, max_upload_bytes=2048)


def test_upload_larger_than_limit(small_server: Server, logs: pytest.LogCaptureFixture) -> None:
    adv, token = new_advertiser(small_server)
    big = b"\n".join(e.encode() for e in EMAILS) * 10  # ~9 KB
    expect(send_file(small_server, adv, token, big), 40907, "larger than", "2048")
    huge = big * 300  # ~2.7 MB: refused while streaming
    expect(send_file(small_server, adv, token, huge), 40907, "2048")
    assert send_file(small_server, adv, token, GOOD[:2000])["code"] == 0
    assert list((small_server.data_dir / "tmp").iterdir()) == []


# --- create / update / delete -----------------------------------------------------------------


def test_create_bad_file_paths(server: Server, acct: tuple[str, str]) -> None:
    fp = file_path(server, acct)
    expect(create(server, acct, ["a" * 16]), 40007, "a" * 16, "does not exist")
    expect(create(server, acct, ["abc"]), 40002, "file_paths", "16")
    expect(create(server, acct, [fp + "x"]), 40002, "file_paths", "16")
    expect(create(server, acct, []), 40002, "file_paths")
    expect(create(server, acct, [fp, fp]), 40002, "file_paths", "twice")
    body = create(server, acct, [fp], calculate_type="PHONE_SHA256")
    expect(body, 40002, "calculate_type", "EMAIL_SHA256", "PHONE_SHA256")
    expect(create(server, acct, [fp], calculate_type="MAID_MD4"), 40002, "calculate_type")
    body = create(server, acct, [fp], calculate_type=None)
    expect(body, 40002, "calculate_type")
    body = call(server, "POST", CREATE, acct[1], json={"advertiser_id": acct[0]})
    expect(body, 40002, "required")


def test_maid_alias_upload_can_be_used_by_create(server: Server, acct: tuple[str, str]) -> None:
    fp = file_path(server, acct, IDFA.encode(), calculate_type="MAID_SHA256")
    assert create(server, acct, [fp], calculate_type="FIRST_SHA256")["code"] == 0


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", ["custom_audience_name", "at least 1|1 to 128"]),
        ("n" * 129, ["custom_audience_name", "at most 128|1 to 128"]),
        ("   ", ["custom_audience_name", "empty"]),
    ],
    ids=["0", "129", "blank"],
)
def test_names(server: Server, acct: tuple[str, str], name: str, words: list[str]) -> None:
    fp = file_path(server, acct)
    expect(create(server, acct, [fp], custom_audience_name=name), 40002, *words)
    created = create(server, acct, [fp], custom_audience_name="n" * 128)
    assert created["code"] == 0, created
    server.wait_jobs()
    audience_id = created["data"]["custom_audience_id"]
    assert get(server, acct, audience_id)["audience_details"]["name"] == "n" * 128
    body = call(
        server,
        "POST",
        UPDATE,
        acct[1],
        json={
            "advertiser_id": acct[0],
            "custom_audience_id": audience_id,
            "custom_audience_name": name,
        },
    )
    expect(body, 40002, *words)


@pytest.mark.parametrize("days", [0, 366, -1, "soon"])
def test_retention_in_days(server: Server, acct: tuple[str, str], days: Any) -> None:
    fp = file_path(server, acct)
    expect(create(server, acct, [fp], retention_in_days=days), 40002, "retention_in_days")
    for ok in (1, 365):
        assert create(server, acct, [fp], retention_in_days=ok)["code"] == 0


def test_update_bad_input(server: Server, acct: tuple[str, str]) -> None:
    adv, token = acct
    created = create(server, acct, [file_path(server, acct)])
    server.wait_jobs()
    audience_id = created["data"]["custom_audience_id"]

    def update(**fields: Any) -> dict[str, Any]:
        return call(
            server,
            "POST",
            UPDATE,
            token,
            json={"advertiser_id": adv, "custom_audience_id": audience_id, **fields},
        )

    expect(update(), 40002, "nothing to update")
    expect(update(action="APPEND"), 40002, "nothing to update")
    expect(
        update(custom_audience_id="6000000000000099999", custom_audience_name="x"),
        40007,
        "6000000000000099999",
        "does not exist",
    )
    expect(update(custom_audience_id="abc", custom_audience_name="x"), 40002, "custom_audience_id")
    expect(update(file_paths=["short"]), 40002, "file_paths", "16")
    expect(update(file_paths=["b" * 16]), 40007, "b" * 16)
    expect(update(file_paths=[file_path(server, acct)], action="MERGE"), 40002, "action")
    expect(update(audience_sub_type="NORMAL"), 40002, "audience_sub_type", "REACH_FREQUENCY")
    phone = file_path(server, acct, b"+14155550100\n", calculate_type="PHONE_SHA256")
    expect(update(file_paths=[phone]), 40002, "calculate_type", "PHONE_SHA256")
    small = file_path(server, acct, "\n".join(EMAILS[:3]).encode())
    expect(update(file_paths=[small]), 40002, "fewer than 10")
    assert update(custom_audience_name="Renamed")["code"] == 0
    assert get(server, acct, audience_id)["audience_details"]["cover_num"] == 20


def test_update_while_calculating(server: Server, acct: tuple[str, str]) -> None:
    """The match job is held until the update has been refused: deterministic."""
    jobs = server.runtime.jobs
    gate = threading.Event()
    original = jobs.handlers["MATCH_FILES"]

    def held(job: Any) -> None:
        assert gate.wait(30)
        original(job)

    jobs.handlers["MATCH_FILES"] = held
    try:
        created = create(server, acct, [file_path(server, acct)])
        audience_id = created["data"]["custom_audience_id"]
        item = get(server, acct, audience_id)
        assert item["audience_details"]["is_valid"] is False
        assert "calculated" in item["audience_details"]["msg"]
        body = call(
            server,
            "POST",
            UPDATE,
            acct[1],
            json={
                "advertiser_id": acct[0],
                "custom_audience_id": audience_id,
                "file_paths": [file_path(server, acct)],
                "action": "APPEND",
            },
        )
        expect(body, 40002, "still being calculated")
    finally:
        gate.set()
        jobs.handlers["MATCH_FILES"] = original
    server.wait_jobs()
    assert get(server, acct, audience_id)["audience_details"]["cover_num"] == 20


def test_delete_get_list_bad_input(server: Server, acct: tuple[str, str]) -> None:
    adv, token = acct

    def delete(ids: Any) -> dict[str, Any]:
        return call(
            server, "POST", DELETE, token, json={"advertiser_id": adv, "custom_audience_ids": ids}
        )

    expect(delete([]), 40002, "custom_audience_ids", "at least 1|1 to 100")
    expect(delete(["1"] * 101), 40011, "custom_audience_ids", "100")  # TooManyIds
    expect(delete("6000000000000000001"), 40002, "custom_audience_ids")
    expect(delete(["x1"]), 40002, "custom_audience_ids")
    expect(delete(["6000000000000099999"]), 40007, "6000000000000099999", "does not exist")

    def read(path: str, **params: str) -> dict[str, Any]:
        return call(server, "GET", path, token, params=params)

    expect(read(GET, advertiser_id=adv), 40002, "custom_audience_ids", "required")
    expect(read(GET, advertiser_id=adv, custom_audience_ids="[1,"), 40002, "JSON array")
    expect(
        read(GET, advertiser_id=adv, custom_audience_ids='{"a": 1}'), 40002, "custom_audience_ids"
    )
    expect(
        read(GET, advertiser_id=adv, custom_audience_ids='["6000000000000099999"]'),
        40007,
        "does not exist",
    )
    expect(read(GET, custom_audience_ids='["1"]'), 40002, "advertiser_id", "required")
    expect(read(LIST, advertiser_id=adv, page="0"), 40002, "page")
    expect(read(LIST, advertiser_id=adv, page_size="101"), 40002, "page_size")
    expect(read(LIST, advertiser_id=adv, page="two"), 40002, "page")
    expect(read(LIST, advertiser_id="not-a-number"), 40002, "advertiser_id")


def test_ids_out_of_bigint_range(server: Server) -> None:
    adv, token = server.advertiser()
    body = call(
        server,
        "GET",
        GET,
        token,
        params={"advertiser_id": adv, "custom_audience_ids": '["9999999999999999999"]'},
    )
    assert body["code"] == 40002 and "custom_audience_ids" in body["message"], body
    body = call(server, "GET", LIST, token, params={"advertiser_id": adv, "page": "9" * 20})
    assert body["code"] == 40002 and "page" in body["message"], body


# --- malformed JSON, tokens -------------------------------------------------------------------

JSON_ENDPOINTS = [CREATE, UPDATE, DELETE, SEGMENT, MAPPING]


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{not json", ["not valid JSON"]),
        (b'{"advertiser_id": "1",', ["not valid JSON"]),
        (b"\xff\xfe{}", ["not valid JSON"]),
        (b"[1, 2]", ["JSON object"]),
        (b'"text"', ["JSON object"]),
        (b"null", ["JSON object"]),
        (b"[" * 10_000 + b"]" * 10_000, ["JSON"]),
        (b"{}", ["advertiser_id", "required"]),
    ],
    ids=["broken", "unterminated", "not-utf8", "array", "string", "null", "deep", "empty-object"],
)
def test_malformed_json(
    server: Server, acct: tuple[str, str], path: str, content: bytes, words: list[str]
) -> None:
    headers = {"Access-Token": acct[1], "Content-Type": "application/json"}
    expect(raw(server, "POST", path, headers, content=content), 40002, *words)


def test_wrong_json_types(server: Server, acct: tuple[str, str]) -> None:
    adv, token = acct
    cases = [
        (
            CREATE,
            {
                "advertiser_id": adv,
                "custom_audience_name": 5,
                "calculate_type": "EMAIL_SHA256",
                "file_paths": ["a" * 16],
            },
            "custom_audience_name",
        ),
        (
            CREATE,
            {
                "advertiser_id": adv,
                "custom_audience_name": "x",
                "calculate_type": "EMAIL_SHA256",
                "file_paths": "a" * 16,
            },
            "file_paths",
        ),
        (
            CREATE,
            {
                "advertiser_id": [adv],
                "custom_audience_name": "x",
                "calculate_type": "EMAIL_SHA256",
                "file_paths": ["a" * 16],
            },
            "advertiser_id",
        ),
        (DELETE, {"advertiser_id": adv, "custom_audience_ids": [{"id": 1}]}, "custom_audience_ids"),
        (SEGMENT, {"advertiser_id": adv, "action": "rename"}, "action"),
        (SEGMENT, {"advertiser_id": adv, "action": "delete"}, "delete_audience_id"),
        (SEGMENT, {"advertiser_id": adv}, "custom_audience_name"),
        (
            MAPPING,
            {"advertiser_ids": [adv], "id_schema": ["SHA1"], "batch_data": [[{}]]},
            "id_schema",
        ),
        (
            MAPPING,
            {
                "advertiser_ids": [adv],
                "id_schema": ["EMAIL_SHA256", "email_sha256"],
                "batch_data": [[{}]],
            },
            "id_schema",
        ),
        (
            MAPPING,
            {"advertiser_ids": [adv], "id_schema": ["EMAIL_SHA256"], "batch_data": []},
            "batch_data",
        ),
        (
            MAPPING,
            {"advertiser_ids": [adv], "id_schema": ["EMAIL_SHA256"], "batch_data": [[{}, {}]]},
            "batch_data[0]",
        ),
        (
            MAPPING,
            {
                "advertiser_ids": [adv],
                "id_schema": ["EMAIL_SHA256"],
                "batch_data": [[{"id": "", "audience_ids": ["1"]}]],
            },
            "id",
        ),
        (
            MAPPING,
            {
                "advertiser_ids": [adv],
                "id_schema": ["EMAIL_SHA256"],
                "batch_data": [[{"id": sha256("a@b.co"), "audience_ids": []}]],
            },
            "audience_ids",
        ),
        (
            MAPPING,
            {
                "advertiser_ids": [adv],
                "id_schema": ["EMAIL_SHA256"],
                "batch_data": [[{"id": sha256("a@b.co"), "audience_ids": ["x"]}]],
            },
            "audience_ids",
        ),
    ]
    for path, payload, word in cases:
        expect(call(server, "POST", path, token, json=payload), 40002, word)
    unhashed = {
        "advertiser_ids": [adv],
        "id_schema": ["EMAIL_SHA256"],
        "batch_data": [[{"id": "someone@example.com", "audience_ids": ["1"]}]],
    }
    body = call(server, "POST", MAPPING, token, json=unhashed)
    expect(body, 40062, "batch_data[0][0].id", "SHA-256", "hashed")
    assert "someone" not in body["message"]


def _api_endpoints(server: Server) -> list[tuple[str, str]]:
    paths = create_app(runtime=server.runtime).openapi()["paths"]
    return sorted(
        (method.upper(), path.removeprefix("/open_api/v1.3"))
        for path, ops in paths.items()
        if path.startswith("/open_api/v1.3/")
        for method in ops
    )


# A well-formed request per known endpoint, so that only the token or the advertiser is wrong.
VALID_BODIES: dict[str, dict[str, Any]] = {
    CREATE: {
        "custom_audience_name": "x",
        "calculate_type": "EMAIL_SHA256",
        "file_paths": ["a" * 16],
    },
    UPDATE: {"custom_audience_id": "6000000000000000001", "custom_audience_name": "x"},
    DELETE: {"custom_audience_ids": ["6000000000000000001"]},
    SEGMENT: {"custom_audience_name": "x"},
    MAPPING: {"id_schema": ["EMAIL_SHA256"], "batch_data": [[{}]]},
}


def _request_kwargs(method: str, path: str, adv: str) -> dict[str, Any]:
    if path == UPLOAD:
        return {
            "data": {
                "advertiser_id": adv,
                "calculate_type": "EMAIL_SHA256",
                "file_signature": hashlib.md5(GOOD).hexdigest(),
            },
            "files": {"file": ("a.csv", GOOD)},
        }
    if method == "GET":
        return {
            "params": {
                "advertiser_id": adv,
                "advertiser_ids": f'["{adv}"]',
                "custom_audience_ids": '["6000000000000000001"]',
            }
        }
    return {"json": {"advertiser_id": adv, "advertiser_ids": [adv], **VALID_BODIES.get(path, {})}}


def test_access_token_on_every_endpoint(server: Server, acct: tuple[str, str]) -> None:
    adv, _token = acct
    endpoints = _api_endpoints(server)
    assert {(m, p) for m, p in endpoints} >= {
        ("POST", UPLOAD),
        ("POST", CREATE),
        ("POST", UPDATE),
        ("POST", DELETE),
        ("GET", LIST),
        ("GET", GET),
        ("POST", SEGMENT),
        ("POST", MAPPING),
        ("GET", "/advertiser/info/"),
        ("GET", "/user/info/"),
        ("GET", "/oauth2/advertiser/get/"),
    }
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 40104, "Access-Token"),
        ({"Access-Token": ""}, 40104, "Access-Token"),
        ({"Authorization": "Bearer " + acct[1]}, 40104, "Access-Token"),
        ({"Access-Token": "0" * 40}, 40105, "invalid"),
        ({"Access-Token": acct[1][:-1]}, 40105, "invalid"),
        ({"Access-Token": "x" * 5000}, 40105, "invalid"),
    ]
    for method, path in endpoints:
        for variant in (path, path.rstrip("/")):
            for headers, code, word in cases:
                body = raw(server, method, variant, headers, **_request_kwargs(method, path, adv))
                assert body["code"] == code, (method, variant, headers.keys(), body)
                assert word.lower() in body["message"].lower(), body
    assert call(server, "GET", "/user/info/", acct[1])["code"] == 0
    # A revoked token is refused like an unknown one.
    with server.runtime.db.session() as s:
        row = s.execute(
            select(AccessToken).where(AccessToken.token_sha256 == token_digest(acct[1]))
        ).scalar_one()
        row.revoked = True
    for method, path in endpoints:
        body = raw(
            server, method, path, {"Access-Token": acct[1]}, **_request_kwargs(method, path, adv)
        )
        expect(body, 40105, "invalid")


def test_token_of_another_advertiser(server: Server, acct: tuple[str, str]) -> None:
    other, _ = new_advertiser(server, "Other")
    known = {UPLOAD, CREATE, UPDATE, DELETE, GET, LIST, SEGMENT, MAPPING, "/advertiser/info/"}
    for method, path in _api_endpoints(server):
        if path not in known:
            continue  # user/info and oauth2/advertiser/get take no advertiser_id
        body = raw(
            server,
            method,
            path,
            {"Access-Token": acct[1]},
            **_request_kwargs(method, path, other),
        )
        expect(body, 40001, other)


def test_phone_with_international_prefix_is_a_number_not_a_hash(server: Server) -> None:
    """``011 49 …`` (US exit code + German mobile) is 16 digits: a phone, not a bad hash."""
    from likewise.ingest.users import import_users

    import_users(
        server.runtime.graph,
        pa.table({"user_id": ["intl"], "phone": ["0151 23456789"], "country": ["DE"]}),
    )
    adv, token = server.advertiser()
    content = b"0114915123456789\n"
    body = server.upload(token, adv, content, calculate_type="PHONE_SHA256")
    assert body["code"] == 0, body
    upload = server.runtime.uploads.get(int(adv), body["data"]["file_path"])
    assert upload.rows_valid == 1 and upload.rows_rejected == 0
