"""Simulated activity replayed through a real server: the statistics are exactly what the sim
expects, and every event the server resolves belongs to the user the sim says did it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from likewise.ingest.users import import_users
from likewise.sim import SimActivity, SimAdvertiser, generate_users, replay, simulate_activity
from tests.conftest import ADMIN_TOKEN, Server, start_server

serve = contextmanager(start_server)
DAY = 86400


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, pa.Table]]:
    with serve(tmp_path_factory.mktemp("replay")) as server:
        users = generate_users(2500, seed=5)
        import_users(server.runtime.graph, users)
        yield server, users


@dataclass
class Shop:
    advertiser: SimAdvertiser
    token: str
    pixel_id: str


def shop(server: Server, name: str, category: str) -> Shop:
    """An advertiser with a pixel (TikTok's pixel/create/) and an app (admin API)."""
    advertiser_id, token = server.advertiser(name)
    pixel = server.call(
        "POST", "/pixel/create/", token, json={"advertiser_id": advertiser_id, "pixel_name": name}
    )["data"]
    app_id = f"com.{name.lower()}.app"
    server.admin(
        "POST",
        f"/advertisers/{advertiser_id}/event-sources",
        json={"kind": "APP", "name": name, "code": app_id},
    )
    advertiser = SimAdvertiser(
        id=advertiser_id,
        category=category,
        pixel_code=pixel["pixel_code"],
        app_id=app_id,
        lead_form_id=f"{name}-form",
    )
    return Shop(advertiser, token, pixel["pixel_id"])


def simulate(users: pa.Table, s: Shop) -> SimActivity:
    end = time.time() - 60
    return simulate_activity(
        users, [s.advertiser], start=end - 30 * DAY, end=end, seed=9, scale=2.0, organic=0.1
    )


def stats(server: Server, act: SimActivity, source_code: str, kind: str) -> dict[str, int]:
    rt = server.runtime
    source = rt.sources.resolve({int(act.advertisers[0].id)}, kind, source_code)
    start = datetime.fromtimestamp(act.start, UTC).date()
    end = datetime.fromtimestamp(act.end, UTC).date()
    totals = {"received": 0, "deduplicated": 0, "merged": 0, "limited": 0}
    for row in rt.events.stats([source.id], start, end):
        for key in totals:
            totals[key] += row[key]
    return totals


def resolved_users(server: Server, advertiser_id: str) -> dict[str, str]:
    """``event_id`` -> platform user id of the advertiser's resolved events."""
    rt = server.runtime
    uids = rt.events.users_of_events(int(advertiser_id))
    with rt.graph.connect() as con:
        rows = rt.graph.uids_for(con, [f"u{i:08d}" for i in range(1, 2501)]).to_pylist()
    user_of_uid = {r["uid"]: r["ext_id"] for r in rows}
    return {event_id: user_of_uid[uid] for event_id, uid in uids.items()}


def check(server: Server, act: SimActivity, s: Shop, resolvable: set[str]) -> dict[str, str]:
    """Stats as expected; exactly the events matched by ``resolvable`` (web and app) resolve,
    each to its own user. Returns every resolved event's user."""
    server.runtime.events.flush()  # everything acknowledged is processed and resolved
    expected = act.expected(s.advertiser.id)
    assert stats(server, act, s.advertiser.pixel_code or "", "web") == expected["web"]
    assert stats(server, act, s.advertiser.app_id or "", "app") == expected["app"]
    resolved = resolved_users(server, s.advertiser.id)
    events = act.events.filter(pc.is_in(act.events["channel"], pa.array(["web", "app"])))
    should = {
        r["event_id"]: r["user_id"]
        for r in events.to_pylist()
        if r["match"] in resolvable and not r["limited"]
    }
    ids = set(events.column("event_id").to_pylist())
    got = {e: u for e, u in resolved.items() if e in ids}
    assert got == should
    assert len(should) == expected["resolved"] + (
        expected["click_only"] if "click" in resolvable else 0
    )
    return resolved


def test_replayed_web_and_app_events_resolve_to_their_users(
    platform: tuple[Server, pa.Table],
) -> None:
    server, users = platform
    s = shop(server, "Webshop", "fashion")
    act = simulate(users, s)
    sent = replay(act, server.url, access_token=s.token, kinds=("web", "pixel", "app"))
    for kind in ("web", "pixel", "app"):
        assert sent[kind].events > 0 and sent[kind].accepted == sent[kind].events, sent[kind]
    # Without the platform's ad clicks a ttclid alone resolves nothing.
    check(server, act, s, {"graph", "link"})


def test_replayed_engagement_resolves_its_users_and_clicks(
    platform: tuple[Server, pa.Table],
) -> None:
    """Needs the engagement intake (``POST /admin/v1/engagement/track``)."""
    server, users = platform
    s = shop(server, "Clickshop", "beauty")
    act = simulate(users, s)
    sent = replay(act, server.url, access_token=s.token, admin_token=ADMIN_TOKEN)
    for kind, result in sent.items():
        assert result.events > 0 and result.accepted == result.events, (kind, result)
    resolved = check(server, act, s, {"graph", "link", "click"})
    # The advertiser's engagement names its users: every such event resolves, to that user.
    engagement = {
        r["event_id"]: r["user_id"]
        for r in act.events.to_pylist()
        if r["channel"] == "engagement" and r["advertiser_id"] == s.advertiser.id
    }
    assert engagement and {e: resolved.get(e) for e in engagement} == engagement


def test_replay_reports_refusals(platform: tuple[Server, pa.Table]) -> None:
    server, users = platform
    s = shop(server, "Refused", "games")
    act = simulate(users.slice(0, 300), s)
    sent = replay(act, server.url, access_token="not-a-token", kinds=("web", "engagement"))
    assert sent["web"].accepted == 0 and sent["web"].bodies == len(act.web_bodies)
    assert any("40105" in message for message in sent["web"].errors)
    assert sent["engagement"].events == 0 and sent["engagement"].errors  # no admin token
