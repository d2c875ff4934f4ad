"""A retargeting story end to end (issue 6) on a real server with its event worker process:
site visitors who did not purchase, purchasers excluded. A purchase event takes the user out
of what the ad group may show them within seconds, through live rule audiences and the
membership serving endpoint the ad server calls."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from likewise.sim import generate_users, ground_truth_identifiers
from tests.conftest import Server

VISITORS = 150


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _rule(pixel_id: str, value: str) -> dict[str, Any]:
    return {
        "inclusion_rule_set": {
            "operator": "OR",
            "rules": [
                {
                    "event_source_ids": [pixel_id],
                    "retention_days": 30,
                    "filter_set": {
                        "operator": "OR",
                        "filters": [{"field": "EVENT", "operator": "EQ", "value": value}],
                    },
                }
            ],
        }
    }


def _track(server: Server, token: str, pixel_code: str, events: list[dict[str, Any]]) -> None:
    answer = server.call(
        "POST",
        "/event/track/",
        token,
        json={"event_source": "web", "event_source_id": pixel_code, "data": events},
    )
    assert answer["code"] == 0, answer


def _event(email: str, name: str, n: int) -> dict[str, Any]:
    return {
        "event": name,
        "event_time": int(time.time()) - 5,
        "event_id": f"{name}-{n}",
        "user": {"email": _sha(email)},
        "page": {"url": "https://shop.example/"},
    }


def _eligible(server: Server, user_id: str) -> list[str]:
    got = server.admin("GET", "/serving/adgroups", params={"user_id": user_id})
    return got["data"]["adgroup_ids"]  # type: ignore[no-any-return]


def _wait(predicate: Any, seconds: float = 20.0) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < seconds, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - start


def test_a_purchase_ends_retargeting_within_seconds(server: Server) -> None:
    users = generate_users(1000, seed=8)
    server.import_users(users)
    emails = ground_truth_identifiers(users).column("email_basic").to_pylist()
    ids = users.column("user_id").to_pylist()
    consent = users.column("personalized_ads").to_pylist()
    people = [(ids[i], emails[i]) for i in range(len(ids)) if emails[i] and consent[i]]
    visitors, others = people[:VISITORS], people[VISITORS : VISITORS + 20]

    advertiser_id, token = server.advertiser("Retailer")
    pixel = server.call(
        "POST", "/pixel/create/", token, json={"advertiser_id": advertiser_id, "pixel_name": "p"}
    )["data"]
    audiences = {}
    for name, value in (("visitors", "PAGE BROWSE"), ("purchasers", "COMPLETE PAYMENT")):
        made = server.call(
            "POST",
            "/dmp/custom_audience/rule/create/",
            token,
            json={
                "advertiser_id": advertiser_id,
                "custom_audience_name": name,
                "audience_type": "PIXEL",
                "is_auto_refresh": True,
                "rule_spec": _rule(pixel["pixel_id"], value),
            },
        )
        assert made["code"] == 0, made
        audiences[name] = made["data"]["custom_audience_id"]
    _track(
        server,
        token,
        pixel["pixel_code"],
        [_event(e, "Pageview", n) for n, (_, e) in enumerate(visitors)],
    )
    # Everyone but the first visitor already bought, so "purchasers" is large enough to use.
    buyers = visitors[1:] + others
    _track(
        server,
        token,
        pixel["pixel_code"],
        [_event(e, "CompletePayment", n) for n, (_, e) in enumerate(buyers)],
    )
    rt = server.runtime
    _wait(lambda: rt.serving.uid_of(visitors[0][0]) is not None)  # the import is served
    rt.events.flush()
    server.wait_jobs()
    visitors_id, purchasers_id = int(audiences["visitors"]), int(audiences["purchasers"])
    _wait(lambda: len(rt.audiences.current_members(visitors_id)) == VISITORS)
    _wait(lambda: len(rt.audiences.current_members(purchasers_id)) == len(buyers))

    group = server.likewise(
        "POST",
        "/adgroup/create/",
        token,
        json={
            "advertiser_id": advertiser_id,
            "adgroup_name": "come back",
            "audience_ids": [audiences["visitors"]],
            "excluded_audience_ids": [audiences["purchasers"]],
        },
    )
    assert group["code"] == 0, group
    group_id = group["data"]["adgroup_id"]
    first, _ = visitors[0]
    assert group_id in _eligible(server, first)  # visited, did not buy
    assert group_id not in _eligible(server, visitors[1][0])  # bought
    assert group_id not in _eligible(server, others[0][0])  # never visited

    # The purchase: out of the ad group within seconds.
    _track(server, token, pixel["pixel_code"], [_event(visitors[0][1], "CompletePayment", 999)])
    took = _wait(lambda: group_id not in _eligible(server, first), seconds=10)
    assert took < 10
    assert int(audiences["purchasers"]) in rt.serving.audiences_of(rt.serving.uid_of(first))
