"""Combined audiences (``POST /likewise/v1/audience/combined/create/``) against a real server:
exact members of any/all/exclude, parts that are shared or another advertiser's, updates when a
part changes (a customer file updated through TikTok's ``update/``, a rule audience evaluated
again after new events), nested combined audiences, and a deleted part."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import create_engine, delete, text

from likewise.ingest.users import import_users
from likewise.store.models import Audience, AudienceShare
from tests.api.test_events_api import EVENT_TRACK, Shop
from tests.api.test_own_rules import own
from tests.api.test_rule_audiences import USERS, rule, serve, web
from tests.conftest import CREATE, DELETE, LIST, UPDATE, Server

COMBINED_CREATE = "/likewise/v1/audience/combined/create/"
SETTLE = 10.0  # seconds an update may take (the worker reacts within a fraction of that)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("combined"), min_audience_size=1) as running:
        import_users(
            running.runtime.graph,
            pa.table({"user_id": list(USERS), "email": list(USERS.values())}),
        )
        yield running


@pytest.fixture(scope="module")
def shop(server: Server) -> Shop:
    return Shop(server, "combined-shop")


def file_audience(shop: Shop, users: list[str]) -> str:
    """A customer-file audience of these users (u0-u5), matched."""
    server = shop.server
    content = "\n".join(USERS[u] for u in users).encode()
    path = server.upload(shop.token, shop.advertiser_id, content)["data"]["file_path"]
    answer = server.call(
        "POST",
        CREATE,
        shop.token,
        json={
            "advertiser_id": shop.advertiser_id,
            "custom_audience_name": f"file {'+'.join(users)}",
            "calculate_type": "EMAIL_SHA256",
            "file_paths": [path],
        },
    )
    assert answer["code"] == 0, answer
    server.wait_jobs()
    return answer["data"]["custom_audience_id"]  # type: ignore[no-any-return]


def update_file(shop: Shop, audience_id: str, users: list[str], action: str) -> None:
    server = shop.server
    content = "\n".join(USERS[u] for u in users).encode()
    path = server.upload(shop.token, shop.advertiser_id, content)["data"]["file_path"]
    body = {
        "advertiser_id": shop.advertiser_id,
        "custom_audience_id": audience_id,
        "file_paths": [path],
        "action": action,
    }
    answer = server.call("POST", UPDATE, shop.token, json=body)
    assert answer["code"] == 0, answer


def combine(shop: Shop, spec: Any, **extra: Any) -> dict[str, Any]:
    body = {
        "advertiser_id": shop.advertiser_id,
        "custom_audience_name": f"combined {time.monotonic_ns()}",
        "combination_spec": spec,
        **extra,
    }
    return own(shop, COMBINED_CREATE, body)


def combined(shop: Shop, spec: Any) -> str:
    answer = combine(shop, spec)
    assert answer["code"] == 0 and answer["message"] == "OK", answer
    return answer["data"]["custom_audience_id"]  # type: ignore[no-any-return]


def state(server: Server, audience_id: str) -> tuple[str, str, set[str]]:
    """``(status, error_msg, members as platform user ids)`` now."""
    rt = server.runtime
    with rt.db.session() as s:
        row = s.get(Audience, int(audience_id))
        assert row is not None
        status, error = row.status, row.error_msg
    uids = rt.audiences.current_members(int(audience_id))
    with rt.graph.connect() as con:
        names = {int(u): e for u, e in con.execute("SELECT uid, ext_id FROM users").fetchall()}
    return status, error, {names[u] for u in uids}


def settled(server: Server, audience_id: str, expected: set[str]) -> None:
    """Wait (with a deadline) until the audience is READY with exactly ``expected``."""
    deadline = time.monotonic() + SETTLE
    while True:
        now = state(server, audience_id)
        if now[0] == "READY" and now[2] == expected:
            return
        assert time.monotonic() < deadline, (now, expected)
        time.sleep(0.05)


def failed(server: Server, audience_id: str) -> str:
    """Wait until the audience is FAILED; its error message."""
    deadline = time.monotonic() + SETTLE
    while True:
        status, error, _ = state(server, audience_id)
        if status == "FAILED":
            return error
        assert time.monotonic() < deadline, (status, error)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def parts(shop: Shop) -> dict[str, str]:
    """A = u0 u1 u2, B = u1 u2 u3, C = u2 u5 (never changed by the tests)."""
    return {
        "A": file_audience(shop, ["u0", "u1", "u2"]),
        "B": file_audience(shop, ["u1", "u2", "u3"]),
        "C": file_audience(shop, ["u2", "u5"]),
    }


# --- meaning -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"any_of": ["A", "B"]}, {"u0", "u1", "u2", "u3"}),
        ({"all_of": ["A", "B"]}, {"u1", "u2"}),
        ({"any_of": ["A", "B"], "exclude": ["C"]}, {"u0", "u1", "u3"}),
        ({"any_of": ["A", "B"], "all_of": ["C"]}, {"u2"}),
        ({"any_of": ["A", "C"], "all_of": ["B"], "exclude": []}, {"u1", "u2"}),
        ({"all_of": ["C"], "any_of": [], "exclude": ["A"]}, {"u5"}),
        ({"any_of": ["A", "A"]}, {"u0", "u1", "u2"}),  # a repeat means nothing more
    ],
)
def test_any_all_exclude(
    server: Server,
    shop: Shop,
    parts: dict[str, str],
    spec: dict[str, list[str]],
    expected: set[str],
) -> None:
    ids = {key: [parts[name] for name in names] for key, names in spec.items()}
    audience_id = combined(shop, ids)
    assert state(server, audience_id) == ("READY", "", expected)  # computed when created
    got = server.audience(shop.token, shop.advertiser_id, audience_id)
    details = got["audience_details"]
    assert details["audience_type"] == details["type"] == "Combined Audience"
    assert details["is_valid"] is True and details["cover_num"] == len(expected)
    assert got["audience_history"][-1]["action"] == "CREATE"
    detail = got["audience_history"][-1]["action_detail"]  # the definition, as ids
    assert all(i in detail for i in ids["any_of" if ids.get("any_of") else "all_of"]), detail


def test_listed_and_deleted_like_any_audience(
    server: Server, shop: Shop, parts: dict[str, str]
) -> None:
    audience_id = combined(shop, {"any_of": [int(parts["A"])]})  # ids as numbers are fine
    listed = server.call(
        "GET",
        LIST,
        shop.token,
        params={"advertiser_id": shop.advertiser_id, "custom_audience_ids": f'["{audience_id}"]'},
    )
    assert [a["audience_type"] for a in listed["data"]["list"]] == ["Combined Audience"]
    body = {"advertiser_id": shop.advertiser_id, "custom_audience_ids": [audience_id]}
    assert server.call("POST", DELETE, shop.token, json=body)["code"] == 0
    answer = combine(shop, {"any_of": [audience_id]})  # a deleted audience is no part
    assert answer["code"] == 40002, answer
    assert answer["message"] == (
        f"combination_spec.any_of[0] names custom audience {audience_id}, which does not exist"
    )


# --- updates -------------------------------------------------------------------------------------


def test_follows_a_customer_file_part_and_nested_audiences(
    server: Server, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = file_audience(shop, ["u0", "u1"])
    b = file_audience(shop, ["u1", "u2", "u3"])
    c = file_audience(shop, ["u2"])
    d = combined(shop, {"any_of": [a, b], "exclude": [c]})
    e = combined(shop, {"all_of": [d, b]})  # nested: built on a combined audience
    f = combined(shop, {"any_of": [e], "exclude": [a]})  # and once more
    assert state(server, d)[2] == {"u0", "u1", "u3"}
    assert state(server, e)[2] == {"u1", "u3"}
    assert state(server, f)[2] == {"u3"}

    update_file(shop, b, ["u4"], "APPEND")
    settled(server, d, {"u0", "u1", "u3", "u4"})
    settled(server, e, {"u1", "u3", "u4"})
    settled(server, f, {"u3", "u4"})

    update_file(shop, b, ["u3"], "REMOVE")
    settled(server, d, {"u0", "u1", "u4"})
    settled(server, e, {"u1", "u4"})
    settled(server, f, {"u4"})

    # Changes this soon after the last stored version are live membership, stored later (at
    # most one version per STORE_SECONDS); then it settles: nothing is stored again.
    rt = server.runtime
    assert rt.audiences.live_members(int(d)) is not None
    monkeypatch.setattr(rt.combined, "store_seconds", 0.2)
    expected = {d: {"u0", "u1", "u4"}, e: {"u1", "u4"}, f: {"u4"}}
    deadline = time.monotonic() + SETTLE
    while any(rt.audiences.live_members(int(i)) is not None for i in expected):
        assert time.monotonic() < deadline, "live membership was never stored"
        time.sleep(0.05)
    # Audiences.new_version drops the live copy before the caller commits: the version is
    # committed once the computation that stored it has finished.
    with rt.combined._compute:
        pass
    with rt.db.session() as s:
        rows = {i: s.get(Audience, int(i)) for i in expected}
    versions = {i: row.version for i, row in rows.items() if row is not None}
    for i, row in rows.items():
        assert row is not None and row.status == "READY"
        assert state(server, i)[2] == expected[i]  # now read from the stored version
    time.sleep(rt.combined.sweep_seconds + 0.5)
    with rt.db.session() as s:
        assert {i: s.get(Audience, int(i)).version for i in expected} == versions  # type: ignore[union-attr]


def test_follows_a_rule_part_evaluated_again(server: Server, shop: Shop) -> None:
    rt = server.runtime
    events = [web("u0", "AddToCart", days_ago=1), web("u1", "AddToCart", days_ago=1)]
    body = {"event_source": "web", "event_source_id": shop.pixel_code, "data": events}
    assert shop.post(EVENT_TRACK, body)["code"] == 0
    rt.events.flush()
    spec = {"inclusion_rule_set": {"operator": "OR", "rules": [rule(shop.pixel_id, "ADD TO CART")]}}
    answer = shop.post(
        "/dmp/custom_audience/rule/create/",
        {
            "advertiser_id": shop.advertiser_id,
            "custom_audience_name": "carts",
            "audience_type": "PIXEL",
            "rule_spec": spec,
        },
    )
    assert answer["code"] == 0, answer
    carts = answer["data"]["custom_audience_id"]
    without_u0 = file_audience(shop, ["u0"])
    # Created while the rule may still be calculating: it follows once the rule is ready.
    audience_id = combined(shop, {"any_of": [carts], "exclude": [without_u0]})
    settled(server, audience_id, {"u1"})

    body["data"] = [web("u3", "AddToCart", days_ago=0.5)]
    assert shop.post(EVENT_TRACK, body)["code"] == 0
    rt.events.flush()
    rt.rules.evaluate(int(carts))
    settled(server, audience_id, {"u1", "u3"})


def test_a_deleted_part_fails_it_and_what_is_built_on_it(server: Server, shop: Shop) -> None:
    a = file_audience(shop, ["u0", "u1"])
    gone = file_audience(shop, ["u1"])
    d = combined(shop, {"any_of": [a], "exclude": [gone]})
    e = combined(shop, {"any_of": [d, a]})
    settled(server, d, {"u0"})
    settled(server, e, {"u0", "u1"})
    body = {"advertiser_id": shop.advertiser_id, "custom_audience_ids": [gone]}
    assert shop.server.call("POST", DELETE, shop.token, json=body)["code"] == 0
    message = failed(server, d)
    assert gone in message and "deleted" in message, message
    message = failed(server, e)
    assert d in message and "failed" in message, message
    details = server.details(shop.token, shop.advertiser_id, d)
    assert details["is_valid"] is False and details["status"] == "FAILED"
    assert gone in details["msg"] and gone in details["error_msg"], details


# --- parts of other advertisers -------------------------------------------------------------------


def test_a_foreign_part_is_unknown_and_a_shared_one_works(server: Server, shop: Shop) -> None:
    other = Shop(server, f"other-{time.monotonic_ns()}")
    theirs = file_audience(other, ["u4", "u5"])
    unknown = "1234567890123"
    refused = combine(shop, {"any_of": [theirs]})
    assert refused["code"] == 40002, refused
    like_unknown = combine(shop, {"any_of": [unknown]})
    assert refused["message"].replace(theirs, "<id>") == like_unknown["message"].replace(
        unknown, "<id>"
    )
    assert refused["message"].startswith("combination_spec.any_of[0] ")

    rt = server.runtime
    now = datetime.now(UTC).replace(tzinfo=None)
    with rt.db.session() as s:
        s.add(
            AudienceShare(
                audience_id=int(theirs), advertiser_id=int(shop.advertiser_id), shared_at=now
            )
        )
    mine = file_audience(shop, ["u5"])
    audience_id = combined(shop, {"any_of": [theirs], "exclude": [mine]})
    assert state(server, audience_id) == ("READY", "", {"u4"})

    # The owner stops sharing: the part is no longer the advertiser's to use.
    with rt.db.session() as s:
        s.execute(delete(AudienceShare).where(AudienceShare.audience_id == int(theirs)))
    message = failed(server, audience_id)
    assert theirs in message and "no longer shared" in message, message


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (None, "combination_spec", "is required"),
        ("A", "combination_spec", "must be an object"),
        ({}, "combination_spec", "any_of or all_of"),
        ({"exclude": ["A"]}, "combination_spec", "any_of or all_of"),
        ({"any_of": [], "all_of": []}, "combination_spec", "any_of or all_of"),
        ({"any_of": "A"}, "combination_spec.any_of", "must be a list"),
        ({"any_of": ["A", "abc"]}, "combination_spec.any_of[1]", "audience id"),
        ({"all_of": ["A", True]}, "combination_spec.all_of[1]", "audience id"),
        ({"any_of": ["A"], "exclude": ["9" * 25]}, "combination_spec.exclude[0]", "audience id"),
        ({"anyof": ["A"]}, "combination_spec.anyof", "not a field"),
        ({"any_of": ["A"], "exclude": ["B", "A"]}, "combination_spec.exclude[1]", "also included"),
        ({"any_of": ["A", "99"]}, "combination_spec.any_of[1]", "does not exist"),
        ({"any_of": [str(i) for i in range(1, 22)]}, "combination_spec", "at most 20"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(
    server: Server, shop: Shop, parts: dict[str, str], spec: Any, field: str, words: str
) -> None:
    if isinstance(spec, dict):
        spec = {
            k: [parts.get(i, i) if isinstance(i, str) else i for i in v]
            if isinstance(v, list)
            else v
            for k, v in spec.items()
        }
    rt = server.runtime
    advertiser_id = int(shop.advertiser_id)
    before = rt.audiences.list(advertiser_id=advertiser_id, ids=None, page=1, page_size=100)[1]
    answer = combine(shop, spec) if spec is not None else combine(shop, None)
    assert answer["code"] == 40002, answer
    assert answer["message"].startswith(field + " ") and words in answer["message"], answer
    after = rt.audiences.list(advertiser_id=advertiser_id, ids=None, page=1, page_size=100)[1]
    assert after == before, "a refused combination creates nothing"


def test_auth_and_tenancy(server: Server, shop: Shop, parts: dict[str, str]) -> None:
    body = {
        "advertiser_id": shop.advertiser_id,
        "custom_audience_name": "combined",
        "combination_spec": {"any_of": [parts["A"]]},
    }
    assert own(shop, COMBINED_CREATE, body, token="")["code"] == 40104
    other = Shop(server, f"tenant-{time.monotonic_ns()}")
    answer = own(shop, COMBINED_CREATE, body, token=other.token)
    assert answer["code"] == 40001 and "no permission" in answer["message"], answer
    answer = own(shop, COMBINED_CREATE, {**body, "custom_audience_name": ""})
    assert answer["code"] == 40002 and "custom_audience_name" in answer["message"], answer


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.skipif(
    not os.environ.get("LIKEWISE_TEST_POSTGRES_URL"),
    reason="LIKEWISE_TEST_POSTGRES_URL is not set (scripts/test sets it)",
)
def test_own_api_on_postgres(tmp_path: Path) -> None:
    """Migration 0004 and the queries behind Likewise's own API on PostgreSQL: a rule audience
    in Likewise's dialect, a combined audience following a part, a deleted part."""
    url = os.environ["LIKEWISE_TEST_POSTGRES_URL"]
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    with serve(tmp_path / "data", min_audience_size=1, database_url=url) as pg:
        import_users(
            pg.runtime.graph, pa.table({"user_id": list(USERS), "email": list(USERS.values())})
        )
        shop = Shop(pg, "pg-shop")
        events = [web(u, "Pageview", days_ago=d) for u in ("u0", "u1") for d in (1, 2)]
        events.append(web("u2", "Pageview", days_ago=1))
        body = {"event_source": "web", "event_source_id": shop.pixel_code, "data": events}
        assert shop.post(EVENT_TRACK, body)["code"] == 0
        pg.runtime.events.flush()
        visits = {**rule(shop.pixel_id, "PAGE BROWSE"), "min_count": 2}
        answer = own(
            shop,
            "/likewise/v1/audience/rule/create/",
            {
                "advertiser_id": shop.advertiser_id,
                "custom_audience_name": "twice",
                "audience_type": "PIXEL",
                "rule_spec": {"inclusion_rule_set": {"operator": "AND", "rules": [visits]}},
            },
        )
        assert answer["code"] == 0, answer
        twice = answer["data"]["custom_audience_id"]
        pg.wait_jobs()
        a = file_audience(shop, ["u1", "u3"])
        gone = file_audience(shop, ["u5"])
        audience_id = combined(shop, {"any_of": [twice, a], "exclude": [gone]})
        settled(pg, audience_id, {"u0", "u1", "u3"})
        update_file(shop, a, ["u4"], "APPEND")
        settled(pg, audience_id, {"u0", "u1", "u3", "u4"})
        body = {"advertiser_id": shop.advertiser_id, "custom_audience_ids": [gone]}
        assert pg.call("POST", DELETE, shop.token, json=body)["code"] == 0
        assert gone in failed(pg, audience_id)
