from __future__ import annotations

import pyarrow as pa

from likewise.ingest.users import import_users
from tests.conftest import Server


def test_upload_create_get(server: Server) -> None:
    emails = [f"Person.{i}+promo@Example.com" for i in range(40)]
    import_users(
        server.runtime.graph,
        pa.table(
            {
                "user_id": [f"u{i}" for i in range(40)],
                "email": emails,
                "personalized_ads": ["false" if i < 5 else "true" for i in range(40)],
            }
        ),
    )
    adv, token = server.advertiser()
    content = ("\n".join(e.upper() for e in emails[:30]) + "\nnot-an-email\n").encode()
    body = server.upload(token, adv, content)
    assert body["code"] == 0 and body["message"] == "OK"
    file_path = body["data"]["file_path"]
    assert len(file_path) == 16
    created = server.call(
        "POST",
        "/dmp/custom_audience/create/",
        token,
        json={
            "advertiser_id": adv,
            "custom_audience_name": "Buyers",
            "calculate_type": "EMAIL_SHA256",
            "file_paths": [file_path],
        },
    )
    assert created["code"] == 0, created
    server.wait_jobs()
    got = server.call(
        "GET",
        "/dmp/custom_audience/get",
        token,
        params={
            "advertiser_id": adv,
            "custom_audience_ids": f'["{created["data"]["custom_audience_id"]}"]',
        },
    )
    details = got["data"]["list"][0]["audience_details"]
    assert details["cover_num"] == 25  # 30 matched, 5 of them opted out
    assert details["is_valid"] is True
    history = got["data"]["list"][0]["audience_history"]
    assert "1 invalid_email" in history[0]["msg"]
