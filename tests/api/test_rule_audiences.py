"""Rule audiences through ``dmp/custom_audience/rule/create/`` against a real server: events go
in through the Events API and the engagement intake, the audience is evaluated by the batch
evaluator in the event worker, and list/get report it. Bad rules get 40002 naming the problem."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import business_api_client
import pyarrow as pa
import pytest
from business_api_client.api.audience_api import AudienceApi

from likewise.ingest.users import import_users
from likewise.store.models import Audience
from tests.api.test_events_api import EVENT_TRACK, Shop
from tests.conftest import Server, start_server

RULE_CREATE = "/dmp/custom_audience/rule/create/"
USERS = {f"u{i}": f"person{i}@example.com" for i in range(6)}
serve = contextmanager(start_server)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("rules"), min_audience_size=1) as running:
        import_users(
            running.runtime.graph,
            pa.table({"user_id": list(USERS), "email": list(USERS.values())}),
        )
        yield running


def web(
    user: str,
    event: str,
    *,
    days_ago: float = 0,
    url: str = "https://shop.example/",
    value: float | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event": event,
        "event_time": int(time.time() - days_ago * 86400) - 5,
        "event_id": event_id or f"{user}-{event}-{days_ago}-{url}",
        "user": {"email": sha(USERS[user])},
        "page": {"url": url},
    }
    if value is not None:
        ev["properties"] = {"value": value, "currency": "USD"}
    return ev


def rule(pixel_id: str, value: str, *, days: int = 30, **extra: Any) -> dict[str, Any]:
    filt: dict[str, Any] = {"field": "EVENT", "operator": "EQ", "value": value, **extra}
    return {
        "event_source_ids": [pixel_id],
        "retention_days": days,
        "filter_set": {"operator": "OR", "filters": [filt]},
    }


def members(server: Server, audience_id: str) -> set[str]:
    """The audience's members as platform user ids (exact: small audiences are not reported
    exactly on the wire), once its evaluation is done."""
    server.wait_jobs()
    rt = server.runtime
    with rt.db.session() as s:
        audience = s.get(Audience, int(audience_id))
        assert audience is not None
        assert audience.status == "READY", (audience.status, audience.error_msg)
    uids = rt.audiences.current_members(int(audience_id))
    with rt.graph.connect() as con:
        rows = con.execute("SELECT uid, ext_id FROM users").fetchall()
    names = {int(u): e for u, e in rows}
    return {names[u] for u in uids}


def details(shop: Shop, audience_id: str) -> dict[str, Any]:
    """``audience_details`` of one audience, as ``custom_audience/get/`` reports it."""
    got = shop.server.call(
        "GET",
        "/dmp/custom_audience/get/",
        shop.token,
        params={"advertiser_id": shop.advertiser_id, "custom_audience_ids": f'["{audience_id}"]'},
    )
    assert got["code"] == 0, got
    return got["data"]["list"][0]["audience_details"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def shop(server: Server) -> Shop:
    shop = Shop(server, "rule-shop")
    events = [
        web("u0", "CompletePayment", value=50),
        web("u1", "Purchase", days_ago=3, value=5, url="https://shop.example/sale/shoes"),
        web("u2", "Purchase", days_ago=40, value=80),  # outside a 30-day window
        web("u3", "AddToCart", days_ago=1),
        web("u4", "AddToCart", days_ago=2),
        web("u4", "CompletePayment", days_ago=1, value=20),  # bought: excluded from cart rule
        web("u5", "Pageview", url="https://shop.example/sale/hats"),
        web("u3", "Pageview", url="https://shop.example/new"),
    ]
    body = {"event_source": "web", "event_source_id": shop.pixel_code, "data": events}
    assert shop.post(EVENT_TRACK, body)["code"] == 0
    server.runtime.events.flush()
    return shop


def create(shop: Shop, audience_type: str, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {
        "advertiser_id": shop.advertiser_id,
        "custom_audience_name": f"rule {time.monotonic_ns()}",
        "audience_type": audience_type,
        "rule_spec": spec,
        **extra,
    }
    return shop.post(RULE_CREATE, body)


def test_purchasers_in_the_last_30_days(server: Server, shop: Shop) -> None:
    spec = {
        "inclusion_rule_set": {"operator": "OR", "rules": [rule(shop.pixel_id, "COMPLETE PAYMENT")]}
    }
    answer = create(shop, "PIXEL", spec)
    assert answer["code"] == 0, answer
    audience_id = answer["data"]["custom_audience_id"]
    assert members(server, audience_id) == {"u0", "u1", "u4"}
    got = details(shop, audience_id)
    assert got["audience_type"] == "Website Traffic"
    assert got["is_auto_refresh"] is True
    # `rule`: the definition as sent, as a JSON string (TikTok's field is a string).
    assert json.loads(got["rule"]) == {"audience_type": "PIXEL", "rule_spec": spec}


def test_cart_abandoners_exclude_buyers(server: Server, shop: Shop) -> None:
    spec = {
        "inclusion_rule_set": {"operator": "OR", "rules": [rule(shop.pixel_id, "ADD TO CART")]},
        "exclusion_rule_set": {
            "operator": "OR",
            "rules": [rule(shop.pixel_id, "PIXEL COMPLETE PAYMENT")],
        },
    }
    answer = create(shop, "PIXEL", spec)
    assert answer["code"] == 0, answer
    assert members(server, answer["data"]["custom_audience_id"]) == {"u3"}


def test_url_and_value_filters(server: Server, shop: Shop) -> None:
    sale = rule(
        shop.pixel_id,
        "PAGE BROWSE",
        parameter_filters=[{"field": "URL", "operator": "CONTAINS", "values": ["/sale/"]}],
    )
    spec = {"inclusion_rule_set": {"operator": "OR", "rules": [sale]}}
    answer = create(shop, "PIXEL", spec)
    assert answer["code"] == 0, answer
    assert members(server, answer["data"]["custom_audience_id"]) == {"u5"}
    big = rule(
        shop.pixel_id,
        "COMPLETE PAYMENT",
        parameter_filters=[{"field": "VALUE", "operator": "IS_GREATER_THAN", "values": ["10"]}],
    )
    answer_big = create(shop, "PIXEL", {"inclusion_rule_set": {"operator": "OR", "rules": [big]}})
    assert answer_big["code"] == 0, answer_big
    assert members(server, answer_big["data"]["custom_audience_id"]) == {"u0", "u4"}


def test_official_sdk_rule_create(server: Server, shop: Shop) -> None:
    config = business_api_client.Configuration()
    config.host = server.url
    api = AudienceApi(business_api_client.ApiClient(config))
    body = {
        "advertiser_id": shop.advertiser_id,
        "custom_audience_name": "sdk rule",
        "audience_type": "PIXEL",
        "rule_spec": {
            "inclusion_rule_set": {
                "operator": "OR",
                "rules": [rule(shop.pixel_id, "COMPLETE PAYMENT", days=7)],
            }
        },
    }
    answer = api.dmp_custom_audience_rule_create(shop.token, body=body)
    data = answer["data"] if isinstance(answer, dict) else answer.data
    audience_id = data["custom_audience_id"]
    assert members(server, audience_id) == {"u0", "u1", "u4"}


@pytest.mark.parametrize(
    ("spec_change", "words"),
    [
        ({"value": "TELEPORTED"}, ["TELEPORTED"]),
        ({"days": 0}, ["retention_days"]),
        ({"days": 400}, ["retention_days"]),
        ({"rules": 6}, ["rules"]),
        (
            {
                "parameter_filters": [
                    {"field": "URL", "operator": "IS_GREATER_THAN", "values": ["5"]}
                ]
            },
            ["URL"],
        ),
        ({"pixel": "other"}, ["event_source_ids"]),
    ],
)
def test_bad_rules_are_refused_naming_the_problem(
    server: Server, shop: Shop, spec_change: dict[str, Any], words: list[str]
) -> None:
    pixel = shop.pixel_id
    if spec_change.get("pixel") == "other":
        pixel = Shop(server, f"other-{time.monotonic_ns()}").pixel_id
    r = rule(
        pixel,
        spec_change.get("value", "COMPLETE PAYMENT"),
        days=spec_change.get("days", 30),
        **(
            {"parameter_filters": spec_change["parameter_filters"]}
            if "parameter_filters" in spec_change
            else {}
        ),
    )
    rules = [r] * spec_change.get("rules", 1)
    before = server.runtime.audiences.list(
        advertiser_id=int(shop.advertiser_id), ids=None, page=1, page_size=100
    )[1]
    answer = create(shop, "PIXEL", {"inclusion_rule_set": {"operator": "OR", "rules": rules}})
    assert answer["code"] == 40002, answer
    for word in words:
        assert word in answer["message"], answer
    after = server.runtime.audiences.list(
        advertiser_id=int(shop.advertiser_id), ids=None, page=1, page_size=100
    )[1]
    assert after == before, "a refused rule creates nothing"


def test_another_advertisers_audience_cannot_be_created(server: Server, shop: Shop) -> None:
    other = Shop(server, f"tenant-{time.monotonic_ns()}")
    spec = {
        "inclusion_rule_set": {"operator": "OR", "rules": [rule(other.pixel_id, "ADD TO CART")]}
    }
    answer = create(shop, "PIXEL", spec, advertiser_id=other.advertiser_id)  # shop's token
    assert answer["code"] == 40001 and "no permission" in answer["message"], answer


def test_a_rule_whose_pixel_is_gone_shows_failed_with_the_reason(
    server: Server, shop: Shop
) -> None:
    """Jobs never hang: an evaluation that cannot run shows FAILED and why in get."""
    rt = server.runtime
    pixel = rt.sources.create(advertiser_id=int(shop.advertiser_id), kind="PIXEL", name="gone")
    spec = {"inclusion_rule_set": {"operator": "OR", "rules": [rule(str(pixel.id), "ADD TO CART")]}}
    answer = create(shop, "PIXEL", spec)
    assert answer["code"] == 0, answer
    audience_id = answer["data"]["custom_audience_id"]
    assert members(server, audience_id) == set()  # no events on this pixel yet: empty, READY
    rt.sources.delete(advertiser_id=int(shop.advertiser_id), source_id=pixel.id)
    rt.rules.evaluate(int(audience_id))
    server.wait_jobs()
    got = details(shop, audience_id)
    assert got["is_valid"] is False
    assert "not one of yours" in got["error_msg"], got


def test_refreshes_do_not_pile_up_finished_jobs(server: Server, shop: Shop) -> None:
    from datetime import timedelta

    from sqlalchemy import func, select, update

    from likewise.engine.rule_audiences import EVALUATE_RULE
    from likewise.store.models import Job

    rt = server.runtime
    spec = {"inclusion_rule_set": {"operator": "OR", "rules": [rule(shop.pixel_id, "ADD TO CART")]}}
    assert create(shop, "PIXEL", spec)["code"] == 0
    server.wait_jobs()
    old = rt.clock() - timedelta(hours=2)
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.kind == EVALUATE_RULE).values(finished_at=old))
    rt.rules.refresh_due()
    server.wait_jobs()
    with rt.db.session() as s:
        stale = s.execute(
            select(func.count()).where(Job.kind == EVALUATE_RULE, Job.finished_at == old)
        ).scalar_one()
    assert stale == 0
