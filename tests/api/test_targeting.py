"""Using audiences (issue 6) against a real server: ad groups, apply / disconnect / log,
sharing inside a business center, overlap, reach, saved audiences, membership serving, and
isolation between advertisers. TikTok's endpoints are called through the official SDK.

Ground truth comes from the simulator's users table (countries, OS, ages, genders, consent) and
the customer files written here, never from Likewise's own answers.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import business_api_client
import pytest
from business_api_client.api.audience_api import AudienceApi
from business_api_client.models import (
    CustomAudienceApplyBody,
    CustomAudienceShareBody,
    SavedAudienceCreateBody,
    SavedAudienceDeleteBody,
    ShareCancelBody,
)
from business_api_client.tiktok_business.tiktok_exceptions import TiktokSDKError

from likewise.domain.locations import location_of_country
from likewise.sim import generate_users, ground_truth_identifiers
from tests.conftest import Server, start_server

serve = contextmanager(start_server)
N_USERS = 3000
MIN = 100  # the server's minimum audience size
US = location_of_country("US").location_id  # type: ignore[union-attr]
GB = location_of_country("GB").location_id  # type: ignore[union-attr]


@dataclass
class Adv:
    id: str
    token: str


@dataclass
class World:
    server: Server
    api: AudienceApi
    a: Adv  # owner, business center bc-1
    b: Adv  # same business center
    c: Adv  # another business center
    users: list[dict[str, Any]]  # sim rows
    uid: dict[str, int]  # user_id -> uid
    customers: str  # A: users 0..1499
    subset: str  # A: users 0..599 and 1500..1999
    tiny: str  # A: users 0..59 (too small to use)
    rows: dict[str, set[int]]  # audience -> sim rows in it


def _emails(users_table: Any) -> list[str | None]:
    return ground_truth_identifiers(users_table).column("email_basic").to_pylist()


def _file_audience(server: Server, adv: Adv, name: str, emails: list[str]) -> str:
    content = "\n".join(hashlib.sha256(e.encode()).hexdigest() for e in emails).encode()
    return server.file_audience(adv.token, adv.id, content, name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serve(tmp_path_factory.mktemp("targeting"), min_audience_size=MIN) as server:
        table = generate_users(N_USERS, seed=3)
        server.import_users(table)
        a = Adv(*server.advertiser("Owner", business_center_id="bc-1"))
        b = Adv(*server.advertiser("Sibling", business_center_id="bc-1"))
        c = Adv(*server.advertiser("Stranger", business_center_id="bc-2"))
        emails = _emails(table)
        users = table.to_pylist()
        rows = {
            "customers": set(range(1500)),
            "subset": set(range(600)) | set(range(1500, 2000)),
            "tiny": set(range(60)),
        }
        ids = {}
        for name, members in rows.items():
            ids[name] = _file_audience(
                server, a, name, [e for r, e in enumerate(emails) if r in members and e]
            )
        # Rows without an e-mail cannot match: the truth is who the files can find.
        rows = {k: {r for r in v if emails[r]} for k, v in rows.items()}
        with server.runtime.graph.connect() as con:
            uid = dict(con.execute("SELECT ext_id, uid FROM users").fetchall())
        config = business_api_client.Configuration()
        config.host = server.url
        yield World(
            server=server,
            api=AudienceApi(business_api_client.ApiClient(config)),
            a=a,
            b=b,
            c=c,
            users=users,
            uid=uid,
            customers=ids["customers"],
            subset=ids["subset"],
            tiny=ids["tiny"],
            rows={ids[k]: v for k, v in rows.items()},
        )


def sdk(call: Callable[..., Any], *args: Any, **kw: Any) -> dict[str, Any]:
    """An SDK call as ``{code, message, data}`` (the SDK raises on a non-zero code)."""
    try:
        answer = call(*args, **kw)
    except TiktokSDKError as exc:
        found = re.match(r"Error Code: (\d+), message: (.*), request_id: ", str(exc), re.S)
        assert found, exc
        return {"code": int(found[1]), "message": found[2], "data": {}}
    assert set(answer) == {"data", "request_id"}, answer
    return {"code": 0, "message": "OK", "data": answer["data"]}


def ad_group(w: World, adv: Adv, **body: Any) -> str:
    made = w.server.likewise(
        "POST",
        "/adgroup/create/",
        adv.token,
        json={"advertiser_id": adv.id, "adgroup_name": "g", **body},
    )
    assert made["code"] == 0, made
    return str(made["data"]["adgroup_id"])


def apply(
    w: World, adv: Adv, audience: str, groups: list[str], action: str, usage: str | None = "Include"
) -> dict[str, Any]:
    body = CustomAudienceApplyBody(
        advertiser_id=adv.id,
        custom_audience_id=audience,
        adgroup_ids=groups,
        action_mode=action,
        usage_mode=usage,
    )
    return sdk(w.api.dmp_custom_audience_apply, adv.token, body=body)


def group_details(w: World, adv: Adv, group: str) -> dict[str, Any]:
    got = w.server.likewise(
        "GET",
        "/adgroup/get/",
        adv.token,
        params={"advertiser_id": adv.id, "adgroup_ids": f'["{group}"]'},
    )
    assert got["code"] == 0, got
    return got["data"]["list"][0]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- apply


def test_apply_disconnect_and_log(world: World) -> None:
    w = world
    g1, g2 = ad_group(w, w.a), ad_group(w, w.a)
    assert apply(w, w.a, w.customers, [g1, g2], "Apply", "Include")["code"] == 0
    assert group_details(w, w.a, g1)["audience_ids"] == [w.customers]
    # Not both included and excluded in one ad group.
    both = apply(w, w.a, w.customers, [g1], "Apply", "Exclude")
    assert both["code"] == 40002 and "cannot be both" in both["message"], both
    assert apply(w, w.a, w.subset, [g1], "Apply", "Exclude")["code"] == 0
    # Too small to use; unknown and other advertisers' ad groups; Apply without usage_mode.
    small = apply(w, w.a, w.tiny, [g1], "Apply")
    assert small["code"] == 40002 and f"Fewer than {MIN}" in small["message"], small
    assert apply(w, w.a, w.customers, ["1899999999999999999"], "Apply")["code"] != 0
    other = ad_group(w, w.b)
    assert apply(w, w.a, w.customers, [other], "Apply")["code"] != 0
    assert apply(w, w.a, w.customers, [g1], "Apply", None)["code"] == 40002
    # Disconnect; disconnecting what is not applied is refused.
    assert apply(w, w.a, w.customers, [g2], "Disconnect", None)["code"] == 0
    assert apply(w, w.a, w.customers, [g2], "Disconnect", None)["code"] == 40002
    assert group_details(w, w.a, g2)["audience_ids"] == []

    log = sdk(
        w.api.dmp_custom_audience_apply_log,
        w.a.id,
        [w.customers],
        w.a.token,
        page=1,
        page_size=10,
    )
    assert log["code"] == 0, log
    entries = log["data"]["list"]
    assert [(e["adgroup_id"], e["action_mode"], e["usage_mode"]) for e in entries] == [
        (g2, "Disconnect", "Include"),
        (g2, "Apply", "Include"),
        (g1, "Apply", "Include"),
    ]
    assert log["data"]["page_info"]["total_number"] == 3
    assert all(e["editor"] == "open_api" and e["audience_id"] == w.customers for e in entries)
    # The time zone parameter shifts the timestamps.
    ny = sdk(
        w.api.dmp_custom_audience_apply_log,
        w.a.id,
        [w.customers],
        w.a.token,
        timezone="America/New_York",
    )
    utc = datetime.strptime(entries[0]["action_timestamp"], "%Y-%m-%d %H:%M:%S")
    local = datetime.strptime(ny["data"]["list"][0]["action_timestamp"], "%Y-%m-%d %H:%M:%S")
    assert utc - local in (timedelta(hours=4), timedelta(hours=5))
    bad = sdk(
        w.api.dmp_custom_audience_apply_log,
        w.a.id,
        [w.customers],
        w.a.token,
        timezone="Mars/Olympus",
    )
    assert bad["code"] == 40002
    # An audience applied to an ad group cannot be deleted until it is disconnected.
    refused = w.server.call(
        "POST",
        "/dmp/custom_audience/delete/",
        w.a.token,
        json={"advertiser_id": w.a.id, "custom_audience_ids": [w.subset]},
    )
    assert refused["code"] == 40002 and "disconnect" in refused["message"], refused
    assert apply(w, w.a, w.subset, [g1], "Disconnect", None)["code"] == 0
    assert apply(w, w.a, w.customers, [g1], "Disconnect", None)["code"] == 0


def test_lookalikes_stay_out_of_reach_and_frequency_ad_groups(world: World) -> None:
    w = world
    made = w.server.call(
        "POST",
        "/dmp/custom_audience/lookalike/create/",
        w.a.token,
        json={
            "advertiser_id": w.a.id,
            "custom_audience_name": "lal",
            "lookalike_spec": {
                "source_audience_id": w.customers,
                "location_ids": [US, GB],
                "audience_size": "BROAD",
                "include_source": True,
                "mobile_os": "ALL",
                "placements": ["TikTok"],
            },
        },
    )
    assert made["code"] == 0, made
    w.server.wait_jobs()
    lal = made["data"]["custom_audience_id"]
    rf = ad_group(w, w.a, reach_frequency=True)
    refused = apply(w, w.a, lal, [rf], "Apply")
    assert refused["code"] == 40002 and "Reach & Frequency" in refused["message"], refused
    normal = ad_group(w, w.a)
    assert apply(w, w.a, lal, [normal], "Apply")["code"] == 0
    # Applied: it cannot be deleted through lookalike/delete either.
    gone = w.server.call(
        "POST",
        "/dmp/custom_audience/lookalike/delete/",
        w.a.token,
        json={"advertiser_id": w.a.id, "custom_audience_ids": [lal]},
    )
    assert gone["code"] == 40002, gone
    assert apply(w, w.a, lal, [normal], "Disconnect", None)["code"] == 0


# --------------------------------------------------------------------------- sharing


def test_share_use_cancel_and_log(world: World) -> None:
    w = world
    shared = _file_audience(
        w.server, w.a, "to share", [e for e in _emails_of(w, range(300, 900)) if e]
    )
    body = CustomAudienceShareBody(
        advertiser_id=w.a.id, custom_audience_ids=[shared], shared_advertiser_ids=[w.b.id]
    )
    assert sdk(w.api.dmp_custom_audience_share, w.a.token, body=body)["code"] == 0
    assert sdk(w.api.dmp_custom_audience_share, w.a.token, body=body)["code"] == 0  # again: same
    # Outside the business center, and to itself: refused.
    for target in (w.c.id, w.a.id):
        bad = CustomAudienceShareBody(
            advertiser_id=w.a.id, custom_audience_ids=[shared], shared_advertiser_ids=[target]
        )
        assert sdk(w.api.dmp_custom_audience_share, w.a.token, body=bad)["code"] == 40002

    # B sees it (not as creator), uses it in an ad group and as a lookalike seed, can't change it.
    listed = w.server.call(
        "GET",
        "/dmp/custom_audience/list/",
        w.b.token,
        params={"advertiser_id": w.b.id, "page_size": 100},
    )
    mine = {x["audience_id"]: x for x in listed["data"]["list"]}
    assert shared in mine and mine[shared]["is_creator"] is False and mine[shared]["shared"]
    owner_view = w.server.details(w.a.token, w.a.id, shared)
    assert owner_view["shared"] is True and owner_view["is_creator"] is True
    group = ad_group(w, w.b)
    assert apply(w, w.b, shared, [group], "Apply", "Exclude")["code"] == 0
    lal = w.server.call(
        "POST",
        "/dmp/custom_audience/lookalike/create/",
        w.b.token,
        json={
            "advertiser_id": w.b.id,
            "custom_audience_name": "from shared",
            "lookalike_spec": {
                "source_audience_id": shared,
                "location_ids": [US],
                "audience_size": "NARROW",
                "include_source": False,
                "mobile_os": "ALL",
                "placements": ["TikTok"],
            },
        },
    )
    assert lal["code"] == 0, lal
    for path, body_ in (
        (
            "/dmp/custom_audience/update/",
            {"advertiser_id": w.b.id, "custom_audience_id": shared, "custom_audience_name": "x"},
        ),
        (
            "/dmp/custom_audience/delete/",
            {"advertiser_id": w.b.id, "custom_audience_ids": [shared]},
        ),
    ):
        assert w.server.call("POST", path, w.b.token, json=body_)["code"] == 40007
    # B cannot share or read the share log of A's audience.
    again = CustomAudienceShareBody(
        advertiser_id=w.b.id, custom_audience_ids=[shared], shared_advertiser_ids=[w.a.id]
    )
    assert sdk(w.api.dmp_custom_audience_share, w.b.token, body=again)["code"] != 0
    assert sdk(w.api.dmp_custom_audience_share_log, w.b.id, shared, w.b.token)["code"] != 0
    # The owner cannot delete it while B uses it.
    refused = w.server.call(
        "POST",
        "/dmp/custom_audience/delete/",
        w.a.token,
        json={"advertiser_id": w.a.id, "custom_audience_ids": [shared]},
    )
    assert refused["code"] == 40002 and "cancel the share" in refused["message"], refused

    # Cancel: B's ad group is disconnected, the audience leaves B's list.
    cancel = ShareCancelBody(
        advertiser_id=w.a.id, custom_audience_id=shared, shared_advertiser_id=w.b.id
    )
    combined = w.server.likewise(
        "POST",
        "/audience/combined/create/",
        w.b.token,
        json={
            "advertiser_id": w.b.id,
            "custom_audience_name": "shared or mine",
            "combination_spec": {"any_of": [shared]},
        },
    )
    assert combined["code"] == 0, combined
    w.server.wait_jobs()  # B's lookalike is built from the shared seed
    assert sdk(w.api.dmp_custom_audience_share_cancel, w.a.token, body=cancel)["code"] == 0
    assert sdk(w.api.dmp_custom_audience_share_cancel, w.a.token, body=cancel)["code"] == 40002
    assert group_details(w, w.b, group)["excluded_audience_ids"] == []
    listed = w.server.call(
        "GET",
        "/dmp/custom_audience/list/",
        w.b.token,
        params={"advertiser_id": w.b.id, "page_size": 100},
    )
    assert shared not in {x["audience_id"] for x in listed["data"]["list"]}
    log = sdk(w.api.dmp_custom_audience_share_log, w.a.id, shared, w.a.token)
    assert log["code"] == 0, log
    assert [
        (e["shared_advertiser_id"], e["status"], e["shared_advertiser_name"])
        for e in log["data"]["list"]
    ] == [(w.b.id, "CANCELLED", "Sibling")]
    # B's combined audience on it fails, saying why.
    combined_id = combined["data"]["custom_audience_id"]
    deadline = time.monotonic() + 20
    while w.server.details(w.b.token, w.b.id, combined_id)["status"] != "FAILED":
        assert time.monotonic() < deadline, "the combined audience still uses the part"
        time.sleep(0.1)
    assert "no longer shared" in w.server.details(w.b.token, w.b.id, combined_id)["error_msg"]
    # B's lookalike of it keeps its members but never reads the seed again.
    lal_id = lal["data"]["custom_audience_id"]
    lal_view = w.server.audience(w.b.token, w.b.id, lal_id)
    assert (
        "no longer shared" in lal_view["audience_details"]["lookalike_quality"]["refresh_stopped"]
    )
    assert lal_view["audience_history"][0]["action"] == "SEED_UNSHARED"
    refresh = w.server.call(
        "POST",
        "/dmp/custom_audience/lookalike/update/",
        w.b.token,
        json={"advertiser_id": w.b.id, "custom_audience_ids": [lal_id]},
    )
    assert refresh["code"] == 40002 and "no longer shared" in refresh["message"], refresh
    # Now the owner may delete it.
    gone = w.server.call(
        "POST",
        "/dmp/custom_audience/delete/",
        w.a.token,
        json={"advertiser_id": w.a.id, "custom_audience_ids": [shared]},
    )
    assert gone["code"] == 0, gone


def _emails_of(w: World, rows: range) -> list[str | None]:
    import pyarrow as pa

    table = pa.Table.from_pylist([w.users[r] for r in rows])
    return _emails(table)


# --------------------------------------------------------------------------- overlap, reach


def _reachable_rows(w: World, audience: str) -> set[int]:
    return {r for r in w.rows[audience] if w.users[r]["personalized_ads"]}


def test_overlap_is_exact_and_hides_small_numbers(world: World) -> None:
    w = world
    got = sdk(
        w.api.audience_insight_overlap,
        w.a.id,
        w.customers,
        w.a.token,
        comparison_custom_audience_ids=[w.subset, w.tiny],
    )
    assert got["code"] == 0, got
    bench = _reachable_rows(w, w.customers)
    assert got["data"]["benchmark_audience"]["size"] == len(bench)
    subset, tiny = got["data"]["comparison_audiences"]
    truth = _reachable_rows(w, w.subset)
    assert subset["size"] == len(truth)
    assert subset["overlap_size"] == len(truth & bench)
    assert subset["overlap_ratio"] == round(len(truth & bench) / len(bench), 4)
    assert tiny["size"] is None and tiny["size_text"] == f"below {MIN:,}"
    assert tiny["overlap_size"] is None and tiny["overlap_ratio"] is None
    too_many = sdk(
        w.api.audience_insight_overlap,
        w.a.id,
        w.customers,
        w.a.token,
        comparison_custom_audience_ids=[w.subset] * 5,
    )
    assert too_many["code"] != 0
    theirs = sdk(w.api.audience_insight_overlap, w.c.id, w.customers, w.c.token)
    assert theirs["code"] != 0 and not theirs["data"]


def test_reach_estimate(world: World) -> None:
    w = world
    spec = {
        "location_ids": [US],
        "operating_systems": ["IOS"],
        "gender": "GENDER_FEMALE",
        "age_groups": ["AGE_25_34", "AGE_35_44"],
        "audience_ids": [w.customers],
        "excluded_audience_ids": [w.subset],
    }
    got = w.server.likewise(
        "POST", "/reach/estimate/", w.a.token, json={"advertiser_id": w.a.id, **spec}
    )
    assert got["code"] == 0, got
    rows = _reachable_rows(w, w.customers) - w.rows[w.subset]
    truth = [
        r
        for r in rows
        if w.users[r]["country"] == "US"
        and w.users[r]["os"] == "ios"
        and w.users[r]["gender"] == "female"
        and w.users[r]["age"] is not None
        and 25 <= w.users[r]["age"] <= 44
    ]
    reach = got["data"]["reach"]
    if len(truth) >= MIN:
        assert reach["size"] == len(truth)
    else:
        assert reach["size"] is None and reach["size_text"] == f"below {MIN:,}"
    # Everyone in the US, no audiences: exact.
    wide = w.server.likewise(
        "POST", "/reach/estimate/", w.a.token, json={"advertiser_id": w.a.id, "location_ids": [US]}
    )
    us = [u for u in w.users if u["country"] == "US" and u["personalized_ads"]]
    assert wide["data"]["reach"]["size"] == len(us)
    # Another advertiser's audience: refused.
    theirs = w.server.likewise(
        "POST",
        "/reach/estimate/",
        w.c.token,
        json={"advertiser_id": w.c.id, "audience_ids": [w.customers]},
    )
    assert theirs["code"] != 0


# --------------------------------------------------------------------------- saved audiences


def test_saved_audiences(world: World) -> None:
    w = world
    body = SavedAudienceCreateBody(
        advertiser_id=w.a.id,
        saved_audience_name="US women",
        location_ids=[US],
        gender="GENDER_FEMALE",
        age_groups=["AGE_18_24"],
        audience_ids=[w.customers],
        excluded_audience_ids=[w.subset],
        languages=["en"],
        operating_systems=["IOS"],
    )
    made = sdk(w.api.dmp_saved_audience_create, w.a.token, body=body)
    assert made["code"] == 0, made
    saved = made["data"]["saved_audience_id"]
    listed = sdk(w.api.dmp_saved_audience_list, w.a.id, w.a.token, page=1, page_size=10)
    assert listed["code"] == 0, listed
    [row] = [x for x in listed["data"]["saved_audiences"] if x["saved_audience_id"] == saved]
    assert row["saved_audience_name"] == "US women" and row["location_ids"] == [US]
    assert row["audience_ids"] == [w.customers] and row["languages"] == ["en"]
    assert row["gender"] == "GENDER_FEMALE" and row["operating_systems"] == ["IOS"]
    for bad in (
        {"location_ids": None},
        {"saved_audience_name": "nice \U0001f600"},
        {"gender": "GENDER_OTHER"},
        {"operating_systems": ["IOS", "ANDROID"]},
        {"audience_ids": ["6999999999999999999"]},
    ):
        values = {**body.to_dict(), **bad}
        answer = w.server.call("POST", "/dmp/saved_audience/create/", w.a.token, json=values)
        assert answer["code"] == 40002, (bad, answer)
    # Another advertiser sees none of them and cannot delete them.
    theirs = sdk(w.api.dmp_saved_audience_list, w.c.id, w.c.token)
    assert theirs["code"] == 0 and theirs["data"]["saved_audiences"] == []
    delete = SavedAudienceDeleteBody(advertiser_id=w.c.id, saved_audience_ids=[saved])
    assert sdk(w.api.dmp_saved_audience_delete, w.c.token, body=delete)["code"] != 0
    delete = SavedAudienceDeleteBody(advertiser_id=w.a.id, saved_audience_ids=[saved])
    assert sdk(w.api.dmp_saved_audience_delete, w.a.token, body=delete)["code"] == 0
    listed = sdk(w.api.dmp_saved_audience_list, w.a.id, w.a.token)
    assert saved not in [x["saved_audience_id"] for x in listed["data"]["saved_audiences"]]


# --------------------------------------------------------------------------- serving


def _serving(w: World, path: str, **params: Any) -> dict[str, Any]:
    return w.server.admin("GET", "/serving" + path, params=params)["data"]  # type: ignore[no-any-return]


def test_serving_answers_follow_targeting_and_audiences(world: World) -> None:
    w = world
    targeted = ad_group(
        w,
        w.a,
        location_ids=[US, GB],
        operating_systems=["ANDROID"],
        age_groups=["AGE_18_24", "AGE_25_34"],
        gender="GENDER_MALE",
        audience_ids=[w.customers],
        excluded_audience_ids=[w.subset],
    )
    everyone = ad_group(w, w.a)  # no targeting, no audiences
    paused = ad_group(w, w.a, status="PAUSED", audience_ids=[w.customers])
    customers = _reachable_rows(w, w.customers)
    subset = _reachable_rows(w, w.subset)

    def check_every_seventh_user() -> None:
        for r in range(0, N_USERS, 7):
            u = w.users[r]
            uid = w.uid[u["user_id"]]
            expected_in = u["personalized_ads"] and (
                u["country"] in ("US", "GB")
                and u["os"] == "android"
                and u["gender"] == "male"
                and u["age"] is not None
                and 18 <= u["age"] <= 34
                and r in customers
                and r not in subset
            )
            got = _serving(w, "/adgroups", user_id=u["user_id"])
            assert got["known"]
            groups = set(got["adgroup_ids"])
            assert (targeted in groups) == expected_in, (r, u)
            assert everyone in groups and paused not in groups
            aud = set(_serving(w, "/audiences", uid=uid)["audience_ids"])
            assert (w.customers in aud) == (r in customers)
            assert (w.subset in aud) == (r in subset)
            assert w.tiny not in aud  # too small to target: in no answer
            assert _serving(w, "/contains", audience_id=w.customers, user_id=u["user_id"])[
                "member"
            ] == (r in customers)

    check_every_seventh_user()
    # Once the per-user index is built (a background round), the same answers through it.
    deadline = time.monotonic() + 30
    while True:
        status = _serving(w, "/status")
        if status["index"]["built"] and not status["index"]["stale_audiences"]:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["audiences"] >= 3 and status["active_ad_groups"] >= 2
    assert status["index"]["audiences"] == status["audiences"]
    assert status["index"]["memberships"] > 0 and status["index"]["bytes"] > 0
    assert status["index"]["row_width"] >= 1
    assert 0 <= status["index"]["overflow_users"] <= status["users"]
    check_every_seventh_user()
    # Batch forms agree with the single ones.
    some = [w.users[r]["user_id"] for r in range(0, 60)]
    batch = w.server.admin("POST", "/serving/adgroups", json={"user_ids": some})["data"]
    for user_id in some:
        assert batch["results"][user_id] == _serving(w, "/adgroups", user_id=user_id)["adgroup_ids"]
    unknown = _serving(w, "/adgroups", user_id="nobody-here")
    assert unknown == {"known": False, "adgroup_ids": []}
    # In-process, the same.
    serving = w.server.runtime.serving
    r = next(r for r in sorted(customers) if r not in subset)
    uid = w.uid[w.users[r]["user_id"]]
    assert serving.contains(int(w.customers), uid)
    assert int(w.customers) in serving.audiences_of(uid)
    # An opt-out takes the user out of every audience at once.
    w.server.admin(
        "POST",
        "/users/consent",
        json={"user_ids": [w.users[r]["user_id"]], "personalized_ads": False},
    )
    assert not serving.contains(int(w.customers), uid)
    assert _serving(w, "/audiences", uid=uid)["audience_ids"] == []
    w.server.admin(
        "POST",
        "/users/consent",
        json={"user_ids": [w.users[r]["user_id"]], "personalized_ads": True},
    )
    assert serving.contains(int(w.customers), uid)
    for g in (targeted, everyone, paused):
        w.server.likewise(
            "POST",
            "/adgroup/delete/",
            w.a.token,
            json={"advertiser_id": w.a.id, "adgroup_ids": [g]},
        )
    assert everyone not in _serving(w, "/adgroups", uid=uid)["adgroup_ids"]


# --------------------------------------------------------------------------- isolation


def test_other_advertisers_get_errors_and_no_data(world: World) -> None:
    w = world
    mine = ad_group(w, w.a, audience_ids=[w.customers])
    # C (another business center) acting on A's ids with its own advertiser id.
    checks: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/dmp/custom_audience/apply/",
            {
                "advertiser_id": w.c.id,
                "custom_audience_id": w.customers,
                "adgroup_ids": [mine],
                "action_mode": "Disconnect",
            },
        ),
        (
            "GET",
            "/dmp/custom_audience/apply/log/",
            {"advertiser_id": w.c.id, "custom_audience_ids": f'["{w.customers}"]'},
        ),
        (
            "POST",
            "/dmp/custom_audience/share/",
            {
                "advertiser_id": w.c.id,
                "custom_audience_ids": [w.customers],
                "shared_advertiser_ids": [w.c.id],
            },
        ),
        (
            "POST",
            "/dmp/custom_audience/share/cancel/",
            {
                "advertiser_id": w.c.id,
                "custom_audience_id": w.customers,
                "shared_advertiser_id": w.b.id,
            },
        ),
        (
            "GET",
            "/dmp/custom_audience/share/log/",
            {"advertiser_id": w.c.id, "custom_audience_id": w.customers},
        ),
        (
            "GET",
            "/audience/insight/overlap/",
            {"advertiser_id": w.c.id, "benchmark_custom_audience_id": w.customers},
        ),
        (
            "GET",
            "/dmp/custom_audience/get/",
            {"advertiser_id": w.c.id, "custom_audience_ids": f'["{w.customers}"]'},
        ),
        (
            "POST",
            "/dmp/custom_audience/lookalike/update/",
            {"advertiser_id": w.c.id, "custom_audience_ids": [w.customers]},
        ),
        (
            "POST",
            "/dmp/saved_audience/create/",
            {
                "advertiser_id": w.c.id,
                "saved_audience_name": "x",
                "location_ids": [US],
                "audience_ids": [w.customers],
            },
        ),
    ]
    for method, path, body in checks:
        _isolated(w, w.server.call, method, path, body, mine)
    for method, path, body in [
        ("GET", "/adgroup/get/", {"advertiser_id": w.c.id, "adgroup_ids": f'["{mine}"]'}),
        (
            "POST",
            "/adgroup/update/",
            {"advertiser_id": w.c.id, "adgroup_id": mine, "status": "PAUSED"},
        ),
        ("POST", "/adgroup/delete/", {"advertiser_id": w.c.id, "adgroup_ids": [mine]}),
        ("POST", "/reach/estimate/", {"advertiser_id": w.c.id, "adgroup_id": mine}),
    ]:
        _isolated(w, w.server.likewise, method, path, body, mine)
    # Nothing changed: A's ad group still has its audience.
    assert group_details(w, w.a, mine)["audience_ids"] == [w.customers]
    w.server.likewise(
        "POST", "/adgroup/delete/", w.a.token, json={"advertiser_id": w.a.id, "adgroup_ids": [mine]}
    )


def _isolated(
    w: World,
    send: Callable[..., dict[str, Any]],
    method: str,
    path: str,
    body: dict[str, Any],
    mine: str,
) -> None:
    """C, with its own advertiser id, naming A's audience or ad group: an error and no data,
    worded exactly as for ids that do not exist (no oracle); with A's advertiser id: 40001
    before anything is read."""

    def ask(payload: dict[str, Any]) -> dict[str, Any]:
        kw = {"params": payload} if method == "GET" else {"json": payload}
        return send(method, path, w.c.token, **kw)

    answer = ask(body)
    assert answer["code"] != 0 and not answer["data"], (path, answer)
    unknown = ask(_with_missing_ids(body, w.customers, mine))
    assert unknown["code"] == answer["code"], (path, answer, unknown)
    assert _masked(unknown["message"]) == _masked(answer["message"]), (path, answer, unknown)
    assert ask({**body, "advertiser_id": w.a.id})["code"] == 40001, path


MISSING_AUDIENCE = "6000000000000999999"
MISSING_AD_GROUP = "1800000000000999999"


def _with_missing_ids(body: dict[str, Any], audience: str, group: str) -> dict[str, Any]:
    """``body`` with A's audience and ad group ids replaced by ids that exist nowhere."""
    text = json.dumps(body).replace(audience, MISSING_AUDIENCE).replace(group, MISSING_AD_GROUP)
    return json.loads(text)  # type: ignore[no-any-return]


def _masked(message: str) -> str:
    return re.sub(r"\d{19}", "<id>", message)
