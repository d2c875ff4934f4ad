"""Likewise's own rule audiences (``POST /likewise/v1/audience/rule/create/``) against a real
server: TikTok's body plus AND between inclusion rules, ``min_count``, ``min_value`` and
``top_share``, with exact members; every bad extra is 40002 naming its field; TikTok's endpoint
keeps ignoring the extras."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa
import pytest

from likewise.ingest.users import import_users
from likewise.store.models import AudienceRule
from tests.api.test_events_api import EVENT_TRACK, Shop
from tests.api.test_rule_audiences import USERS, details, members, rule, serve, web
from tests.conftest import Server

OWN_RULE_CREATE = "/likewise/v1/audience/rule/create/"
TIKTOK_RULE_CREATE = "/dmp/custom_audience/rule/create/"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("own-rules"), min_audience_size=1) as running:
        import_users(
            running.runtime.graph,
            pa.table({"user_id": list(USERS), "email": list(USERS.values())}),
        )
        yield running


@pytest.fixture(scope="module")
def shop(server: Server) -> Shop:
    """Visits (Pageview), carts and purchases (with value) of u0-u5.

    Visits in the last 30 days: u0 3, u1 2 (+1 older), u2 4, u3 1.
    Purchases: u0 50 + 30, u1 100, u2 10, u3 5 (+200 at 40 days), u4 60; none for u5.
    Carts: u1, u4, u5."""
    shop = Shop(server, "own-rules")
    events = [
        *(web("u0", "Pageview", days_ago=d) for d in (1, 2, 3)),
        *(web("u1", "Pageview", days_ago=d) for d in (1, 2, 40)),
        *(web("u2", "Pageview", days_ago=d) for d in (1, 2, 3, 4)),
        web("u3", "Pageview", days_ago=1),
        web("u0", "CompletePayment", days_ago=1, value=50),
        web("u0", "CompletePayment", days_ago=5, value=30),
        web("u1", "CompletePayment", days_ago=2, value=100),
        web("u2", "CompletePayment", days_ago=3, value=10),
        web("u3", "CompletePayment", days_ago=4, value=5),
        web("u3", "CompletePayment", days_ago=40, value=200),
        web("u4", "CompletePayment", days_ago=6, value=60),
        *(web(u, "AddToCart", days_ago=1) for u in ("u1", "u4", "u5")),
    ]
    body = {"event_source": "web", "event_source_id": shop.pixel_code, "data": events}
    assert shop.post(EVENT_TRACK, body)["code"] == 0
    server.runtime.events.flush()
    return shop


def own(shop: Shop, path: str, body: Any, token: str | None = None) -> dict[str, Any]:
    """A call to Likewise's own API: same token header and envelope as TikTok's."""
    headers = {"Access-Token": token or shop.token} if token != "" else {}
    r = httpx.post(shop.server.url + path, headers=headers, json=body, timeout=120)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"code", "message", "request_id", "data"}, answer
    return answer  # type: ignore[no-any-return]


def body_of(shop: Shop, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "advertiser_id": shop.advertiser_id,
        "custom_audience_name": f"own rule {time.monotonic_ns()}",
        "audience_type": "PIXEL",
        "rule_spec": spec,
        **extra,
    }


def create(shop: Shop, spec: dict[str, Any], **extra: Any) -> str:
    answer = own(shop, OWN_RULE_CREATE, body_of(shop, spec, **extra))
    assert answer["code"] == 0 and answer["message"] == "OK", answer
    return answer["data"]["custom_audience_id"]  # type: ignore[no-any-return]


def including(*rules: dict[str, Any], operator: str = "OR", **more: Any) -> dict[str, Any]:
    return {"inclusion_rule_set": {"operator": operator, "rules": list(rules)}, **more}


def visits(shop: Shop, **extra: Any) -> dict[str, Any]:
    return {**rule(shop.pixel_id, "PAGE BROWSE"), **extra}


def purchases(shop: Shop, days: int = 30, **extra: Any) -> dict[str, Any]:
    return {**rule(shop.pixel_id, "COMPLETE PAYMENT", days=days), **extra}


# --- meaning -------------------------------------------------------------------------------------


def test_and_between_rules(server: Server, shop: Shop) -> None:
    carts = rule(shop.pixel_id, "ADD TO CART")
    both = create(shop, including(visits(shop), carts, operator="AND"))
    assert members(server, both) == {"u1"}
    either = create(shop, including(visits(shop), carts, operator="or"))
    assert members(server, either) == {"u0", "u1", "u2", "u3", "u4", "u5"}
    got = details(shop, both)
    assert got["audience_type"] == "Website Traffic" and got["is_auto_refresh"] is True
    with server.runtime.db.session() as s:
        stored = s.get(AudienceRule, int(both))
        assert stored is not None and stored.extended is True


def test_at_least_3_visits_in_30_days(server: Server, shop: Shop) -> None:
    audience_id = create(shop, including(visits(shop, min_count=3)))
    assert members(server, audience_id) == {"u0", "u2"}
    # A numeric string is read as the number, as TikTok's int64 fields are.
    assert members(server, create(shop, including(visits(shop, min_count="4")))) == {"u2"}


def test_min_value(server: Server, shop: Shop) -> None:
    audience_id = create(shop, including(purchases(shop, min_value=60)))
    assert members(server, audience_id) == {"u0", "u1", "u4"}  # 80, 100, 60 (inclusive)
    two = create(shop, including(purchases(shop, min_count=2, min_value="75.5")))
    assert members(server, two) == {"u0"}


def test_top_share_by_value(server: Server, shop: Shop) -> None:
    """Top 25 % of purchasers by value in 90 days: 5 purchasers, ceil(1.25) = 2 of them."""
    top = create(shop, including(purchases(shop, days=90, top_share=0.25)))
    assert members(server, top) == {"u3", "u1"}  # 205, 100
    half = create(shop, including(purchases(shop, top_share=0.5)))
    assert members(server, half) == {"u1", "u0", "u4"}  # ceil(2.5) = 3 of 5 in 30 days


def test_thresholds_in_exclusion_rules(server: Server, shop: Shop) -> None:
    """Purchasers, minus people with at least 3 visits; minus the top 20 % spender."""
    spec = including(
        purchases(shop),
        exclusion_rule_set={"operator": "OR", "rules": [visits(shop, min_count=3)]},
    )
    assert members(server, create(shop, spec)) == {"u1", "u3", "u4"}
    spec = including(
        purchases(shop), exclusion_rule_set={"rules": [purchases(shop, top_share=0.2)]}
    )
    assert members(server, create(shop, spec)) == {"u0", "u2", "u3", "u4"}


def test_stored_dialect_is_used_again_on_refresh(server: Server, shop: Shop) -> None:
    rt = server.runtime
    audience_id = create(shop, including(visits(shop, min_count=3)))
    assert members(server, audience_id) == {"u0", "u2"}
    rt.rules.evaluate(int(audience_id))
    assert members(server, audience_id) == {"u0", "u2"}


def test_tiktoks_endpoint_ignores_the_extras(server: Server, shop: Shop) -> None:
    """TikTok's wire format keeps its meaning: the extras are unknown keys there."""
    spec = including(visits(shop, min_count=3, top_share=0.1, min_value="abc"))
    answer = shop.post(TIKTOK_RULE_CREATE, body_of(shop, spec))
    assert answer["code"] == 0, answer
    assert members(server, answer["data"]["custom_audience_id"]) == {"u0", "u1", "u2", "u3"}
    with server.runtime.db.session() as s:
        stored = s.get(AudienceRule, int(answer["data"]["custom_audience_id"]))
        assert stored is not None and stored.extended is False
    # AND is not TikTok's: refused there, as before.
    answer = shop.post(TIKTOK_RULE_CREATE, body_of(shop, including(visits(shop), operator="AND")))
    assert answer["code"] == 40002, answer
    assert "rule_spec.inclusion_rule_set.operator" in answer["message"], answer


# --- errors --------------------------------------------------------------------------------------

RULE_1 = "rule_spec.inclusion_rule_set.rules[1]"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"min_count": 0}, f"{RULE_1}.min_count"),
        ({"min_count": "x"}, f"{RULE_1}.min_count"),
        ({"min_count": 2.5}, f"{RULE_1}.min_count"),
        ({"min_count": 10**7}, f"{RULE_1}.min_count"),
        ({"top_share": 0}, f"{RULE_1}.top_share"),
        ({"top_share": 1.5}, f"{RULE_1}.top_share"),
        ({"top_share": -0.1}, f"{RULE_1}.top_share"),
        ({"top_share": "a quarter"}, f"{RULE_1}.top_share"),
        ({"min_value": "NaN"}, f"{RULE_1}.min_value"),
        ({"min_value": "inf"}, f"{RULE_1}.min_value"),
        ({"min_value": "abc"}, f"{RULE_1}.min_value"),
        ({"min_value": True}, f"{RULE_1}.min_value"),
        ({"min_value": [5]}, f"{RULE_1}.min_value"),
        ({"min_cnt": 3}, f"{RULE_1}.min_cnt"),  # a misspelt threshold is not dropped silently
        ({"operator": "XOR"}, "rule_spec.inclusion_rule_set.operator"),
        ({"exclusion_operator": "AND"}, "rule_spec.exclusion_rule_set.operator"),
        ({"exclusion_min_count": 0}, "rule_spec.exclusion_rule_set.rules[0].min_count"),
    ],
)
def test_bad_extras_are_refused_naming_the_field(
    server: Server, shop: Shop, extra: dict[str, Any], field: str
) -> None:
    operator = extra.pop("operator", "OR")
    exclusion: dict[str, Any] = {"operator": extra.pop("exclusion_operator", "OR")}
    exclusion["rules"] = [purchases(shop, min_count=extra.pop("exclusion_min_count", 1))]
    spec = including(visits(shop), visits(shop, **extra), operator=operator)
    spec["exclusion_rule_set"] = exclusion
    rt = server.runtime
    advertiser_id = int(shop.advertiser_id)
    before = rt.audiences.list(advertiser_id=advertiser_id, ids=None, page=1, page_size=100)[1]
    answer = own(shop, OWN_RULE_CREATE, body_of(shop, spec))
    assert answer["code"] == 40002, answer
    assert answer["message"].startswith(field + " "), answer
    after = rt.audiences.list(advertiser_id=advertiser_id, ids=None, page=1, page_size=100)[1]
    assert after == before, "a refused rule creates nothing"


def test_the_tiktok_checks_still_apply(server: Server, shop: Shop) -> None:
    """Everything TikTok's endpoint checks is checked here too (sources, values, limits)."""
    other = Shop(server, f"other-{time.monotonic_ns()}")
    answer = own(shop, OWN_RULE_CREATE, body_of(shop, including(rule(other.pixel_id, "CONTACT"))))
    assert answer["code"] == 40002 and "event_source_ids[0]" in answer["message"], answer
    answer = own(shop, OWN_RULE_CREATE, body_of(shop, including(visits(shop, retention_days=0))))
    assert answer["code"] == 40002 and "retention_days" in answer["message"], answer
    answer = own(shop, OWN_RULE_CREATE, {"advertiser_id": shop.advertiser_id})
    assert answer["code"] == 40002 and "custom_audience_name" in answer["message"], answer


def test_auth_and_tenancy(server: Server, shop: Shop) -> None:
    body = body_of(shop, including(visits(shop)))
    assert own(shop, OWN_RULE_CREATE, body, token="")["code"] == 40104
    assert own(shop, OWN_RULE_CREATE, body, token="not-a-token")["code"] == 40105
    other = Shop(server, f"tenant-{time.monotonic_ns()}")
    answer = own(shop, OWN_RULE_CREATE, body, token=other.token)
    assert answer["code"] == 40001 and "no permission" in answer["message"], answer
    # Without the trailing slash too, as every TikTok path.
    answer = own(shop, OWN_RULE_CREATE.rstrip("/"), body)
    assert answer["code"] == 0, answer
