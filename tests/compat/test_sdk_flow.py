"""TikTok's official Python SDK against a real Likewise server, checked against the sim's truth.

The SDK (``tiktok-business-api-sdk-official``, ``business_api_client``) uploads customer files,
creates an audience, waits for it, lists it, APPENDs, REMOVEs and REPLACEs files, renames it and
deletes it. After every step ``cover_num`` must equal the ground truth exactly: the users the sim
put in each file (``CustomerFile.expected_users``), combined as the action says, minus users who
opted out of personalised ads. The SDK always uses the trailing slash; the no-slash paths are
checked with httpx on the same audience.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import business_api_client as sdk
import httpx
import numpy as np
import pyarrow as pa
import pytest
from business_api_client.api.audience_api import AudienceApi
from business_api_client.tiktok_business.tiktok_exceptions import TiktokSDKError

from likewise.ingest.users import import_users
from likewise.sim import CustomerFile, generate_customer_file, generate_users
from tests.conftest import Server, start_server

N_USERS = 4000
# The server's minimum audience size. The audiences below hold ~950-2,100 reachable users;
# the small file ``e`` ~270, so replacing with it must be refused.
MIN_AUDIENCE = 400
ENVELOPE = {"code", "message", "request_id", "data"}

# (calculate_type, advertiser country): phones in national format are read with the
# advertiser's country, so the PHONE file is made for a non-US advertiser on purpose.
KINDS = [("EMAIL_SHA256", "US"), ("PHONE_SHA256", "GB"), ("MULTIPLE_TYPES", "DE")]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def users() -> pa.Table:
    return generate_users(N_USERS, seed=2024)


@pytest.fixture(scope="module")
def consent(users: pa.Table) -> np.ndarray:
    return np.asarray(users.column("personalized_ads").to_pylist(), dtype=bool)


@pytest.fixture(scope="module")
def sim_server(tmp_path_factory: pytest.TempPathFactory, users: pa.Table) -> Iterator[Server]:
    """One server for the module, minimum audience size MIN_AUDIENCE, the sim's users in it."""
    gen = start_server(tmp_path_factory.mktemp("sdk") / "data", min_audience_size=MIN_AUDIENCE)
    with contextlib.closing(gen):
        server = next(gen)
        summary = import_users(server.runtime.graph, users)
        assert summary["new_users"] == N_USERS, summary
        yield server


class Sdk:
    """The official SDK's AudienceApi plus the raw envelope of its last response.

    The SDK returns only ``{data, request_id}`` on success and raises ``TiktokSDKError`` (code in
    the text only) otherwise, so the raw body is read from ``api_client.last_response``.
    """

    def __init__(self, server: Server, token: str) -> None:
        cfg = sdk.Configuration()
        cfg.host = server.url
        self.client = sdk.ApiClient(cfg)
        self.api = AudienceApi(self.client)
        self.token = token

    def last(self) -> dict[str, Any]:
        response = self.client.last_response
        assert response.status == 200
        body = json.loads(response.data)
        assert set(body) == ENVELOPE, body
        return body  # type: ignore[no-any-return]

    def ok(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Call ``AudienceApi.<method>`` and return ``data`` of a successful response."""
        result = getattr(self.api, method)(*args, **kwargs)
        body = self.last()
        assert body["code"] == 0 and body["message"] == "OK", body
        assert result["data"] == body["data"]
        return body["data"]  # type: ignore[no-any-return]

    def fails(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Call ``AudienceApi.<method>``, expect the SDK to raise, return the error envelope."""
        with pytest.raises(TiktokSDKError):
            getattr(self.api, method)(*args, **kwargs)
        body = self.last()
        assert body["code"] != 0 and body["data"] == {}, body
        return body


# --------------------------------------------------------------------------- helpers


class Flow:
    """One advertiser's files and audience, and the helpers that check it."""

    def __init__(
        self,
        server: Server,
        users: pa.Table,
        consent: np.ndarray,
        kind: str,
        country: str,
        tmp: Path,
    ) -> None:
        self.server, self.users, self.consent = server, users, consent
        self.kind, self.country, self.tmp = kind, country, tmp
        self.adv, self.token = server.advertiser(f"SDK {kind}", country=country)
        self.sdk = Sdk(server, self.token)
        self.audience_id = ""

    def file(self, name: str, n_rows: int, seed: int) -> tuple[CustomerFile, str]:
        """Generate, write and upload (with the SDK) one customer file: (file, file_path)."""
        cf = generate_customer_file(
            self.users, n_rows=n_rows, seed=seed, kind=self.kind, advertiser_country=self.country
        )
        path = cf.write(self.tmp / f"{self.kind.lower()}_{name}.csv")
        data = self.sdk.ok(
            "dmp_custom_audience_file_upload",
            self.token,
            advertiser_id=self.adv,
            calculate_type=self.kind,
            file=str(path),
            file_signature=cf.md5(),
        )
        assert isinstance(data["file_path"], str) and len(data["file_path"]) == 16, data
        # The sim's own answer key agrees with the users table.
        assert cf.expected_cover_num == self.cover_of(cf.expected_users)
        return cf, data["file_path"]

    def cover_of(self, members: np.ndarray) -> int:
        return int(self.consent[members].sum())

    def details(self) -> dict[str, Any]:
        data = self.sdk.ok(
            "dmp_custom_audience_get", self.adv, [self.audience_id], self.token, history_size=5
        )
        (item,) = data["list"]
        assert len(item["audience_history"]) <= 5
        return item["audience_details"]  # type: ignore[no-any-return]

    def wait_valid(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            d = self.details()
            if d["is_valid"]:
                return d
            assert time.monotonic() < deadline, f"audience never became valid: {d}"
            time.sleep(0.05)

    def listed(self) -> dict[str, Any]:
        """The audience as the SDK's list reports it (ids as repeated query parameters)."""
        data = self.sdk.ok(
            "dmp_custom_audience_list",
            self.adv,
            self.token,
            custom_audience_ids=[self.audience_id],
            page=1,
            page_size=100,
        )
        assert data["page_info"]["total_number"] == 1, data["page_info"]
        (item,) = data["list"]
        return item  # type: ignore[no-any-return]

    def check_cover(self, members: np.ndarray, step: str) -> None:
        """get and list both report exactly the consented members."""
        expected = self.cover_of(members)
        d = self.details()
        assert d["is_valid"] is True, (step, d)
        assert d["cover_num"] == expected, (step, d["cover_num"], expected)
        assert self.listed()["cover_num"] == expected, step

    def update(self, **body: Any) -> None:
        self.sdk.ok(
            "dmp_custom_audience_update",
            self.token,
            body=sdk.models.CustomAudienceUpdateBody(
                advertiser_id=self.adv, custom_audience_id=self.audience_id, **body
            ),
        )

    def http(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """A raw call on ``path`` as given (no slash added)."""
        r = httpx.request(
            method, self.server.api + path, headers={"Access-Token": self.token}, timeout=60, **kw
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == ENVELOPE, body
        return body  # type: ignore[no-any-return]


def union(*sets: np.ndarray) -> np.ndarray:
    out = np.array([], dtype=np.int64)
    for s in sets:
        out = np.union1d(out, s)
    return out


# --------------------------------------------------------------------------- the flow


@pytest.mark.parametrize(("kind", "country"), KINDS, ids=[k for k, _ in KINDS])
def test_sdk_full_flow(
    sim_server: Server,
    users: pa.Table,
    consent: np.ndarray,
    tmp_path: Path,
    kind: str,
    country: str,
) -> None:
    flow = Flow(sim_server, users, consent, kind, country, tmp_path)
    seed = 100 * (1 + [k for k, _ in KINDS].index(kind))
    a, path_a = flow.file("a", 2000, seed + 1)
    b, path_b = flow.file("b", 1500, seed + 2)
    c, path_c = flow.file("c", 1500, seed + 3)
    d, path_d = flow.file("d", 3000, seed + 4)
    e, path_e = flow.file("e", 500, seed + 5)  # too few users for an audience on its own
    A, B, C, D, E = (f.expected_users for f in (a, b, c, d, e))

    created_members = union(A, B)
    appended = union(created_members, C)
    removed = np.setdiff1d(appended, A)
    # The data must exercise what the test claims: sizes straddle the minimum as planned.
    for members in (created_members, appended, removed, D):
        assert flow.cover_of(members) >= MIN_AUDIENCE
    assert flow.cover_of(E) < MIN_AUDIENCE
    assert 0 < len(np.intersect1d(A, B)) < len(A)  # overlapping files: a union, not a sum
    assert len(np.intersect1d(appended, A)) > 0 and len(removed) < len(appended)

    # create from two files at once, then poll get until the audience is valid
    created = flow.sdk.ok(
        "dmp_custom_audience_create",
        flow.token,
        body=sdk.models.CustomAudienceCreateBody(
            advertiser_id=flow.adv,
            custom_audience_name=f"Buyers {kind}",
            calculate_type=kind,
            file_paths=[path_a, path_b],
        ),
    )
    flow.audience_id = created["custom_audience_id"]
    assert flow.audience_id.isdigit()
    details = flow.wait_valid()
    assert details["cover_num"] == flow.cover_of(created_members)
    assert details["calculate_type"] == kind
    assert details["name"] == f"Buyers {kind}"
    assert details["audience_type"] == "Customer File Audience"
    flow.check_cover(created_members, "create")

    # list shows it among the advertiser's audiences (no ids filter, SDK defaults)
    everything = flow.sdk.ok("dmp_custom_audience_list", flow.adv, flow.token)
    assert [x["audience_id"] for x in everything["list"]] == [flow.audience_id]

    flow.update(file_paths=[path_c], action="APPEND")
    flow.check_cover(appended, "APPEND")

    flow.update(file_paths=[path_a], action="REMOVE")
    flow.check_cover(removed, "REMOVE")

    flow.update(file_paths=[path_d], action="REPLACE")
    flow.check_cover(D, "REPLACE")

    # Changes that would leave fewer than the minimum are refused and change nothing.
    for body in (
        {"file_paths": [path_e], "action": "REPLACE"},
        {"file_paths": [path_d], "action": "REMOVE"},
    ):
        err = flow.sdk.fails(
            "dmp_custom_audience_update",
            flow.token,
            body=sdk.models.CustomAudienceUpdateBody(
                advertiser_id=flow.adv, custom_audience_id=flow.audience_id, **body
            ),
        )
        assert err["code"] == 40002 and str(MIN_AUDIENCE) in err["message"], err
        flow.check_cover(D, f"refused {body['action']}")

    # Rename only: the SDK's update body sends action=REPLACE by default, without file_paths.
    flow.update(custom_audience_name=f"Renamed {kind}")
    assert flow.details()["name"] == f"Renamed {kind}"
    assert flow.listed()["name"] == f"Renamed {kind}"
    flow.check_cover(D, "rename")

    # The same audience through the paths without the trailing slash (httpx).
    ids = json.dumps([flow.audience_id])
    got = flow.http(
        "GET",
        "/dmp/custom_audience/get",
        params={"advertiser_id": flow.adv, "custom_audience_ids": ids},
    )
    assert got["code"] == 0 and got["message"] == "OK", got
    assert got["data"]["list"][0]["audience_details"]["cover_num"] == flow.cover_of(D)
    listed = flow.http(
        "GET",
        "/dmp/custom_audience/list",
        params={"advertiser_id": flow.adv, "custom_audience_ids": ids},
    )
    assert listed["code"] == 0 and listed["data"]["list"][0]["cover_num"] == flow.cover_of(D)
    appended_again = flow.http(
        "POST",
        "/dmp/custom_audience/update",
        json={
            "advertiser_id": flow.adv,
            "custom_audience_id": flow.audience_id,
            "file_paths": [path_b],
            "action": "APPEND",
        },
    )
    assert appended_again["code"] == 0 and appended_again["message"] == "OK", appended_again
    flow.check_cover(union(D, B), "APPEND without trailing slash")

    # delete: gone from get (40007) and from list
    flow.sdk.ok(
        "dmp_custom_audience_delete",
        flow.token,
        body=sdk.models.CustomAudienceDeleteBody(
            advertiser_id=flow.adv, custom_audience_ids=[flow.audience_id]
        ),
    )
    err = flow.sdk.fails("dmp_custom_audience_get", flow.adv, [flow.audience_id], flow.token)
    assert err["code"] == 40007, err
    after = flow.sdk.ok("dmp_custom_audience_list", flow.adv, flow.token)
    assert after["list"] == [] and after["page_info"]["total_number"] == 0


def test_sdk_upload_maid_alias_creates_first_audience(
    sim_server: Server, users: pa.Table, consent: np.ndarray, tmp_path: Path
) -> None:
    """MAID_SHA256 is an upload-only alias of FIRST_SHA256 (same internal code); create only
    knows FIRST_SHA256, so a MAID_SHA256 upload must be usable by a FIRST_SHA256 audience."""
    flow = Flow(sim_server, users, consent, "MAID_SHA256", "US", tmp_path)
    cf, path = flow.file("maid", 2000, 7)
    created = flow.sdk.ok(
        "dmp_custom_audience_create",
        flow.token,
        body=sdk.models.CustomAudienceCreateBody(
            advertiser_id=flow.adv,
            custom_audience_name="Devices",
            calculate_type="FIRST_SHA256",
            file_paths=[path],
        ),
    )
    flow.audience_id = created["custom_audience_id"]
    assert flow.wait_valid()["cover_num"] == cf.expected_cover_num


def test_sdk_errors_are_tiktok_codes(sim_server: Server, tmp_path: Path) -> None:
    """What the SDK sees for a wrong token, a wrong MD5 and an unknown audience."""
    adv, token = sim_server.advertiser("SDK errors")
    client = Sdk(sim_server, token)
    csv = tmp_path / "few.csv"
    csv.write_text("a@example.com\nb@example.com\n")

    err = client.fails(
        "dmp_custom_audience_file_upload",
        token,
        advertiser_id=adv,
        calculate_type="EMAIL_SHA256",
        file=str(csv),
        file_signature="0" * 32,
    )
    assert err["code"] == 40900, err

    err = client.fails("dmp_custom_audience_get", adv, ["123"], token)
    assert err["code"] == 40007, err

    err = client.fails("dmp_custom_audience_list", adv, "not-a-token")
    assert err["code"] == 40105, err
