"""Platform engagement intake (``POST /admin/v1/engagement/track``) against a real server: every
event type stored with its columns, every refusal naming the field and storing nothing, and
resolution to platform users, including ``ttclid`` click ids carried by advertisers' events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest

from likewise.ingest.users import import_users
from tests.api.test_events_api import EVENT_TRACK, Shop, web_event
from tests.conftest import ADMIN_TOKEN, Server, start_server

TRACK = "/admin/v1/engagement/track"
serve = contextmanager(start_server)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("engagement")) as running:
        yield running


def post(server: Server, body: Any, token: str | None = ADMIN_TOKEN) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-Admin-Token": token} if token is not None else {}
    r = httpx.post(server.url + TRACK, content=raw, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"code", "message", "request_id", "data"}, answer
    return answer  # type: ignore[no-any-return]


def rows(server: Server, where: str = "true") -> list[dict[str, Any]]:
    """Stored events (every advertiser, after processing what was accepted)."""
    server.runtime.events.flush()
    source = server.runtime.events.store.sql_source()
    if source is None:
        return []
    con = duckdb.connect()
    try:
        cur = con.execute(f"SELECT * FROM {source} WHERE {where} ORDER BY eid")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def now() -> int:
    return int(time.time()) - 30


def event(kind: str, user: str, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "event_time": now(), "user_id": user, **fields}


# One event of every type, with the id each requires (and the optional fields it may carry).
EVERY_TYPE: list[dict[str, Any]] = [
    {"event": "ad_impression", "ad_id": "ad-1", "adgroup_id": "ag-1", "campaign_id": "c-1"},
    {"event": "ad_click", "ad_id": "ad-1", "ttclid": "E.C.P.every-type"},
    {
        "event": "video_play",
        "content_id": "v-1",
        "creator_id": "cr-1",
        "category": "cooking",
        "watched_seconds": 7.5,
        "duration_seconds": 30,
    },
    {"event": "like", "content_id": "v-1"},
    {"event": "comment", "content_id": "v-1"},
    {"event": "share", "content_id": "v-1"},
    {"event": "follow", "account_id": "acct-1"},
    {"event": "profile_visit", "account_id": "acct-1"},
    {"event": "live_view", "live_id": "live-1"},
    {"event": "lead_form_view", "form_id": "form-1"},
    {"event": "lead_form_submit", "form_id": "form-1"},
    {"event": "shop_product_view", "product_id": "p-1"},
    {"event": "shop_add_to_cart", "product_id": "p-1"},
    {"event": "shop_initiate_checkout", "product_id": "p-1", "value": 19.9, "currency": "USD"},
    {"event": "shop_purchase", "product_id": "p-1", "value": 19.9, "currency": "usd"},
]


def test_every_event_type_is_stored_with_its_columns(server: Server) -> None:
    advertiser_id, _token = server.advertiser("every-type")
    data = [
        {**fields, "event_time": now(), "user_id": " u-every ", "advertiser_id": advertiser_id}
        for fields in EVERY_TYPE
    ]
    data[0]["advertiser_id"] = int(advertiser_id)  # a number works too
    data[1]["event_id"] = "click-every-1"
    answer = post(server, {"data": data})
    assert (answer["code"], answer["message"], answer["data"]) == (0, "OK", {"accepted": 15})
    stored = rows(server, "user_ref = 'u-every'")
    assert [r["event"] for r in stored] == [f["event"] for f in EVERY_TYPE]
    assert {(r["channel"], r["source_id"], r["advertiser_id"]) for r in stored} == {
        ("engagement", 0, int(advertiser_id))
    }
    by = {r["event"]: r for r in stored}
    assert (by["ad_impression"]["ad_id"], by["ad_impression"]["adgroup_id"]) == ("ad-1", "ag-1")
    assert by["ad_impression"]["campaign_id"] == "c-1"
    assert (by["ad_click"]["ttclid"], by["ad_click"]["event_id"]) == (
        "E.C.P.every-type",
        "click-every-1",
    )
    play = by["video_play"]
    assert (play["content_id"], play["creator_id"], play["category"]) == ("v-1", "cr-1", "cooking")
    assert (play["watched_seconds"], play["watched_percent"]) == (7.5, 25.0)
    assert by["follow"]["account_id"] == by["profile_visit"]["account_id"] == "acct-1"
    assert by["live_view"]["live_id"] == "live-1"
    assert by["lead_form_submit"]["form_id"] == "form-1"
    purchase = by["shop_purchase"]
    assert (purchase["product_id"], purchase["value"], purchase["currency"]) == ("p-1", 19.9, "USD")
    assert abs(by["like"]["event_time"] - now()) < 120


def test_organic_activity_and_play_depth(server: Server) -> None:
    data = [
        event("video_play", "u-organic", content_id="v-9", watched_seconds=2, category="pets"),
        event("video_play", "u-organic", content_id="v-9", watched_seconds=90, duration_seconds=60),
        event("like", "u-organic", content_id="v-9", creator_id="cr-9", advertiser_id=None),
        event("share", "u-organic", content_id="v-9", event_time=time.time() * 1000),  # ms
    ]
    assert post(server, {"data": data})["data"] == {"accepted": 4}
    stored = rows(server, "user_ref = 'u-organic'")
    assert {r["advertiser_id"] for r in stored} == {0}  # organic: no advertiser owns it
    assert [(r["watched_seconds"], r["watched_percent"]) for r in stored[:2]] == [
        (2.0, None),  # no duration: seconds only
        (90.0, 100.0),  # replays: capped at the whole video
    ]
    assert abs(stored[3]["event_time"] - time.time()) < 120


def test_repeated_event_ids_are_dropped(server: Server) -> None:
    one = event("like", "u-dedup", content_id="v-1", event_id="like-dedup-1")
    assert post(server, {"data": [one]})["code"] == 0
    assert post(server, {"data": [one]})["code"] == 0  # a retry of an acknowledged request
    assert len(rows(server, "user_ref = 'u-dedup'")) == 1


def test_stats_count_what_was_received_and_dropped(server: Server) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime(now()))

    def likes() -> dict[str, Any]:
        server.runtime.events.flush()
        r = httpx.get(
            server.url + "/admin/v1/engagement/stats",
            params={"start_date": today, "end_date": today},
            headers={"X-Admin-Token": ADMIN_TOKEN},
        ).json()
        assert r["code"] == 0, r
        found = [s for s in r["data"]["stats"] if s["event"] == "like" and s["date"] == today]
        return found[0] if found else {"received": 0, "deduplicated": 0, "limited": 0}

    before = likes()
    one = event("like", "u-stats", content_id="v-9", event_id="like-stats-1")
    assert post(server, {"data": [one, one]})["code"] == 0
    after = likes()
    assert after["received"] - before["received"] == 2
    assert after["deduplicated"] - before["deduplicated"] == 1
    bad = httpx.get(
        server.url + "/admin/v1/engagement/stats",
        params={"start_date": "yesterday", "end_date": today},
        headers={"X-Admin-Token": ADMIN_TOKEN},
    ).json()
    assert bad["code"] == 40002 and "YYYY-MM-DD" in bad["message"], bad


# --- refused ----------------------------------------------------------------------------------


def refused(
    server: Server, body: Any, code: int, *words: str, token: str | None = ADMIN_TOKEN
) -> None:
    before = len(rows(server))
    answer = post(server, body, token)
    assert answer["code"] == code, (body if not isinstance(body, dict) else "", answer)
    assert answer["data"] == {}, answer
    for word in words:
        assert word in answer["message"], answer
    assert len(rows(server)) == before, "a refused request must store nothing"


def test_bad_requests_get_a_clear_error_and_store_nothing(server: Server) -> None:
    advertiser_id, _ = server.advertiser("bad-engagement")
    good = event("like", "u-bad", content_id="v-1", advertiser_id=advertiser_id)

    def second(**change: Any) -> dict[str, Any]:
        """A body whose second event is ``good`` changed: the first, good one is refused too."""
        bad = {k: v for k, v in {**good, **change}.items() if v is not ...}
        return {"data": [good, bad]}

    cases: list[tuple[Any, int, tuple[str, ...]]] = [
        (b"{not json", 40002, ("not valid JSON",)),
        (b"", 40002, ("empty",)),
        ([good], 40002, ("object",)),
        ({"data": []}, 40002, ("data",)),
        ({}, 40002, ("data is required",)),
        ({"data": [good] * 1001}, 40002, ("1001", "1000")),
        ({"data": [good], "extra": 1}, 40002, ("extra",)),
        (second(user_id=...), 40002, ("data[1].user_id is required",)),
        (second(user_id="  "), 40002, ("data[1].user_id",)),
        (second(user_id=123), 40002, ("data[1].user_id",)),
        (second(event="purchase"), 40002, ("data[1].event", "ad_click")),
        (second(event=...), 40002, ("data[1].event",)),
        (second(event_time=...), 40002, ("data[1].event_time",)),
        (second(event_time=86400), 40002, ("data[1].event_time", "past")),
        (second(event_time=time.time() + 3 * 86400), 40002, ("data[1].event_time", "future")),
        (second(event_time="yesterday"), 40002, ("data[1].event_time",)),
        (second(colour="red"), 40002, ("data[1].colour", "not a field")),
        (second(advertiser_id="acme"), 40002, ("data[1].advertiser_id",)),
        (second(advertiser_id=0), 40002, ("data[1].advertiser_id",)),
        (second(advertiser_id="99999999"), 40007, ("data[1].advertiser_id", "does not exist")),
        (second(ttclid="E.C.P.x"), 40002, ("data[1].ttclid", "ad_click")),
        (second(content_id="x" * 257), 40002, ("data[1].content_id",)),
        (second(event_id=7), 40002, ("data[1].event_id",)),
    ]
    for kind, needs in [
        ("ad_impression", "ad_id"),
        ("ad_click", "ad_id"),
        ("video_play", "content_id"),
        ("comment", "content_id"),
        ("follow", "account_id"),
        ("profile_visit", "account_id"),
        ("live_view", "live_id"),
        ("lead_form_view", "form_id"),
        ("lead_form_submit", "form_id"),
        ("shop_product_view", "product_id"),
        ("shop_purchase", "product_id"),
    ]:
        extra = {"watched_seconds": 1} if kind == "video_play" else {}
        cases.append(
            (
                {"data": [good, {**event(kind, "u-bad"), **extra}]},
                40002,
                (f"data[1].{needs} is required for {kind}",),
            )
        )
    play = {"event": "video_play", "content_id": "v-1"}
    cases += [
        (second(**play), 40002, ("data[1].watched_seconds is required",)),
        (second(**play, watched_seconds=-1), 40002, ("data[1].watched_seconds",)),
        (second(**play, watched_seconds="7"), 40002, ("data[1].watched_seconds",)),
        (
            second(**play, watched_seconds=3, duration_seconds=0),
            40002,
            ("data[1].duration_seconds",),
        ),
        (second(watched_seconds=3), 40002, ("data[1].watched_seconds", "video_play")),
        (
            second(event="shop_purchase", product_id="p", currency="dollars"),
            40002,
            ("data[1].currency", "ISO 4217"),
        ),
        (second(event="shop_purchase", product_id="p", value="19.90"), 40002, ("data[1].value",)),
        (second(value=3), 40002, ("data[1].value",)),
    ]
    for body, code, words in cases:
        refused(server, body, code, *words)
    # Without the admin token nothing is looked at.
    refused(server, {"data": [good]}, 40104, "X-Admin-Token", token=None)
    refused(server, {"data": [good]}, 40105, "X-Admin-Token", token="not-the-token")
    # ... and the server keeps serving.
    assert post(server, {"data": [good]})["data"] == {"accepted": 1}
    assert httpx.get(server.url + "/health", timeout=10).json()["code"] == 0


# --- resolution -------------------------------------------------------------------------------


def test_engagement_and_click_ids_resolve_to_platform_users(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        graph = server.runtime.graph
        import_users(graph, pa.table({"user_id": ["u1", "u2"], "country": ["US", "US"]}))
        shop = Shop(server, "clicks")
        adv = shop.advertiser_id

        def landing(i: int, ttclid: str) -> dict[str, Any]:
            page_event = web_event(i)
            page_event["user"] = {"ttclid": ttclid}
            return page_event

        def track(*events: dict[str, Any]) -> None:
            body = {"event_source": "web", "event_source_id": shop.pixel_code, "data": events}
            assert shop.post(EVENT_TRACK, body)["code"] == 0

        def owners() -> dict[str, int]:
            server.runtime.events.flush()
            return server.runtime.events.users_of_events(int(adv))

        def uid(user: str) -> int:
            with graph.connect() as con:
                return int(
                    con.execute("SELECT uid FROM users WHERE ext_id = ?", [user]).fetchall()[0][0]
                )

        u1, u2 = uid("u1"), uid("u2")
        # A click, then the advertiser's landing-page event carrying its click id.
        click = event("ad_click", "u1", ad_id="ad-1", ttclid="tc-1", event_id="click-1")
        assert post(server, {"data": [{**click, "advertiser_id": adv}]})["code"] == 0
        track(landing(1, "tc-1"))
        assert owners() == {"click-1": u1, "order-1": u1}
        # The landing event first, the click later (the ad server reports in batches).
        track(landing(2, "tc-2"))
        assert "order-2" not in owners()
        late = event("ad_click", "u2", ad_id="ad-1", ttclid="tc-2", event_id="click-2")
        assert post(server, {"data": [{**late, "advertiser_id": adv}]})["code"] == 0
        assert owners()["order-2"] == u2
        # A user the platform had not imported yet: kept, resolved once imported.
        unknown = event("ad_click", "u3", ad_id="ad-1", ttclid="tc-3", event_id="click-3")
        assert post(server, {"data": [{**unknown, "advertiser_id": adv}]})["code"] == 0
        track(landing(3, "tc-3"))
        assert {"click-3", "order-3"}.isdisjoint(owners())
        import_users(graph, pa.table({"user_id": ["u3"], "country": ["US"]}))
        assert owners()["click-3"] == owners()["order-3"] == uid("u3")
        # Consent: an opted-out user's events are stored and resolved, but not usable.
        server.admin("POST", "/users/consent", json={"user_ids": ["u2"], "personalized_ads": False})
        assert set(server.runtime.events.usable_uids(int(adv))) == {u1, uid("u3")}
        # Erasure removes the click, the event its click id resolved, and the click id link.
        erased = server.admin("POST", "/users/erase", json={"user_ids": ["u1"]})
        assert erased["data"] == {"erased": 1, "not_found": []}
        assert {"click-1", "order-1"}.isdisjoint(owners())
        track(landing(4, "tc-1"))
        assert "order-4" not in owners()
        assert set(server.runtime.events.usable_uids(int(adv))) == {uid("u3")}
