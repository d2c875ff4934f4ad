"""Tenants are isolated: advertiser B can never read or change advertiser A's objects, through
any endpoint, and cannot even tell A's objects from ones that do not exist."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pytest

from likewise.ingest.users import import_users
from likewise.store.models import Audience
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

ADVERTISER_INFO = "/advertiser/info/"
USER_INFO = "/user/info/"
OAUTH2_ADVERTISERS = "/oauth2/advertiser/get/"

EMAILS = [f"member.{i}@example.com" for i in range(60)]
MISSING_AUDIENCE = "6000000000000999999"
MISSING_FILE = "zzzzzzzzzzzzzzzz"

HTTP = httpx.Client(timeout=60)  # one client: httpx.request builds a new one per call


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def call(server: Server, method: str, path: str, token: str, **kw: Any) -> dict[str, Any]:
    r = HTTP.request(method, server.api + path, headers={"Access-Token": token}, **kw)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"code", "message", "request_id", "data"}, body
    if body["code"] != 0:
        assert body["data"] == {}, body  # an error never carries data
    return body  # type: ignore[no-any-return]


def new_advertiser(server: Server, name: str) -> tuple[str, str]:
    r = HTTP.post(
        server.url + "/admin/v1/advertisers",
        headers={"X-Admin-Token": ADMIN_TOKEN},
        json={"name": name},
    )
    data = r.json()["data"]
    return data["advertiser_id"], data["access_token"]


def upload_fields(advertiser_id: str, content: bytes) -> dict[str, Any]:
    return {
        "data": {
            "advertiser_id": advertiser_id,
            "calculate_type": "EMAIL_SHA256",
            "file_signature": hashlib.md5(content).hexdigest(),
        },
        "files": {"file": ("customers.csv", content)},
    }


@dataclass
class Tenant:
    adv: str
    token: str
    file_path: str
    audience: str  # customer file audience
    segment: str  # streaming segment audience


@dataclass
class World:
    server: Server
    a: Tenant
    b: Tenant


def _tenant(server: Server, name: str, emails: list[str]) -> Tenant:
    adv, token = new_advertiser(server, name)
    content = "\n".join(emails).encode()
    body = call(server, "POST", UPLOAD, token, **upload_fields(adv, content))
    assert body["code"] == 0, body
    file_path = body["data"]["file_path"]
    created = call(
        server,
        "POST",
        CREATE,
        token,
        json={
            "advertiser_id": adv,
            "custom_audience_name": f"{name} buyers",
            "calculate_type": "EMAIL_SHA256",
            "file_paths": [file_path],
        },
    )
    assert created["code"] == 0, created
    segment = call(
        server, "POST", SEGMENT, token, json={"advertiser_id": adv, "custom_audience_name": name}
    )
    assert segment["code"] == 0, segment
    tenant = Tenant(
        adv, token, file_path, created["data"]["custom_audience_id"], segment["data"]["audience_id"]
    )
    # Not while the match job runs: a request and a job opening the platform graph at once can
    # fail in DuckDB (likewise/store/graph.py opens one connection per operation).
    server.wait_jobs()
    mapped = call(server, "POST", MAPPING, token, json=mapping(tenant.adv, tenant.segment, emails))
    assert mapped["code"] == 0, mapped
    return tenant


def mapping(advertiser_id: str | list[str], segment: str, emails: list[str], action: str = "add"):
    ids = advertiser_id if isinstance(advertiser_id, list) else [advertiser_id]
    return {
        "advertiser_ids": ids,
        "action": action,
        "id_schema": ["EMAIL_SHA256"],
        "batch_data": [[{"id": sha256(e), "audience_ids": [segment]}] for e in emails],
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for server in start_server(tmp_path_factory.mktemp("tenancy") / "data", min_audience_size=10):
        import_users(
            server.runtime.graph,
            pa.table({"user_id": [f"u{i}" for i in range(60)], "email": EMAILS}),
        )
        a = _tenant(server, "Alpha", EMAILS[:30])
        b = _tenant(server, "Beta", EMAILS[30:])
        server.wait_jobs()
        yield World(server, a, b)
    HTTP.close()


def state(world: World, t: Tenant) -> dict[str, Any]:
    """Everything the owner can see of its objects, plus what lies behind them on disk."""
    server = world.server
    ids = f'["{t.audience}", "{t.segment}"]'
    got = call(
        server, "GET", GET, t.token, params={"advertiser_id": t.adv, "custom_audience_ids": ids}
    )
    listed = call(server, "GET", LIST, t.token, params={"advertiser_id": t.adv, "page_size": 100})
    info = call(server, "GET", ADVERTISER_INFO, t.token, params={"advertiser_ids": f'["{t.adv}"]'})
    upload = server.runtime.uploads.get(int(t.adv), t.file_path)
    keys = server.runtime.uploads.keys_path(upload)
    members = {}
    for audience_id in (t.audience, t.segment):
        with server.runtime.db.session() as s:
            row = s.get(Audience, int(audience_id))
            assert row is not None
            members[audience_id] = (row.version, row.deleted, row.name, row.status)
        members[audience_id] += (list(server.runtime.audiences.members(row.id, row.version)),)
    with server.runtime.graph.connect() as con:
        segment_keys = con.execute(
            "SELECT count(*), sum(k::DOUBLE) FROM segment_keys WHERE audience_id = ?",
            [int(t.segment)],
        ).fetchone()
    return {
        "get": got["data"],
        "list": listed["data"],
        "info": info["data"],
        "upload": (upload.rows_total, upload.rows_valid, upload.md5, upload.keys_file),
        "keys": hashlib.sha256(keys.read_bytes()).hexdigest(),
        "members": members,
        "segment_keys": segment_keys,
    }


@pytest.fixture
def checked(
    world: World, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> Iterator[World]:
    """The world; afterwards A and B are exactly as before, nothing crashed and tmp/ is empty."""
    caplog.set_level(logging.DEBUG)
    before = {"a": state(world, world.a), "b": state(world, world.b)}
    yield world
    world.server.wait_jobs()
    assert state(world, world.a) == before["a"]
    assert state(world, world.b) == before["b"]
    records = [r for when in ("setup", "call") for r in caplog.get_records(when)]
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    assert not [
        r for r in records if r.name.startswith("likewise") and r.levelno >= logging.WARNING
    ]
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert list((world.server.data_dir / "tmp").iterdir()) == []


def not_found(body: dict[str, Any], *, mine: str, missing: str, body_for_missing: dict) -> None:
    """40007, worded exactly as for an object that does not exist at all (no oracle)."""
    assert body["code"] == 40007, body
    assert body_for_missing["code"] == 40007, body_for_missing
    assert body["message"].replace(mine, "<id>") == body_for_missing["message"].replace(
        missing, "<id>"
    )


# --- B's token naming A's advertiser_id: 40001 everywhere ------------------------------------


def test_token_for_another_advertiser(checked: World) -> None:
    server, a, b = checked.server, checked.a, checked.b
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", UPLOAD, upload_fields(a.adv, b"member.31@example.com\n")),
        (
            "POST",
            CREATE,
            {
                "json": {
                    "advertiser_id": a.adv,
                    "custom_audience_name": "x",
                    "calculate_type": "EMAIL_SHA256",
                    "file_paths": [a.file_path],
                }
            },
        ),
        (
            "POST",
            UPDATE,
            {
                "json": {
                    "advertiser_id": a.adv,
                    "custom_audience_id": a.audience,
                    "custom_audience_name": "taken over",
                }
            },
        ),
        ("POST", DELETE, {"json": {"advertiser_id": a.adv, "custom_audience_ids": [a.audience]}}),
        (
            "GET",
            GET,
            {"params": {"advertiser_id": a.adv, "custom_audience_ids": f'["{a.audience}"]'}},
        ),
        ("GET", LIST, {"params": {"advertiser_id": a.adv}}),
        ("POST", SEGMENT, {"json": {"advertiser_id": a.adv, "custom_audience_name": "x"}}),
        (
            "POST",
            SEGMENT,
            {"json": {"advertiser_id": a.adv, "action": "delete", "delete_audience_id": a.segment}},
        ),
        ("POST", MAPPING, {"json": mapping(a.adv, a.segment, EMAILS[30:35])}),
        ("POST", MAPPING, {"json": mapping([b.adv, a.adv], a.segment, EMAILS[30:35])}),
        ("POST", MAPPING, {"json": mapping(a.adv, a.segment, EMAILS[:5], "delete")}),
        ("GET", ADVERTISER_INFO, {"params": {"advertiser_ids": f'["{a.adv}"]'}}),
        ("GET", ADVERTISER_INFO, {"params": {"advertiser_ids": f'["{b.adv}", "{a.adv}"]'}}),
    ]
    for method, path, kw in requests:
        for variant in (path, path.rstrip("/")):
            body = call(server, method, variant, b.token, **kw)
            assert body["code"] == 40001, (method, variant, body)
            assert a.adv in body["message"] and "permission" in body["message"], body


# --- A's file_path ---------------------------------------------------------------------------


def test_file_path_of_another_advertiser(checked: World) -> None:
    server, a, b = checked.server, checked.a, checked.b

    def create(paths: list[str], calculate_type: str = "EMAIL_SHA256") -> dict[str, Any]:
        return call(
            server,
            "POST",
            CREATE,
            b.token,
            json={
                "advertiser_id": b.adv,
                "custom_audience_name": "borrowed",
                "calculate_type": calculate_type,
                "file_paths": paths,
            },
        )

    missing = create([MISSING_FILE])
    not_found(
        create([a.file_path]), mine=a.file_path, missing=MISSING_FILE, body_for_missing=missing
    )
    # The type check must not answer first: that would reveal that the path exists.
    not_found(
        create([a.file_path], "PHONE_SHA256"),
        mine=a.file_path,
        missing=MISSING_FILE,
        body_for_missing=create([MISSING_FILE], "PHONE_SHA256"),
    )
    # Mixed with B's own file: still refused, nothing created.
    body = create([b.file_path, a.file_path])
    assert body["code"] == 40007 and a.file_path in body["message"], body
    for action in ("APPEND", "REMOVE", "REPLACE"):
        body = call(
            server,
            "POST",
            UPDATE,
            b.token,
            json={
                "advertiser_id": b.adv,
                "custom_audience_id": b.audience,
                "file_paths": [a.file_path],
                "action": action,
            },
        )
        assert body["code"] == 40007 and a.file_path in body["message"], body
    listed = call(server, "GET", LIST, b.token, params={"advertiser_id": b.adv, "page_size": 100})
    assert {x["audience_id"] for x in listed["data"]["list"]} == {b.audience, b.segment}


# --- A's audiences ---------------------------------------------------------------------------


def test_audience_of_another_advertiser(checked: World) -> None:
    server, a, b = checked.server, checked.a, checked.b

    def get(ids: list[str]) -> dict[str, Any]:
        text = "[" + ", ".join(f'"{i}"' for i in ids) + "]"
        return call(
            server,
            "GET",
            GET,
            b.token,
            params={"advertiser_id": b.adv, "custom_audience_ids": text},
        )

    def update(audience_id: str, **fields: Any) -> dict[str, Any]:
        payload = {"advertiser_id": b.adv, "custom_audience_id": audience_id, **fields}
        return call(server, "POST", UPDATE, b.token, json=payload)

    def delete(ids: list[str]) -> dict[str, Any]:
        payload = {"advertiser_id": b.adv, "custom_audience_ids": ids}
        return call(server, "POST", DELETE, b.token, json=payload)

    def segment_delete(audience_id: str) -> dict[str, Any]:
        payload = {"advertiser_id": b.adv, "action": "delete", "delete_audience_id": audience_id}
        return call(server, "POST", SEGMENT, b.token, json=payload)

    for theirs in (a.audience, a.segment):
        for attempt in (
            lambda i: get([i]),
            lambda i: get([b.audience, i]),  # no partial answer either
            lambda i: update(i, custom_audience_name="taken over"),
            lambda i: update(i, audience_sub_type="REACH_FREQUENCY"),
            lambda i: update(i, file_paths=[b.file_path], action="APPEND"),
            lambda i: delete([i]),
            lambda i: delete([b.audience, i]),  # all or nothing: B's own survives too
            segment_delete,
        ):
            not_found(
                attempt(theirs),
                mine=theirs,
                missing=MISSING_AUDIENCE,
                body_for_missing=attempt(MISSING_AUDIENCE),
            )


def test_list_never_shows_another_advertisers_audiences(checked: World) -> None:
    server, a, b = checked.server, checked.a, checked.b
    for page_size in (1, 10, 100):
        seen: set[str] = set()
        page = 1
        while True:
            body = call(
                server,
                "GET",
                LIST,
                b.token,
                params={"advertiser_id": b.adv, "page": page, "page_size": page_size},
            )
            assert body["code"] == 0, body
            seen |= {x["audience_id"] for x in body["data"]["list"]}
            assert all(x["owner_id"] == b.adv for x in body["data"]["list"])
            if page >= body["data"]["page_info"]["total_page"]:
                break
            page += 1
        assert seen == {b.audience, b.segment}
        assert body["data"]["page_info"]["total_number"] == 2
    filtered = call(
        server,
        "GET",
        LIST,
        b.token,
        params={"advertiser_id": b.adv, "custom_audience_ids": f'["{a.audience}", "{a.segment}"]'},
    )
    assert filtered["code"] == 0
    assert filtered["data"]["list"] == []
    assert filtered["data"]["page_info"]["total_number"] == 0


# --- streaming segments ----------------------------------------------------------------------


def test_segment_mapping_into_another_advertisers_audience(checked: World) -> None:
    server, a, b = checked.server, checked.a, checked.b
    for theirs in (a.segment, a.audience):  # not "not a segment": that would be an oracle
        for action, emails in (("add", EMAILS[30:40]), ("delete", EMAILS[:10])):
            attempt = mapping(b.adv, theirs, emails, action)
            missing = mapping(b.adv, MISSING_AUDIENCE, emails, action)
            not_found(
                call(server, "POST", MAPPING, b.token, json=attempt),
                mine=theirs,
                missing=MISSING_AUDIENCE,
                body_for_missing=call(server, "POST", MAPPING, b.token, json=missing),
            )
    # One user mapped into B's and A's segments at once: nothing is applied, not even to B's.
    mixed = mapping(b.adv, b.segment, EMAILS[:3])
    mixed["batch_data"] = [
        [{"id": sha256(e), "audience_ids": [b.segment, a.segment]}] for e in EMAILS[:3]
    ]
    body = call(server, "POST", MAPPING, b.token, json=mixed)
    assert body["code"] == 40007 and a.segment in body["message"], body


def test_segment_create_and_delete_stay_in_the_tenant(checked: World) -> None:
    server, a, b = checked.server, checked.a, checked.b
    created = call(
        server,
        "POST",
        SEGMENT,
        b.token,
        json={"advertiser_id": b.adv, "custom_audience_name": "tmp"},
    )
    assert created["code"] == 0, created
    new = created["data"]["audience_id"]
    # A cannot see or delete B's new segment either.
    body = call(
        server,
        "POST",
        SEGMENT,
        a.token,
        json={"advertiser_id": a.adv, "action": "delete", "delete_audience_id": new},
    )
    assert body["code"] == 40007, body
    body = call(
        server,
        "GET",
        GET,
        a.token,
        params={"advertiser_id": a.adv, "custom_audience_ids": f'["{new}"]'},
    )
    assert body["code"] == 40007, body
    body = call(
        server,
        "POST",
        SEGMENT,
        b.token,
        json={"advertiser_id": b.adv, "action": "delete", "delete_audience_id": new},
    )
    assert body["code"] == 0, body


# --- account endpoints ------------------------------------------------------------------------


def test_account_endpoints_answer_for_the_token_only(checked: World) -> None:
    server, a, b = checked.server, checked.a, checked.b
    info = call(server, "GET", ADVERTISER_INFO, b.token, params={"advertiser_ids": f'["{b.adv}"]'})
    assert [x["advertiser_id"] for x in info["data"]["list"]] == [b.adv]
    assert info["data"]["list"][0]["name"] == "Beta"
    user_a = call(server, "GET", USER_INFO, a.token)["data"]
    user_b = call(server, "GET", USER_INFO, b.token)["data"]
    assert user_a["core_user_id"] != user_b["core_user_id"]
    assert user_b["display_name"] == "Beta"
    advertisers = call(server, "GET", OAUTH2_ADVERTISERS, b.token)["data"]["list"]
    assert advertisers == [{"advertiser_id": b.adv, "advertiser_name": "Beta"}]


def test_upload_lands_in_the_callers_tenant(checked: World) -> None:
    """B's upload is B's: A cannot use it, and B's token cannot upload for A (above)."""
    server, a, b = checked.server, checked.a, checked.b
    content = "\n".join(EMAILS[40:55]).encode()
    body = call(server, "POST", UPLOAD, b.token, **upload_fields(b.adv, content))
    assert body["code"] == 0, body
    theirs = body["data"]["file_path"]
    assert theirs not in (a.file_path, b.file_path)
    body = call(
        server,
        "POST",
        CREATE,
        a.token,
        json={
            "advertiser_id": a.adv,
            "custom_audience_name": "borrowed",
            "calculate_type": "EMAIL_SHA256",
            "file_paths": [theirs],
        },
    )
    assert body["code"] == 40007, body
