"""Events API 2.0 and 1.0 against a real server: what is accepted is counted exactly in
``pixel/event/stats/``; every refusal names the field and stores nothing."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import business_api_client
import duckdb
import fastapi.routing
import httpx
import pytest
from business_api_client.api.event_callback_api import EventCallbackApi

from tests.at_rest import contents
from tests.conftest import Server, start_server

EVENT_TRACK = "/event/track/"
PIXEL_TRACK = "/pixel/track/"
PIXEL_BATCH = "/pixel/batch/"
OFFLINE_TRACK = "/offline/track/"
OFFLINE_BATCH = "/offline/batch/"
STATS = "/pixel/event/stats/"
BODY_LIMIT = 256 * 1024
serve = contextmanager(start_server)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("events"), max_event_body_bytes=BODY_LIMIT) as running:
        yield running


class Shop:
    """An advertiser with a pixel and an offline event set."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.advertiser_id, self.token = server.advertiser(name)
        sources = server.runtime.sources
        pixel = sources.create(advertiser_id=int(self.advertiser_id), kind="PIXEL", name=name)
        offline = sources.create(advertiser_id=int(self.advertiser_id), kind="OFFLINE", name=name)
        self.pixel_id, self.pixel_code = str(pixel.id), pixel.code
        self.offline_id = offline.code

    def post(self, path: str, body: Any, token: str | None = None) -> dict[str, Any]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.server.call("POST", path, token or self.token, content=raw)

    def stats(self, pixel_id: str | None = None) -> dict[str, int]:
        """Totals over every day and event of one pixel (after processing what was accepted)."""
        self.server.runtime.events.flush()
        today = datetime.now(UTC).date().isoformat()
        body = self.server.call(
            "GET",
            STATS,
            self.token,
            params={
                "advertiser_id": self.advertiser_id,
                "pixel_ids": json.dumps([pixel_id or self.pixel_id]),
                "date_range": json.dumps({"start_date": "2026-01-01", "end_date": today}),
            },
        )
        assert body["code"] == 0, body
        totals = {"received": 0, "test": 0, "deduplicated": 0, "merged": 0, "limited": 0}
        for row in body["data"]["list"][0]["stats"]:
            for key in totals:
                totals[key] += row[key]
        return totals

    def stored(self) -> int:
        """Stored Parquet parts of this advertiser."""
        self.server.runtime.events.flush()
        return len(self.server.runtime.events.store.parts(int(self.advertiser_id)))

    def count(self) -> int:
        """Stored events of this advertiser."""
        self.server.runtime.events.flush()
        source = self.server.runtime.events.store.sql_source(int(self.advertiser_id))
        if source is None:
            return 0
        return int(duckdb.sql(f"SELECT count(*) FROM {source}").fetchall()[0][0])


def web_event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "event": "Purchase",
        "event_time": int(time.time()) - 60,
        "event_id": f"order-{i}",
        "user": {"email": sha(f"buyer{i}@example.com"), "phone": [sha("+14155550100")]},
        "page": {"url": "https://shop.example/checkout?x=1"},
        "properties": {"value": "19.90", "currency": "usd", "content_ids": ["sku-1"]},
        **extra,
    }


def track(shop: Shop, events: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"event_source": "web", "event_source_id": shop.pixel_code, "data": events, **extra}
    return shop.post(EVENT_TRACK, body)


# --- accepted ---------------------------------------------------------------------------------


def test_event_track_counts_exactly_what_was_accepted(server: Server) -> None:
    shop = Shop(server, "counts")
    body = track(shop, [web_event(i) for i in range(3)])
    assert (body["code"], body["message"], body["data"]) == (0, "OK", {}), body
    assert track(shop, [web_event(3)])["code"] == 0
    assert shop.stats()["received"] == 4
    assert track(shop, [web_event(i) for i in range(100, 110)])["code"] == 0
    assert shop.stats()["received"] == 14
    pixel = server.runtime.sources.get_by_id(int(shop.pixel_id))
    assert pixel is not None and pixel.last_event_at is not None  # pixel/list: ACTIVE


def test_every_event_source_kind_and_both_generations_of_names(server: Server) -> None:
    shop = Shop(server, "kinds")
    events = [web_event(i, event=name) for i, name in enumerate(["CompletePayment", "ViewContent"])]
    events.append(web_event(9, event="MyCustomEvent"))
    assert track(shop, events)["code"] == 0
    app = server.runtime.sources.create(
        advertiser_id=int(shop.advertiser_id), kind="APP", name="app", code="com.shop.app"
    )
    body = {
        "event_source": "app",
        "event_source_id": app.code,
        "data": [
            {
                "event": "InstallApp",
                "event_time": int(time.time()),
                "user": {"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "att_status": "DENIED"},
                "app": {"app_id": "com.shop.app"},
            }
        ],
    }
    assert shop.post(EVENT_TRACK, body)["code"] == 0
    assert shop.stats()["received"] == 3
    assert shop.stats(str(app.id))["limited"] == 1  # ATT denied: stored, never used


def test_duplicate_event_ids_are_dropped_and_counted(server: Server) -> None:
    shop = Shop(server, "dedup")
    track(shop, [web_event(1), web_event(2)])
    track(shop, [web_event(1)])  # a retry of an acknowledged event
    stats = shop.stats()
    assert (stats["received"], stats["deduplicated"]) == (3, 1)


def test_test_events_show_in_stats_but_are_not_stored(server: Server) -> None:
    shop = Shop(server, "test-events")
    assert track(shop, [web_event(1)], test_event_code="TEST123")["code"] == 0
    assert shop.stats()["test"] == 1
    assert shop.stored() == 0


def test_official_sdk_pixel_track_and_batch(server: Server) -> None:
    shop = Shop(server, "sdk")
    config = business_api_client.Configuration()
    config.host = server.url
    client = business_api_client.ApiClient(config)
    api = EventCallbackApi(client)

    def last() -> dict[str, Any]:
        """The raw envelope (the SDK returns only ``{data, request_id}``)."""
        assert client.last_response.status == 200
        return json.loads(client.last_response.data)  # type: ignore[no-any-return]

    context = {
        "page": {"url": "https://shop.example/p/1", "referrer": "https://tiktok.com"},
        "user": {"email": sha("sdk@example.com"), "ttp": "ttp-cookie-1"},
        "ad": {"callback": "E.C.P.abc"},
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0",
    }
    one = api.pixel_track(
        shop.token,
        body={
            "pixel_code": shop.pixel_code,
            "event": "ViewContent",
            "event_id": "v-1",
            "timestamp": datetime.now(UTC).isoformat(),
            "context": context,
            "properties": {"contents": [{"content_id": "sku-1", "price": 9.5, "quantity": 1}]},
        },
    )
    assert one["data"] == {} and last()["code"] == 0, last()
    batch = api.pixel_batch(
        shop.token,
        body={
            "pixel_code": shop.pixel_code,
            "batch": [
                {
                    "type": "track",
                    "event": "AddToCart",
                    "event_id": f"c-{i}",
                    "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                    "context": context,
                    "properties": {"value": 9.5, "currency": "EUR"},
                }
                for i in range(4)
            ],
        },
    )
    assert batch["data"] == {} and last()["code"] == 0, last()
    assert shop.stats()["received"] == 5


def test_offline_track_and_batch(server: Server) -> None:
    shop = Shop(server, "offline")
    user = {"email": [sha("store@example.com")], "phone_number": sha("+14155550100")}
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    one = shop.post(
        OFFLINE_TRACK,
        {
            "event_set_id": shop.offline_id,
            "event": "CompletePayment",
            "event_id": "till-1",
            "timestamp": now,
            "context": {"user": user},
            "properties": {"value": 42, "currency": "USD"},
        },
    )
    assert one["code"] == 0, one
    many = shop.post(
        OFFLINE_BATCH,
        {
            "event_set_id": shop.offline_id,
            "batch": [
                {
                    "event": "Purchase",
                    "event_id": f"till-{i}",
                    "timestamp": now,
                    "context": {"user": user},
                }
                for i in range(2, 5)
            ],
        },
    )
    assert many["code"] == 0, many
    assert shop.count() == 4


def test_properties_are_read_for_rules_and_kept_as_sent(server: Server) -> None:
    shop = Shop(server, "props")
    props = {
        "value": "19.90",
        "currency": " usd ",
        "content_type": "product",
        "content_id": "sku-9",
        "content_ids": [1, "sku-2"],
        "content_category": "shoes",
        "price": 7,
        "contents": [
            {"content_id": 3, "price": "5.5", "quantity": 2, "content_category": "socks"},
            {"content_id": "sku-4", "price": 12.25, "quantity": "1"},
            {"content_name": "no id, no price"},
        ],
        "description": "kept, though no rule reads it",
    }
    bare = {"event": "PageView", "event_id": "bare", "page": {"url": "https://shop.example/"}}
    bare["event_time"] = int(time.time()) - 60
    answer = track(shop, [web_event(1, properties=props), bare])
    assert answer["code"] == 0, answer
    shop.count()  # flushes
    source = server.runtime.events.store.sql_source(int(shop.advertiser_id))
    rows = duckdb.sql(
        f"""SELECT event_id, value, currency, content_type, content_ids, content_categories,
        prices, properties FROM {source} ORDER BY event_id"""
    ).fetchall()
    assert rows[0][:7] == ("bare", None, None, None, [], [], [])  # nothing made up
    assert rows[0][7] is None
    row = rows[1]
    assert row[:7] == (
        "order-1",
        19.9,
        "USD",
        "product",
        ["1", "sku-2", "sku-9", "3", "sku-4"],
        ["shoes", "socks"],
        [7.0, 5.5, 12.25],
    )
    assert json.loads(row[7]) == props


def test_events_are_stored_hashed_and_without_ip(server: Server) -> None:
    shop = Shop(server, "pii")
    event = web_event(1)
    event["user"]["ip"] = "198.51.100.77"
    event["user"]["user_agent"] = "PlantedAgent/1.0"
    track(shop, [event])
    server.runtime.events.flush()
    raw = b"".join(contents(p) for p in server.runtime.events.store.parts())
    assert b"198.51.100.77" not in raw and b"PlantedAgent" not in raw
    assert b"buyer1@example.com" not in raw


# --- refused ----------------------------------------------------------------------------------


def refused(shop: Shop, path: str, body: Any, code: int, *words: str) -> None:
    before = shop.stats()
    answer = shop.post(path, body)
    assert answer["code"] == code, answer
    for word in words:
        assert word in answer["message"], answer
    assert shop.stats() == before, "a refused request must store nothing"


def test_bad_requests_get_a_clear_error_and_store_nothing(server: Server) -> None:
    shop = Shop(server, "bad")
    ok_event = web_event(1)
    cases: list[tuple[str, Any, int, tuple[str, ...]]] = [
        (EVENT_TRACK, b"{not json", 40002, ("not valid JSON",)),
        (EVENT_TRACK, b"", 40002, ("empty",)),
        (
            EVENT_TRACK,
            b'{"event_source":"web","event_source_id":"%s","data":[{"event":"Purchase",'
            b'"event_time":%d,"page":{"url":"u"},"properties":{"name":"\xff"}}]}'
            % (shop.pixel_code.encode(), int(time.time())),
            40002,
            ("UTF-8",),
        ),
        (
            EVENT_TRACK,
            {
                "event_source": "web",
                "event_source_id": shop.pixel_code,
                "data": [{**ok_event, "properties": 5}],
            },
            40002,
            ("data[0].properties",),
        ),
        (EVENT_TRACK, [1, 2], 40002, ()),
        (EVENT_TRACK, {"event_source": "web", "data": [ok_event]}, 40002, ("event_source_id",)),
        (
            EVENT_TRACK,
            {"event_source": "tv", "event_source_id": shop.pixel_code, "data": [ok_event]},
            40002,
            ("event_source",),
        ),
        (
            EVENT_TRACK,
            {"event_source": "web", "event_source_id": shop.pixel_code, "data": []},
            40002,
            ("data",),
        ),
        (
            EVENT_TRACK,
            {
                "event_source": "web",
                "event_source_id": shop.pixel_code,
                "data": [
                    {"event": "Purchase", "event_time": int(time.time()), "page": {"url": "u"}}
                ]
                * 1001,
            },
            40002,
            ("1001", "1000"),
        ),
        (
            EVENT_TRACK,
            {
                "event_source": "web",
                "event_source_id": shop.pixel_code,
                "data": [ok_event, {**ok_event, "event_id": 12345}],
            },
            40002,
            ("data[1].event_id",),
        ),
        (
            EVENT_TRACK,
            {
                "event_source": "web",
                "event_source_id": shop.pixel_code,
                "data": [{**ok_event, "user": {"email": "Someone@Example.com"}}],
            },
            40062,
            ("data[0].user.email", "SHA-256"),
        ),
        (
            EVENT_TRACK,
            {
                "event_source": "web",
                "event_source_id": shop.pixel_code,
                "data": [{**ok_event, "user": {"phone": ["+14155550100"]}}],
            },
            40062,
            ("data[0].user.phone",),
        ),
        (
            EVENT_TRACK,
            {
                "event_source": "web",
                "event_source_id": shop.pixel_code,
                "data": [{**ok_event, "event_time": 86400}],
            },
            40002,
            ("data[0].event_time", "past"),
        ),
        (
            EVENT_TRACK,
            {
                "event_source": "web",
                "event_source_id": shop.pixel_code,
                "data": [{**ok_event, "event_time": "yesterday"}],
            },
            40002,
            ("data[0].event_time",),
        ),
        (
            EVENT_TRACK,
            {
                "event_source": "web",
                "event_source_id": shop.pixel_code,
                "data": [{**ok_event, "page": None}],
            },
            40002,
            ("data[0].page",),
        ),
        (
            EVENT_TRACK,
            {
                "event_source": "web",
                "event_source_id": shop.pixel_code,
                "data": [{**ok_event, "properties": {f"k{i}": "v" * 200 for i in range(99)}}],
            },
            40002,
            ("data[0].properties",),
        ),
        (
            EVENT_TRACK,
            {
                "event_source": "web",
                "event_source_id": shop.pixel_code,
                "data": [{**ok_event, "properties": {"value": "$19.90"}}],
            },
            40002,
            ("data[0].properties.value",),
        ),
        *(
            (
                EVENT_TRACK,
                {
                    "event_source": "web",
                    "event_source_id": shop.pixel_code,
                    "data": [ok_event, {**ok_event, "properties": props}],
                },
                40002,
                (field, problem),
            )
            for props, field, problem in [
                ({"currency": "dollars"}, "data[1].properties.currency", "ISO 4217"),
                ({"price": "1,000.00"}, "data[1].properties.price", "plain decimal"),
                (
                    {"contents": [{"price": 1}, {"price": "abc"}]},
                    "data[1].properties.contents[1].price",
                    "plain decimal",
                ),
                (
                    {"contents": [{"quantity": "two"}]},
                    "data[1].properties.contents[0].quantity",
                    "plain decimal",
                ),
                (
                    {"contents": [{"content_id": {"sku": 1}}]},
                    "data[1].properties.contents[0].content_id",
                    "expected",
                ),
                ({"content_ids": "sku-1"}, "data[1].properties.content_ids", "array"),
                ([1, 2], "data[1].properties", "object"),
            ]
        ),
        (
            EVENT_TRACK,
            {"event_source": "web", "event_source_id": "CUNKNOWNPIXEL0000000", "data": [ok_event]},
            40007,
            ("does not exist",),
        ),
        (
            PIXEL_TRACK,
            {"pixel_code": shop.pixel_code, "event": "ViewContent", "timestamp": "31/12/2025"},
            40002,
            ("timestamp",),
        ),
        (
            PIXEL_BATCH,
            {"pixel_code": shop.pixel_code, "batch": [{"event": "ViewContent"}, {"event": ""}]},
            40002,
            ("batch[1].event",),
        ),
        (
            OFFLINE_TRACK,
            {"event_set_id": shop.offline_id, "event": "MyCustom", "timestamp": ""},
            40002,
            ("standard",),
        ),
    ]
    for path, body, code, words in cases:
        refused(shop, path, body, code, *words)
    assert shop.stored() == 0


def test_oversized_body_is_refused_and_the_server_keeps_serving(server: Server) -> None:
    shop = Shop(server, "big")
    big = [web_event(i, properties={"description": "x" * 4000}) for i in range(100)]
    refused(
        shop,
        EVENT_TRACK,
        {"event_source": "web", "event_source_id": shop.pixel_code, "data": big},
        40002,
        "larger than",
    )
    assert track(shop, [web_event(1)])["code"] == 0
    assert httpx.get(server.url + "/health", timeout=10).json()["code"] == 0


def test_test_connection_call_gets_a_clear_answer(server: Server) -> None:
    shop = Shop(server, "connection")
    r = httpx.post(
        server.api + PIXEL_TRACK,
        headers={"Access-Token": shop.token},
        json={"pixel_code": shop.pixel_code, "timestamp": "", "context": {}},
        timeout=10,
    )
    assert r.status_code == 200
    assert r.json()["code"] == 40002 and "event is required" in r.json()["message"]


def test_another_advertisers_source_is_not_found(server: Server) -> None:
    mine, theirs = Shop(server, "mine"), Shop(server, "theirs")
    body = {"event_source": "web", "event_source_id": theirs.pixel_code, "data": [web_event(1)]}
    answer = mine.post(EVENT_TRACK, body)
    assert answer["code"] == 40007 and answer["data"] == {}
    stats = server.call(
        "GET",
        STATS,
        mine.token,
        params={
            "advertiser_id": mine.advertiser_id,
            "pixel_ids": json.dumps([theirs.pixel_id]),
            "date_range": json.dumps({"start_date": "2026-01-01", "end_date": "2026-12-31"}),
        },
    )
    assert stats["code"] == 40007 and stats["data"] == {}
    assert theirs.stats()["received"] == 0


def test_tokens(server: Server) -> None:
    shop = Shop(server, "tokens")
    body = {"event_source": "web", "event_source_id": shop.pixel_code, "data": [web_event(1)]}
    raw = json.dumps(body).encode()
    no_token = server.call("POST", EVENT_TRACK, None, content=raw)
    assert no_token["code"] == 40104
    bad_token = server.call("POST", EVENT_TRACK, "nope", content=raw)
    assert bad_token["code"] == 40105


def test_intake_routes_skip_the_router(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Events API's POST routes are answered before FastAPI's router
    (api.intake_routes.IntakeApp); everything else still goes through it, and errors keep their
    envelopes."""
    shop = Shop(server, "fast")
    solved: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    for path in (EVENT_TRACK, EVENT_TRACK.rstrip("/"), PIXEL_BATCH.rstrip("/"), OFFLINE_TRACK):
        body: dict[str, Any] = {"event_source": "web", "event_source_id": shop.pixel_code}
        body["data"] = [web_event(len(solved) + 1)]
        if path.startswith("/pixel"):
            body = {"pixel_code": shop.pixel_code, "batch": [{"event": "ViewContent"}]}
        if path.startswith("/offline"):
            body = {"event_set_id": shop.offline_id, "event": "Purchase"}
        assert shop.post(path, body)["code"] == 0, path
    assert shop.post(EVENT_TRACK, b"{")["code"] == 40002  # a domain error, same envelope
    assert server.call("POST", EVENT_TRACK, None, content=b"{}")["code"] == 40104
    assert solved == []  # none of these reached FastAPI's request handling
    assert server.call("GET", "/user/info/", shop.token)["code"] == 0
    assert solved, "the counter sees requests that do go through FastAPI"
    wrong_method = httpx.get(server.api + EVENT_TRACK, headers={"Access-Token": shop.token})
    assert wrong_method.status_code == 405  # FastAPI still answers other methods

    async def broken(_payload: bytes) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server.runtime.events.log, "append_async", broken)
    answer = track(shop, [web_event(99)])
    assert answer["code"] == 50000 and "disk" not in answer["message"]
    answer = shop.post("/pixel/track/", {"pixel_code": shop.pixel_code, "event": "ViewContent"})
    assert answer["code"] == 50000 and "disk" not in answer["message"]

    def failing(_token: str | None) -> None:
        raise RuntimeError("tenant store on fire")

    # Routes through FastAPI get the same envelope from errors.UnexpectedErrors.
    monkeypatch.setattr(server.runtime.tenants, "authenticate", failing)
    answer = server.call("GET", "/user/info/", shop.token)
    assert answer["code"] == 50000 and "fire" not in answer["message"]


def test_events_survive_a_restart_unprocessed(tmp_path: Path) -> None:
    """Acknowledged events still in the log when the server stops are processed at start."""
    with serve(tmp_path) as first:
        shop = Shop(first, "restart")
        first.runtime.events.stop_processing()  # nothing gets compacted before the stop
        assert track(shop, [web_event(i) for i in range(7)])["code"] == 0
        token, advertiser, pixel = shop.token, shop.advertiser_id, shop.pixel_id
    with serve(tmp_path) as second:
        second.runtime.events.flush()
        today = datetime.now(UTC).date().isoformat()
        body = second.call(
            "GET",
            STATS,
            token,
            params={
                "advertiser_id": advertiser,
                "pixel_ids": json.dumps([pixel]),
                "date_range": json.dumps({"start_date": "2026-01-01", "end_date": today}),
            },
        )
        assert sum(r["received"] for r in body["data"]["list"][0]["stats"]) == 7


def test_events_resolve_to_platform_users(tmp_path: Path) -> None:
    """Through the real API: a hashed e-mail finds its user; the pixel's browser id, once seen
    with it, finds the same user for the browser-only events before and after."""
    import pyarrow as pa

    from likewise.ingest.users import import_users

    with serve(tmp_path) as server:
        import_users(
            server.runtime.graph,
            pa.table({"user_id": ["u1"], "email": ["Shopper@Example.com"], "country": ["US"]}),
        )
        shop = Shop(server, "resolve")
        browse = web_event(1)
        browse["user"] = {"ttp": "cookie-1"}
        assert track(shop, [browse])["code"] == 0
        login = web_event(2)
        login["user"] = {"ttp": "cookie-1", "email": sha("shopper@example.com")}
        assert track(shop, [login])["code"] == 0
        server.runtime.events.flush()
        owners = server.runtime.events.users_of_events(int(shop.advertiser_id))
        assert set(owners) == {"order-1", "order-2"} and len(set(owners.values())) == 1
        # Erasing the user (admin API) removes their events and what was learned from them.
        erased = server.admin("POST", "/users/erase", json={"user_ids": ["u1"]})
        assert erased["data"] == {"erased": 1, "not_found": []}
        assert server.runtime.events.users_of_events(int(shop.advertiser_id)) == {}
        assert shop.count() == 0
