"""Per-advertiser quota and the admin users import over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, Server, start_server


@pytest.fixture
def small_quota(tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path / "data", min_audience_size=1, max_audiences_per_advertiser=2)


def test_audience_quota(small_quota: Server) -> None:
    server = small_quota
    adv, token = server.advertiser()
    for i in range(2):
        body = server.call(
            "POST",
            "/segment/audience/",
            token,
            json={"advertiser_id": adv, "custom_audience_name": f"s{i}"},
        )
        assert body["code"] == 0
    body = server.call(
        "POST",
        "/segment/audience/",
        token,
        json={"advertiser_id": adv, "custom_audience_name": "one too many"},
    )
    assert body["code"] == 40002 and "at most 2" in body["message"]
    other, other_token = server.advertiser("Other")
    body = server.call(
        "POST",
        "/segment/audience/",
        other_token,
        json={"advertiser_id": other, "custom_audience_name": "fine"},
    )
    assert body["code"] == 0  # the quota is per advertiser


def test_admin_users_import_over_http(server: Server) -> None:
    csv = b"user_id,email,phone,country\nh1,a@x.com,020 7183 8750,GB\nh2,b@x.com,,US\n,c@x.com,,\n"
    r = httpx.post(
        server.url + "/admin/v1/users/import",
        headers={"X-Admin-Token": ADMIN_TOKEN},
        files={"file": ("users.csv", csv)},
        timeout=60,
    )
    body = r.json()
    assert body["code"] == 0, body
    assert body["data"]["users"] == 2
    assert body["data"]["identifiers"] == {"email": 2, "phone": 1}
    assert body["data"]["rejected"] == {"missing_user_id": 1}
    stats = server.admin("GET", "/stats")["data"]
    assert stats["users"] == 2 and stats["keys_phone"] == 2
    assert not list((server.data_dir / "tmp").iterdir())  # the raw file is gone


def test_admin_api_requires_its_token(server: Server) -> None:
    r = httpx.post(server.url + "/admin/v1/advertisers", json={"name": "x"})
    assert r.json()["code"] == 40104
    r = httpx.post(
        server.url + "/admin/v1/advertisers", json={"name": "x"}, headers={"X-Admin-Token": "wrong"}
    )
    assert r.json()["code"] == 40105
