"""The metadata store on PostgreSQL: same migrations, same flow as on SQLite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import create_engine, text

from likewise.ingest.users import import_users
from tests.conftest import Server, start_server


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[Server]:
    url = os.environ.get("LIKEWISE_TEST_POSTGRES_URL")
    assert url, (
        "LIKEWISE_TEST_POSTGRES_URL is not set: run the suite with `bash scripts/test`, which "
        "starts a local PostgreSQL for this test"
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    yield from start_server(tmp_path / "data", min_audience_size=10, database_url=url)


def test_customer_file_flow_on_postgres(pg_server: Server) -> None:
    server = pg_server
    emails = [f"pg.user{i}@example.com" for i in range(60)]
    import_users(
        server.runtime.graph,
        pa.table({"user_id": [f"p{i}" for i in range(60)], "email": emails}),
    )
    adv, token = server.advertiser("On Postgres")
    first = server.upload(token, adv, "\n".join(emails[:40]).encode())["data"]["file_path"]
    second = server.upload(token, adv, "\n".join(emails[40:]).encode())["data"]["file_path"]
    created = server.call(
        "POST",
        "/dmp/custom_audience/create/",
        token,
        json={
            "advertiser_id": adv,
            "custom_audience_name": "pg",
            "calculate_type": "EMAIL_SHA256",
            "file_paths": [first],
        },
    )
    audience_id = created["data"]["custom_audience_id"]
    server.wait_jobs()

    def cover() -> int:
        got = server.call(
            "GET",
            "/dmp/custom_audience/get/",
            token,
            params={"advertiser_id": adv, "custom_audience_ids": f'["{audience_id}"]'},
        )
        return int(got["data"]["list"][0]["audience_details"]["cover_num"])

    assert cover() == 40
    updated = server.call(
        "POST",
        "/dmp/custom_audience/update/",
        token,
        json={
            "advertiser_id": adv,
            "custom_audience_id": audience_id,
            "file_paths": [second],
            "action": "APPEND",
            "custom_audience_name": "pg renamed",
        },
    )
    assert updated["code"] == 0, updated
    assert cover() == 60
    listed = server.call("GET", "/dmp/custom_audience/list/", token, params={"advertiser_id": adv})
    assert [a["name"] for a in listed["data"]["list"]] == ["pg renamed"]
    deleted = server.call(
        "POST",
        "/dmp/custom_audience/delete/",
        token,
        json={"advertiser_id": adv, "custom_audience_ids": [audience_id]},
    )
    assert deleted["code"] == 0
    listed = server.call("GET", "/dmp/custom_audience/list/", token, params={"advertiser_id": adv})
    assert listed["data"]["page_info"]["total_number"] == 0
