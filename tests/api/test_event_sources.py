"""Event sources: TikTok's pixel and offline event set endpoints, the admin API for every kind,
``EventSources.resolve`` (what the Events API calls), tenancy, the official SDK, migrations.

One real server on 127.0.0.1 for the module; advertisers A and B, each with its own token.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import business_api_client as sdk
import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from business_api_client.api.measurement_api import MeasurementApi
from business_api_client.models.offline_create_body import OfflineCreateBody
from business_api_client.models.pixel_create_body import PixelCreateBody
from sqlalchemy import create_engine, inspect, text

from likewise.engine.sources import SourceKind
from likewise.errors import InvalidParameter, NotFound
from likewise.store.db import alembic_config, make_engine, migrate
from likewise.store.models import Base
from tests.conftest import ADMIN_TOKEN, Server, start_server

PIXEL_CREATE = "/pixel/create/"
PIXEL_LIST = "/pixel/list/"
PIXEL_UPDATE = "/pixel/update/"
OFFLINE_CREATE = "/offline/create/"
OFFLINE_GET = "/offline/get/"
OFFLINE_UPDATE = "/offline/update/"
OFFLINE_DELETE = "/offline/delete/"
PIXEL_CODE = re.compile(r"C[A-Z0-9]{19}")
MISSING_ID = "7300000000099999999"
ENVELOPE = {"code", "message", "request_id", "data"}

HTTP = httpx.Client(timeout=60)  # one client: httpx.request builds a new one per call


@dataclass
class World:
    server: Server
    a: str  # advertiser ids
    b: str
    token_a: str
    token_b: str

    def call(self, method: str, path: str, token: str, **kw: Any) -> dict[str, Any]:
        r = HTTP.request(method, self.server.api + path, headers={"Access-Token": token}, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == ENVELOPE, body
        if body["code"] == 0:
            assert body["message"] == "OK", body
        else:
            assert body["data"] == {} and body["message"], body
        return body  # type: ignore[no-any-return]

    def ok(self, method: str, path: str, token: str, **kw: Any) -> dict[str, Any]:
        body = self.call(method, path, token, **kw)
        assert body["code"] == 0, body
        return body["data"]  # type: ignore[no-any-return]

    def admin(
        self, method: str, path: str, token: str | None = ADMIN_TOKEN, **kw: Any
    ) -> dict[str, Any]:
        headers = {"X-Admin-Token": token} if token else {}
        r = HTTP.request(method, self.server.url + "/admin/v1" + path, headers=headers, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == ENVELOPE, body
        return body  # type: ignore[no-any-return]

    def admin_ok(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        body = self.admin(method, path, **kw)
        assert body["code"] == 0, body
        return body["data"]  # type: ignore[no-any-return]

    def pixel(self, adv: str, token: str, name: str = "Shop pixel", **kw: Any) -> dict[str, Any]:
        return self.ok(
            "POST", PIXEL_CREATE, token, json={"advertiser_id": adv, "pixel_name": name, **kw}
        )

    def event_set(self, adv: str, token: str, name: str = "Stores", **kw: Any) -> str:
        payload = {"advertiser_id": adv, "name": name, "description": "in-store sales", **kw}
        return str(self.ok("POST", OFFLINE_CREATE, token, json=payload)["event_set_id"])

    def pixels(self, adv: str, token: str, **params: Any) -> dict[str, Any]:
        return self.ok("GET", PIXEL_LIST, token, params={"advertiser_id": adv, **params})

    def event_sets(self, token: str, **params: Any) -> list[dict[str, Any]]:
        return self.ok("GET", OFFLINE_GET, token, params=params)["event_set_list"]  # type: ignore[no-any-return]

    def source(self, adv: str, kind: str, name: str = "source", **kw: Any) -> dict[str, Any]:
        payload = {"kind": kind, "name": name, **kw}
        return self.admin_ok("POST", f"/advertisers/{adv}/event-sources", json=payload)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    gen = start_server(tmp_path_factory.mktemp("sources") / "data")
    with contextlib.closing(gen):
        server = next(gen)
        a, token_a = server.advertiser("Alpha")
        b, token_b = server.advertiser("Beta")
        yield World(server, a, b, token_a, token_b)
    HTTP.close()


def fails(body: dict[str, Any], code: int, *words: str) -> None:
    assert body["code"] == code, body
    for w in words:
        assert w in body["message"], (w, body)


# --- pixels --------------------------------------------------------------------------------------


def test_pixel_create_returns_a_tiktok_style_pixel(world: World) -> None:
    adv, token = world.a, world.token_a
    data = world.pixel(adv, token, "Web shop", pixel_category="ONLINE_STORE", partner_name="Acme")
    assert set(data) == {
        "pixel_id",
        "pixel_code",
        "pixel_name",
        "pixel_category",
        "partner_name",
        "advanced_matching_fields",
    }
    assert PIXEL_CODE.fullmatch(data["pixel_code"]), data
    assert data["pixel_id"].isdigit() and data["pixel_name"] == "Web shop"
    assert data["pixel_category"] == "ONLINE_STORE" and data["partner_name"] == "Acme"
    assert data["advanced_matching_fields"] == {"email": True, "phone_number": True}
    # ids as integers are tolerated, like everywhere on the wire
    other = world.pixel(int(adv), token, "x" * 128)  # type: ignore[arg-type]
    assert other["pixel_code"] != data["pixel_code"] and other["pixel_name"] == "x" * 128
    (listed,) = world.pixels(adv, token, pixel_id=data["pixel_id"])["pixels"]
    assert {k: listed[k] for k in data} == data
    assert listed["pixel_setup_mode"] == "DEVELOPER"
    assert listed["activity_status"] == "INACTIVE"  # no event yet
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", listed["create_time"]), listed
    assert listed["events"] == []


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({}, "pixel_name", ["pixel_name is required"]),
        ({"pixel_name": ""}, "pixel_name", ["1 to 128 characters"]),
        ({"pixel_name": "   "}, "pixel_name", ["blank"]),
        ({"pixel_name": "x" * 129}, "pixel_name", ["1 to 128 characters"]),
        ({"pixel_name": 12}, "pixel_name", []),
        ({"pixel_name": "ok", "pixel_category": "SHOP"}, "pixel_category", ["ONLINE_STORE"]),
        ({"pixel_name": "ok", "advertiser_id": "abc"}, "advertiser_id", ["numeric id"]),
        ({"pixel_name": "ok", "advertiser_id": None}, "advertiser_id", []),
        ({"pixel_name": "ok", "partner_name": "p" * 257}, "partner_name", []),
    ],
)
def test_pixel_create_bad_input(
    world: World, payload: dict[str, Any], field: str, words: list[str]
) -> None:
    body = world.call(
        "POST", PIXEL_CREATE, world.token_a, json={"advertiser_id": world.a, **payload}
    )
    fails(body, 40002, field, *words)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b"12"])
@pytest.mark.parametrize(
    "path", [PIXEL_CREATE, PIXEL_UPDATE, OFFLINE_CREATE, OFFLINE_UPDATE, OFFLINE_DELETE]
)
def test_body_that_is_not_an_object(world: World, path: str, raw: bytes) -> None:
    body = world.call("POST", path, world.token_a, content=raw)
    fails(body, 40002, "body")


def test_pixel_list_pages_filters_and_order(world: World) -> None:
    adv, token = world.server.advertiser("Lister")
    names = ["Alpha 100%", "beta_1", "Gamma", "ALPHA two", "delta"]
    made = [world.pixel(adv, token, n) for n in names]
    ids = [p["pixel_id"] for p in made]

    def listed(**params: Any) -> tuple[list[str], dict[str, int]]:
        data = world.pixels(adv, token, **params)
        return [p["pixel_id"] for p in data["pixels"]], data["page_info"]

    assert listed() == (ids, {"page": 1, "page_size": 10, "total_number": 5, "total_page": 1})
    assert listed(order_by="LATEST_CREATE")[0] == ids[::-1]
    seen: list[str] = []
    for page in (1, 2, 3):
        got, info = listed(page=page, page_size=2)
        assert info == {"page": page, "page_size": 2, "total_number": 5, "total_page": 3}
        seen += got
    assert seen == ids
    assert listed(page=4, page_size=2) == (
        [],
        {"page": 4, "page_size": 2, "total_number": 5, "total_page": 3},
    )
    assert listed(page_size=20)[0] == ids
    # filters: id, code, name (case-insensitive part, '%' and '_' literal), filtering
    assert listed(pixel_id=ids[2])[0] == [ids[2]]
    assert listed(code=made[3]["pixel_code"])[0] == [ids[3]]
    assert listed(code=made[3]["pixel_code"].lower())[0] == []
    assert listed(name="alpha")[0] == [ids[0], ids[3]]
    assert listed(name="100%")[0] == [ids[0]]
    assert listed(name="a_1")[0] == [ids[1]]  # not "any one character"
    assert listed(name="%")[0] == [ids[0]]
    assert listed(pixel_id=MISSING_ID)[0] == []
    for flag in ("true", "false"):
        filtering = json.dumps({"available_for_catalog_only": flag == "true"})
        assert listed(filtering=filtering)[0] == ids  # no catalogs: every pixel is available


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"page_size": 21}, "page_size", 40002),
        ({"page_size": 0}, "page_size", 40002),
        ({"page": 0}, "page", 40002),
        ({"page": "first"}, "page", 40002),
        ({"order_by": "NEWEST"}, "order_by", 40002),
        ({"pixel_id": "C123"}, "pixel_id", 40002),
        ({"filtering": "{not json"}, "filtering", 40002),
        ({"filtering": "[]"}, "filtering", 40002),
        ({"filtering": '{"available_for_catalog_only": "maybe"}'}, "filtering", 40002),
        ({"advertiser_id": ""}, "advertiser_id", 40002),
    ],
)
def test_pixel_list_bad_input(world: World, params: dict[str, Any], field: str, code: int) -> None:
    body = world.call("GET", PIXEL_LIST, world.token_a, params={"advertiser_id": world.a, **params})
    fails(body, code, field)
    body = world.call("GET", PIXEL_LIST, world.token_a, params={})
    fails(body, 40002, "advertiser_id is required")


def test_pixel_update(world: World) -> None:
    adv, token = world.a, world.token_a
    pixel = world.pixel(adv, token, "Before")
    base = {"advertiser_id": adv, "pixel_id": pixel["pixel_id"]}

    def current() -> dict[str, Any]:
        (p,) = world.pixels(adv, token, pixel_id=pixel["pixel_id"])["pixels"]
        return p

    assert world.ok("POST", PIXEL_UPDATE, token, json={**base, "pixel_name": "After"}) == {}
    assert current()["pixel_name"] == "After"
    assert current()["pixel_code"] == pixel["pixel_code"]  # codes never change
    matching = {"email": False, "phone_number": True}
    payload = {**base, "pixel_name": "After", "advanced_matching_fields": matching}
    world.ok("POST", PIXEL_UPDATE, token, json=payload)
    assert current()["advanced_matching_fields"] == matching
    # a key left out takes its default from TikTok's file (true), not its previous value
    payload["advanced_matching_fields"] = {"phone_number": False}
    world.ok("POST", PIXEL_UPDATE, token, json=payload)
    assert current()["advanced_matching_fields"] == {"email": True, "phone_number": False}

    for bad, field in [
        ({"pixel_name": "x" * 129}, "pixel_name"),
        ({"pixel_name": ""}, "pixel_name"),
        ({"pixel_name": "ok", "pixel_id": "not-a-number"}, "pixel_id"),
        ({"pixel_name": "ok", "advanced_matching_fields": {"email": "perhaps"}}, "email"),
        ({"pixel_name": "ok", "advanced_matching_fields": [True]}, "advanced_matching_fields"),
    ]:
        fails(world.call("POST", PIXEL_UPDATE, token, json={**base, **bad}), 40002, field)
    assert current()["pixel_name"] == "After"

    # An unknown pixel, an event set's id and a deleted source read the same: 40007.
    missing = world.call(
        "POST", PIXEL_UPDATE, token, json={**base, "pixel_id": MISSING_ID, "pixel_name": "x"}
    )
    fails(missing, 40007, "pixel", MISSING_ID, "does not exist")
    event_set = world.event_set(adv, token)
    body = world.call(
        "POST", PIXEL_UPDATE, token, json={**base, "pixel_id": event_set, "pixel_name": "x"}
    )
    assert body["message"].replace(event_set, "<id>") == missing["message"].replace(
        MISSING_ID, "<id>"
    )
    world.admin_ok("DELETE", f"/event-sources/{pixel['pixel_id']}")
    body = world.call("POST", PIXEL_UPDATE, token, json={**base, "pixel_name": "x"})
    fails(body, 40007, pixel["pixel_id"])
    assert world.pixels(adv, token, pixel_id=pixel["pixel_id"])["pixels"] == []


def test_paths_without_trailing_slash(world: World) -> None:
    pixel = world.ok(
        "POST",
        PIXEL_CREATE.rstrip("/"),
        world.token_a,
        json={"advertiser_id": world.a, "pixel_name": "n"},
    )
    data = world.ok(
        "GET",
        PIXEL_LIST.rstrip("/"),
        world.token_a,
        params={"advertiser_id": world.a, "pixel_id": pixel["pixel_id"]},
    )
    assert len(data["pixels"]) == 1
    event_set = world.ok(
        "POST",
        OFFLINE_CREATE.rstrip("/"),
        world.token_a,
        json={"advertiser_id": world.a, "name": "n", "description": ""},
    )["event_set_id"]
    got = world.ok(
        "GET", OFFLINE_GET.rstrip("/"), world.token_a, params={"event_set_ids": f'["{event_set}"]'}
    )
    assert [s["event_set_id"] for s in got["event_set_list"]] == [event_set]
    base = {"advertiser_id": world.a, "event_set_id": event_set}
    world.ok("POST", OFFLINE_UPDATE.rstrip("/"), world.token_a, json={**base, "name": "m"})
    world.ok(
        "POST",
        PIXEL_UPDATE.rstrip("/"),
        world.token_a,
        json={"advertiser_id": world.a, "pixel_id": pixel["pixel_id"], "pixel_name": "m"},
    )
    world.ok("POST", OFFLINE_DELETE.rstrip("/"), world.token_a, json=base)


# --- offline event sets --------------------------------------------------------------------------


def test_offline_event_set_lifecycle(world: World) -> None:
    adv, token = world.server.advertiser("Offline")
    first = world.event_set(adv, token, "Stores EU", auto_tracking=True)
    second = world.event_set(adv, token, "Call centre")
    (got,) = world.event_sets(token, advertiser_id=adv, event_set_ids=f'["{first}"]')
    assert got == {
        "event_set_id": first,
        "advertiser_id": adv,
        "name": "Stores EU",
        "description": "in-store sales",
        "auto_tracking": True,
        "create_time": got["create_time"],
        "update_time": got["create_time"],
    }
    # every form of event_set_ids clients send; order as asked; without advertiser_id: the
    # token's advertisers
    for params in (
        {"event_set_ids": f'["{second}", "{first}"]'},
        {"event_set_ids": f"[{second},{first}]"},
        [("event_set_ids", second), ("event_set_ids", first)],
    ):
        listed = world.ok("GET", OFFLINE_GET, token, params=params)["event_set_list"]
        assert [s["event_set_id"] for s in listed] == [second, first]
    assert [s["event_set_id"] for s in world.event_sets(token)] == [first, second]
    assert [s["event_set_id"] for s in world.event_sets(token, name="CALL")] == [second]
    assert world.event_sets(token, name="nothing like it") == []
    assert world.event_sets(token, event_set_ids=f'["{first}"]', name="call") == []
    assert [s["event_set_id"] for s in world.event_sets(token, event_set_ids="[]")] == [
        first,
        second,
    ]

    base = {"advertiser_id": adv, "event_set_id": first}
    updated = world.ok("POST", OFFLINE_UPDATE, token, json={**base, "name": "Stores"})
    assert updated["name"] == "Stores" and updated["auto_tracking"] is True
    updated = world.ok("POST", OFFLINE_UPDATE, token, json={**base, "auto_tracking": False})
    assert updated["name"] == "Stores" and updated["auto_tracking"] is False
    assert world.ok("POST", OFFLINE_UPDATE, token, json=base) == updated  # nothing to change
    (got,) = world.event_sets(token, event_set_ids=f'["{first}"]')
    assert got == updated

    assert world.ok("POST", OFFLINE_DELETE, token, json=base) == {}
    assert [s["event_set_id"] for s in world.event_sets(token)] == [second]
    for path, payload in (
        (OFFLINE_DELETE, base),
        (OFFLINE_UPDATE, {**base, "name": "back"}),
    ):
        fails(world.call("POST", path, token, json=payload), 40007, "event set", first)
    body = world.call(
        "GET", OFFLINE_GET, token, params={"event_set_ids": f'["{second}", "{first}"]'}
    )
    fails(body, 40007, first, "does not exist")  # all or nothing


@pytest.mark.parametrize(
    ("path", "payload", "field", "code"),
    [
        (OFFLINE_CREATE, {"name": "n"}, "description", 40002),
        (OFFLINE_CREATE, {"description": ""}, "name", 40002),
        (OFFLINE_CREATE, {"name": "x" * 129, "description": ""}, "name", 40002),
        (OFFLINE_CREATE, {"name": " ", "description": ""}, "name", 40002),
        (OFFLINE_CREATE, {"name": "n", "description": "d" * 1025}, "description", 40002),
        (
            OFFLINE_CREATE,
            {"name": "n", "description": "", "auto_tracking": "maybe"},
            "auto_tracking",
            40002,
        ),
        (OFFLINE_UPDATE, {"event_set_id": "x1"}, "event_set_id", 40002),
        (OFFLINE_UPDATE, {"event_set_id": MISSING_ID, "name": ""}, "name", 40002),
        (OFFLINE_UPDATE, {"event_set_id": MISSING_ID}, "event set", 40007),
        (OFFLINE_DELETE, {}, "event_set_id", 40002),
        (OFFLINE_DELETE, {"event_set_id": "9" * 20}, "event_set_id", 40002),
        (OFFLINE_DELETE, {"event_set_id": MISSING_ID}, "event set", 40007),
    ],
)
def test_offline_bad_input(
    world: World, path: str, payload: dict[str, Any], field: str, code: int
) -> None:
    body = world.call("POST", path, world.token_a, json={"advertiser_id": world.a, **payload})
    fails(body, code, field)


def test_offline_get_bad_input(world: World) -> None:
    token = world.token_a
    fails(
        world.call("GET", OFFLINE_GET, token, params={"event_set_ids": "[x"}),
        40002,
        "event_set_ids",
    )
    fails(
        world.call("GET", OFFLINE_GET, token, params={"event_set_ids": '["abc"]'}),
        40002,
        "event_set_ids",
    )
    fails(
        world.call("GET", OFFLINE_GET, token, params={"advertiser_id": "A1"}),
        40002,
        "advertiser_id",
    )
    many = json.dumps([str(10**15 + i) for i in range(101)])
    fails(
        world.call("GET", OFFLINE_GET, token, params={"event_set_ids": many}),
        40011,
        "event_set_ids",
    )
    fails(
        world.call("GET", OFFLINE_GET, token, params={"event_set_ids": f'["{MISSING_ID}"]'}),
        40007,
        MISSING_ID,
    )


# --- tenancy -------------------------------------------------------------------------------------


def b_state(world: World) -> list[dict[str, Any]]:
    """Everything about B's sources, as the operator sees it."""
    return world.admin_ok("GET", f"/advertisers/{world.b}/event-sources")["list"]  # type: ignore[no-any-return]


def test_token_acting_for_another_advertiser(world: World) -> None:
    """A's token naming B's advertiser_id: 40001 on every endpoint, and B is unchanged."""
    pixel = world.pixel(world.b, world.token_b, "B pixel")
    event_set = world.event_set(world.b, world.token_b, "B stores")
    before = b_state(world)
    b = world.b
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", PIXEL_CREATE, {"json": {"advertiser_id": b, "pixel_name": "x"}}),
        ("GET", PIXEL_LIST, {"params": {"advertiser_id": b}}),
        (
            "POST",
            PIXEL_UPDATE,
            {"json": {"advertiser_id": b, "pixel_id": pixel["pixel_id"], "pixel_name": "x"}},
        ),
        ("POST", OFFLINE_CREATE, {"json": {"advertiser_id": b, "name": "x", "description": ""}}),
        ("GET", OFFLINE_GET, {"params": {"advertiser_id": b}}),
        ("GET", OFFLINE_GET, {"params": {"advertiser_id": b, "event_set_ids": f'["{event_set}"]'}}),
        (
            "POST",
            OFFLINE_UPDATE,
            {"json": {"advertiser_id": b, "event_set_id": event_set, "name": "x"}},
        ),
        ("POST", OFFLINE_DELETE, {"json": {"advertiser_id": b, "event_set_id": event_set}}),
    ]
    for method, path, kw in requests:
        for variant in (path, path.rstrip("/")):
            body = world.call(method, variant, world.token_a, **kw)
            fails(body, 40001, b, "permission")
    assert b_state(world) == before


def test_another_advertisers_pixel_and_event_set(world: World) -> None:
    """A's token with A's advertiser_id naming B's objects: exactly like objects that do not
    exist (same code, same words), no data, and B is unchanged."""
    pixel = world.pixel(world.b, world.token_b, "B secret pixel")
    event_set = world.event_set(world.b, world.token_b, "B secret stores")
    before = b_state(world)
    a, token = world.a, world.token_a

    def same_as_missing(theirs: str, attempt: Any) -> None:
        body, missing = attempt(theirs), attempt(MISSING_ID)
        assert body["code"] == missing["code"] == 40007, (body, missing)
        assert body["message"].replace(theirs, "<id>") == missing["message"].replace(
            MISSING_ID, "<id>"
        )

    same_as_missing(
        pixel["pixel_id"],
        lambda i: world.call(
            "POST",
            PIXEL_UPDATE,
            token,
            json={"advertiser_id": a, "pixel_id": i, "pixel_name": "mine now"},
        ),
    )
    for attempt in (
        lambda i: world.call(
            "GET", OFFLINE_GET, token, params={"advertiser_id": a, "event_set_ids": f'["{i}"]'}
        ),
        lambda i: world.call("GET", OFFLINE_GET, token, params={"event_set_ids": f'["{i}"]'}),
        lambda i: world.call(
            "POST",
            OFFLINE_UPDATE,
            token,
            json={"advertiser_id": a, "event_set_id": i, "name": "mine"},
        ),
        lambda i: world.call(
            "POST", OFFLINE_DELETE, token, json={"advertiser_id": a, "event_set_id": i}
        ),
    ):
        same_as_missing(event_set, attempt)
    # Lists never show them, whatever the filter.
    assert world.pixels(a, token, pixel_id=pixel["pixel_id"])["pixels"] == []
    assert world.pixels(a, token, code=pixel["pixel_code"])["pixels"] == []
    assert world.pixels(a, token, name="secret")["pixels"] == []
    assert all(
        p["pixel_id"] != pixel["pixel_id"] for p in world.pixels(a, token, page_size=20)["pixels"]
    )
    assert world.event_sets(token, name="secret") == []
    assert all(s["advertiser_id"] == a for s in world.event_sets(token))
    assert b_state(world) == before


# --- admin API -----------------------------------------------------------------------------------


def test_admin_sources_of_every_kind(world: World) -> None:
    adv, _ = world.server.advertiser("Operator's client")
    made = {
        kind: world.source(adv, kind, f"{kind} source")
        for kind in ("PIXEL", "APP", "OFFLINE", "CRM", "LEAD_FORM", "ACCOUNT")
    }
    events_api = {"PIXEL": "web", "APP": "app", "OFFLINE": "offline", "CRM": "crm"}
    for kind, src in made.items():
        assert src["kind"] == kind and src["advertiser_id"] == adv
        assert src["event_source"] == events_api.get(kind, kind.lower())
        if kind == "PIXEL":
            assert PIXEL_CODE.fullmatch(src["code"]), src
        else:
            assert src["code"] == src["event_source_id"]  # named by the decimal id
        assert world.admin_ok("GET", f"/event-sources/{src['event_source_id']}") == src
    assert made["OFFLINE"]["settings"] == {"description": "", "auto_tracking": False}
    assert made["PIXEL"]["settings"]["advanced_matching_fields"] == {
        "email": True,
        "phone_number": True,
    }

    listed = world.admin_ok("GET", f"/advertisers/{adv}/event-sources")
    assert [s["event_source_id"] for s in listed["list"]] == [
        s["event_source_id"] for s in made.values()
    ]
    assert listed["page_info"]["total_number"] == 6
    only = world.admin_ok("GET", f"/advertisers/{adv}/event-sources", params={"kind": "crm"})
    assert [s["kind"] for s in only["list"]] == ["CRM"]
    page = world.admin_ok(
        "GET", f"/advertisers/{adv}/event-sources", params={"page": 2, "page_size": 4}
    )
    assert len(page["list"]) == 2 and page["page_info"]["total_page"] == 2

    # codes of one's own for the kinds senders name by code
    app = world.source(
        adv,
        "app",
        "iOS app",
        code="7212345678901234567",
        settings={"platform": "IOS", "store_id": "id123"},
    )
    assert app["kind"] == "APP" and app["code"] == "7212345678901234567"
    pixel = world.source(adv, "PIXEL", "Mirrored", code="CABCDEFGHIJKLMNOPQRS")
    assert pixel["code"] == "CABCDEFGHIJKLMNOPQRS"
    same_code_other_kind = world.source(adv, "LEAD_FORM", "Form", code="CABCDEFGHIJKLMNOPQRS")
    assert same_code_other_kind["code"] == pixel["code"]  # unique within a kind only

    # patch: rename, merge settings, nothing else changes
    sid = made["OFFLINE"]["event_source_id"]
    patched = world.admin_ok(
        "PATCH",
        f"/event-sources/{sid}",
        json={"name": "Shops", "settings": {"auto_tracking": True}},
    )
    assert patched["name"] == "Shops" and patched["settings"] == {
        "description": "",
        "auto_tracking": True,
    }
    assert patched["code"] == made["OFFLINE"]["code"] and patched["kind"] == "OFFLINE"
    patched = world.admin_ok(
        "PATCH", f"/event-sources/{sid}", json={"settings": {"description": "EU"}}
    )
    assert patched["settings"] == {"description": "EU", "auto_tracking": True}
    assert patched["name"] == "Shops"

    # delete: gone from every read, and gone for good
    assert world.admin_ok("DELETE", f"/event-sources/{sid}") == {}
    fails(world.admin("GET", f"/event-sources/{sid}"), 40007, sid)
    fails(world.admin("PATCH", f"/event-sources/{sid}", json={"name": "x"}), 40007, sid)
    fails(world.admin("DELETE", f"/event-sources/{sid}"), 40007, sid)
    listed = world.admin_ok("GET", f"/advertisers/{adv}/event-sources")
    assert sid not in {s["event_source_id"] for s in listed["list"]}


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({"name": "n"}, "kind", 40002),
        ({"kind": "BEACON", "name": "n"}, "kind", 40002),
        ({"kind": "PIXEL"}, "name", 40002),
        ({"kind": "PIXEL", "name": ""}, "name", 40002),
        ({"kind": "PIXEL", "name": "x" * 129}, "name", 40002),
        ({"kind": "OFFLINE", "name": "n", "code": "123"}, "code", 40002),
        ({"kind": "CRM", "name": "n", "code": "123"}, "code", 40002),
        ({"kind": "APP", "name": "n", "code": "has space"}, "code", 40002),
        ({"kind": "APP", "name": "n", "code": "x" * 65}, "code", 40002),
        ({"kind": "APP", "name": "n", "code": ""}, "code", 40002),
        ({"kind": "PIXEL", "name": "n", "settings": {"colour": "red"}}, "settings.colour", 40002),
        (
            {"kind": "PIXEL", "name": "n", "settings": {"pixel_category": "SHOP"}},
            "settings.pixel_category",
            40002,
        ),
        (
            {
                "kind": "PIXEL",
                "name": "n",
                "settings": {"advanced_matching_fields": {"email": "yes"}},
            },
            "settings.advanced_matching_fields.email",
            40002,
        ),
        (
            {"kind": "OFFLINE", "name": "n", "settings": {"auto_tracking": "true"}},
            "settings.auto_tracking",
            40002,
        ),
        (
            {"kind": "APP", "name": "n", "settings": {"platform": "WINDOWS"}},
            "settings.platform",
            40002,
        ),
        (
            {"kind": "CRM", "name": "n", "settings": {"auto_tracking": True}},
            "settings.auto_tracking",
            40002,
        ),
        ({"kind": "CRM", "name": "n", "settings": []}, "settings", 40002),
    ],
)
def test_admin_create_bad_input(
    world: World, payload: dict[str, Any], field: str, code: int
) -> None:
    fails(world.admin("POST", f"/advertisers/{world.a}/event-sources", json=payload), code, field)


def test_admin_errors(world: World) -> None:
    world.source(world.a, "APP", "Taken", code="com.example.taken")
    body = world.admin(
        "POST",
        f"/advertisers/{world.b}/event-sources",
        json={"kind": "APP", "name": "n", "code": "com.example.taken"},
    )
    fails(body, 40002, "code", "already used")
    body = world.admin(
        "POST", f"/advertisers/{MISSING_ID}/event-sources", json={"kind": "APP", "name": "n"}
    )
    fails(body, 40007, MISSING_ID, "advertiser")
    fails(world.admin("GET", f"/advertisers/{MISSING_ID}/event-sources"), 40007, MISSING_ID)
    for bad in ("abc", "1" * 20, "-5"):
        fails(
            world.admin("POST", f"/advertisers/{bad}/event-sources", json={}),
            40002,
            "advertiser_id",
        )
        fails(world.admin("GET", f"/event-sources/{bad}"), 40002, "event_source_id")
    fails(world.admin("GET", f"/event-sources/{MISSING_ID}"), 40007, MISSING_ID)
    src = world.source(world.a, "CRM", "CRM set")
    for patch, field in [
        ({"name": ""}, "name"),
        ({"settings": {"description": 5}}, "settings.description"),
        ({"settings": {"platform": "IOS"}}, "settings.platform"),
    ]:
        fails(
            world.admin("PATCH", f"/event-sources/{src['event_source_id']}", json=patch),
            40002,
            field,
        )
    assert world.admin_ok("GET", f"/event-sources/{src['event_source_id']}") == src
    path = f"/advertisers/{world.a}/event-sources"
    fails(world.admin("GET", path, params={"kind": "NOPE"}), 40002, "kind")
    fails(world.admin("GET", path, params={"page_size": 0}), 40002, "page_size")
    fails(world.admin("GET", path, token=None), 40104, "X-Admin-Token")
    fails(world.admin("GET", path, token="wrong"), 40105)


def test_per_kind_limit(world: World) -> None:
    adv, token = world.server.advertiser("Limited")
    sources = world.server.runtime.sources
    sources.max_per_kind = 2
    try:
        first = world.pixel(adv, token, "one")
        world.pixel(adv, token, "two")
        fails(
            world.call(
                "POST", PIXEL_CREATE, token, json={"advertiser_id": adv, "pixel_name": "three"}
            ),
            40002,
            "at most 2",
        )
        world.event_set(adv, token)  # the limit is per kind
        world.admin_ok("DELETE", f"/event-sources/{first['pixel_id']}")
        world.pixel(adv, token, "three")  # deleted ones do not count
    finally:
        sources.max_per_kind = 1000


# --- resolve (the Events API's lookup) ----------------------------------------------------------


def test_resolve_every_kind(world: World) -> None:
    sources = world.server.runtime.sources
    a, b = int(world.a), int(world.b)
    event_source_of = {
        "PIXEL": "web",
        "APP": "app",
        "OFFLINE": "offline",
        "CRM": "crm",
        "LEAD_FORM": "lead_form",
        "ACCOUNT": "account",
    }
    for kind, event_source in event_source_of.items():
        mine = world.source(world.a, kind, f"resolvable {kind}")
        theirs = world.source(world.b, kind, f"B's {kind}")
        row = sources.resolve({a}, event_source, mine["code"])
        assert (row.id, row.kind, row.advertiser_id) == (int(mine["event_source_id"]), kind, a)
        assert sources.resolve({b, a}, event_source, mine["code"]).id == row.id
        if kind in ("OFFLINE", "CRM"):
            assert mine["code"] == mine["event_source_id"]  # the decimal id is the code

        with pytest.raises(NotFound) as missing:
            sources.resolve({a}, event_source, "C0000000000000000000")
        with pytest.raises(NotFound) as other:
            sources.resolve({a}, event_source, theirs["code"])
        assert other.value.field == missing.value.field == "event_source_id"
        assert other.value.message.replace(
            theirs["code"], "<code>"
        ) == missing.value.message.replace("C0000000000000000000", "<code>")
        with pytest.raises(NotFound):
            sources.resolve(set(), event_source, mine["code"])
        # the right code under another event_source is not a match
        wrong = "crm" if event_source != "crm" else "offline"
        with pytest.raises(NotFound):
            sources.resolve({a}, wrong, mine["code"])

        # by code alone (a browser's pixel code): whoever owns it
        assert sources.resolve_public(event_source, theirs["code"]).advertiser_id == b
        assert sources.resolve_public(event_source, mine["code"]).id == row.id

        world.admin_ok("DELETE", f"/event-sources/{mine['event_source_id']}")
        with pytest.raises(NotFound) as deleted:
            sources.resolve({a}, event_source, mine["code"])
        assert deleted.value.field == "event_source_id"
        with pytest.raises(NotFound):
            sources.resolve_public(event_source, mine["code"])

    with pytest.raises(InvalidParameter) as bad:
        sources.resolve({a}, "pixel", "C123")
    assert bad.value.field == "event_source" and "web" in bad.value.message
    with pytest.raises(InvalidParameter):
        sources.resolve_public("pixel", "C123")
    with pytest.raises(NotFound):
        sources.resolve_public("web", "")


def test_resolve_sees_changes_at_once(world: World) -> None:
    """resolve caches what it finds; a change through the API is seen on the next call."""
    sources = world.server.runtime.sources
    a = int(world.a)
    pixel = world.pixel(world.a, world.token_a, "cached")
    assert sources.resolve({a}, "web", pixel["pixel_code"]).name == "cached"
    world.ok(
        "POST",
        PIXEL_UPDATE,
        world.token_a,
        json={"advertiser_id": world.a, "pixel_id": pixel["pixel_id"], "pixel_name": "renamed"},
    )
    assert sources.resolve({a}, "web", pixel["pixel_code"]).name == "renamed"
    event_set = world.event_set(world.a, world.token_a)
    assert sources.resolve({a}, "offline", event_set).id == int(event_set)
    world.ok(
        "POST",
        OFFLINE_DELETE,
        world.token_a,
        json={"advertiser_id": world.a, "event_set_id": event_set},
    )
    with pytest.raises(NotFound):
        sources.resolve({a}, "offline", event_set)


def test_get_by_id(world: World) -> None:
    sources = world.server.runtime.sources
    src = world.source(world.b, "LEAD_FORM", "Signup form")
    row = sources.get_by_id(int(src["event_source_id"]))
    assert (
        row is not None and row.advertiser_id == int(world.b) and row.kind == SourceKind.LEAD_FORM
    )
    assert sources.get_by_id(int(MISSING_ID)) is None
    world.admin_ok("DELETE", f"/event-sources/{src['event_source_id']}")
    assert sources.get_by_id(int(src["event_source_id"])) is None
    gone = sources.get_by_id(int(src["event_source_id"]), include_deleted=True)
    assert gone is not None and gone.deleted


def test_activity_status(world: World) -> None:
    sources = world.server.runtime.sources
    pixel = world.pixel(world.a, world.token_a, "busy")
    sid = int(pixel["pixel_id"])

    def seen() -> tuple[str, str | None]:
        (p,) = world.pixels(world.a, world.token_a, pixel_id=pixel["pixel_id"])["pixels"]
        src = world.admin_ok("GET", f"/event-sources/{sid}")
        assert src["activity_status"] == p["activity_status"]
        return p["activity_status"], src["last_event_time"]

    now = world.server.runtime.clock()
    sources.record_activity([sid], now - timedelta(days=8))
    assert seen()[0] == "INACTIVE"
    sources.record_activity([sid], now)
    status, last = seen()
    assert status == "ACTIVE" and last is not None
    sources.record_activity([sid], now + timedelta(seconds=30))  # within a minute: no write
    assert seen()[1] == last
    sources.record_activity([sid], now + timedelta(minutes=2))
    assert seen()[1] != last
    sources.record_activity([], now)


# --- the official SDK ----------------------------------------------------------------------------


def test_official_sdk_creates_and_lists(world: World) -> None:
    adv, token = world.server.advertiser("SDK pixels")
    cfg = sdk.Configuration()
    cfg.host = world.server.url
    client = sdk.ApiClient(cfg)
    api = MeasurementApi(client)

    def last() -> dict[str, Any]:
        body = json.loads(client.last_response.data)
        assert set(body) == ENVELOPE and body["code"] == 0 and body["message"] == "OK", body
        return body["data"]  # type: ignore[no-any-return]

    api.pixel_create(token, body=PixelCreateBody(advertiser_id=adv, pixel_name="SDK pixel"))
    created = last()
    assert PIXEL_CODE.fullmatch(created["pixel_code"])
    api.pixel_list(adv, token, page=1, page_size=20)
    listed = last()
    assert [p["pixel_code"] for p in listed["pixels"]] == [created["pixel_code"]]
    assert listed["page_info"]["total_number"] == 1
    api.pixel_list(adv, token, code=created["pixel_code"], order_by="LATEST_CREATE")
    assert [p["pixel_id"] for p in last()["pixels"]] == [created["pixel_id"]]

    body = OfflineCreateBody(advertiser_id=adv, name="SDK stores", description="tills")
    api.offline_create(token, body=body)
    event_set = last()["event_set_id"]
    api.offline_get(token, advertiser_id=adv, event_set_ids=[event_set])
    assert [s["name"] for s in last()["event_set_list"]] == ["SDK stores"]


# --- schema --------------------------------------------------------------------------------------


def test_models_and_migrations_agree(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    engine = make_engine(url)
    migrate(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert "event_sources" not in inspect(engine).get_table_names()
    migrate(engine)
    assert "event_sources" in inspect(engine).get_table_names()
    engine.dispose()


@pytest.mark.skipif(
    not os.environ.get("LIKEWISE_TEST_POSTGRES_URL"),
    reason="LIKEWISE_TEST_POSTGRES_URL is not set (scripts/test sets it)",
)
def test_event_sources_on_postgres(tmp_path: Path) -> None:
    """The same schema and queries on PostgreSQL: migrations match the models, and sources are
    created, listed (name filter with a literal '%'), resolved, updated and deleted."""
    url = os.environ["LIKEWISE_TEST_POSTGRES_URL"]
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    gen = start_server(tmp_path / "data", database_url=url)
    with contextlib.closing(gen):
        server = next(gen)
        with server.runtime.db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        adv, token = server.advertiser("PG")
        world = World(server, adv, adv, token, token)
        pixel = world.pixel(adv, token, "100% pg")
        world.pixel(adv, token, "other")
        listed = world.pixels(adv, token, name="100%")["pixels"]
        assert [p["pixel_id"] for p in listed] == [pixel["pixel_id"]]
        event_set = world.event_set(adv, token)
        sources = server.runtime.sources
        assert sources.resolve({int(adv)}, "web", pixel["pixel_code"]).id == int(pixel["pixel_id"])
        assert sources.resolve({int(adv)}, "offline", event_set).id == int(event_set)
        world.ok(
            "POST",
            OFFLINE_UPDATE,
            token,
            json={"advertiser_id": adv, "event_set_id": event_set, "auto_tracking": True},
        )
        assert world.event_sets(token)[0]["auto_tracking"] is True
        world.ok(
            "POST", OFFLINE_DELETE, token, json={"advertiser_id": adv, "event_set_id": event_set}
        )
        with pytest.raises(NotFound):
            sources.resolve({int(adv)}, "offline", event_set)
