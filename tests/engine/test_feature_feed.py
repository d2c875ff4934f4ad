"""Lookalike features fed by real event processing, end to end: platform engagement sent to a
real server (``POST /admin/v1/engagement/track``), processed (in the event worker process, or
in a thread when the runtime's clock is injected), merged into the feature store, and read
back per user and item: what counts and how much, users imported after their events, erasure,
and the backfill of a data directory whose events were stored before the feature store."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from likewise.runtime import utc_now
from tests.conftest import ADMIN_TOKEN, Server, start_server

TRACK = "/admin/v1/engagement/track"
MODES = ("worker", "thread")

serve = contextmanager(start_server)


def options(mode: str) -> dict[str, Any]:
    """``start_server`` arguments: the real clock keeps processing in the event worker; an
    injected one (the same time) keeps it in a thread of the server."""
    if mode == "thread":
        return {"clock": lambda: utc_now()}
    return {}


@contextmanager
def running(data_dir: Path, mode: str) -> Iterator[Server]:
    with serve(data_dir, **options(mode)) as server:
        assert (server.runtime.events.worker is not None) == (mode == "worker")
        yield server


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(tmp_path: Path, mode: str) -> Iterator[Server]:
    with running(tmp_path / "data", mode) as srv:
        yield srv


def track(server: Server, *events: dict[str, Any]) -> None:
    r = httpx.post(
        server.url + TRACK,
        content=json.dumps({"data": list(events)}).encode(),
        headers={"X-Admin-Token": ADMIN_TOKEN},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["code"] == 0, r.text
    assert r.json()["data"] == {"accepted": len(events)}


def import_users(server: Server, *user_ids: str) -> None:
    lines = ["user_id,email,country", *(f"{u},{u}@example.com,US" for u in user_ids)]
    body = server.admin(
        "POST", "/users/import", files={"file": ("users.csv", "\n".join(lines) + "\n")}
    )
    assert body["code"] == 0, body


def erase(server: Server, *user_ids: str) -> None:
    body = server.admin("POST", "/users/erase", json={"user_ids": list(user_ids)})
    assert body["code"] == 0 and body["data"]["erased"] == len(user_ids), body


def ext_ids(server: Server) -> dict[int, str]:
    with server.runtime.graph.connect() as con:
        return {int(u): str(e) for u, e in con.execute("SELECT uid, ext_id FROM users").fetchall()}


def features(server: Server) -> dict[tuple[str, str], float]:
    """Process what was accepted, merge, and read the weights per ``(user_id, item)``."""
    server.runtime.events.flush()
    server.runtime.features.merge(min_month=server.runtime.feature_min_month())
    assert server.runtime.features.pending() == 0
    m = server.runtime.features.read()
    users = ext_ids(server)
    return {
        (users.get(int(u), f"uid-{u}"), m.items[i]): round(float(w), 4)
        for u, i, w in zip(m.uid, m.item, m.w, strict=True)
    }


def at(seconds_ago: float = 60, **fields: Any) -> dict[str, Any]:
    return {"event_time": int(time.time() - seconds_ago), **fields}


def play(user: str, watched: float, duration: float | None = None, **fields: Any) -> dict:
    extra = {} if duration is None else {"duration_seconds": duration}
    return at(
        event="video_play",
        user_id=user,
        content_id="v-1",
        watched_seconds=watched,
        **extra,
        **fields,
    )


# What ann and bob do, and what it is worth (see likewise.ingest.features.WEIGHTS).
ENGAGEMENT = [
    play("ann", 15, 30, category="pets", creator_id="cr-1"),  # half watched: 1.5
    play("ann", 45, 30, category="pets", creator_id="cr-2"),  # replayed, capped: 2.0
    play("ann", 10, category="cooking"),  # no duration, no depth: 1.0
    at(event="like", user_id="ann", content_id="v-1", creator_id="cr-1", event_id="l-1"),
    at(event="like", user_id="ann", content_id="v-1", creator_id="cr-1", event_id="l-1"),  # dup
    at(event="comment", user_id="ann", content_id="v-1", category="pets"),
    at(event="follow", user_id="bob", account_id="acct-1"),
    at(event="profile_visit", user_id="bob", account_id="acct-1", category=""),
    at(event="share", user_id="bob", content_id="v-2", creator_id="cr-2"),
    at(event="live_view", user_id="bob", live_id="live-1", creator_id="cr-1"),
    at(event="like", user_id="bob", content_id="v-3"),  # names nothing features know
    # Ads and shop events follow targeting, not taste: they never count.
    at(event="ad_click", user_id="bob", ad_id="ad-1", category="pets", creator_id="cr-9"),
    at(event="ad_impression", user_id="ann", ad_id="ad-1", category="toys"),
    at(event="shop_product_view", user_id="ann", product_id="p-1", category="toys"),
    at(event="lead_form_submit", user_id="bob", form_id="f-1", account_id="acct-9"),
]
EXPECTED = {
    ("ann", "category:pets"): 1.5 + 2.0 + 3.0,
    ("ann", "creator:cr-1"): 1.5 + 2.0,
    ("ann", "creator:cr-2"): 2.0,
    ("ann", "category:cooking"): 1.0,
    ("bob", "account:acct-1"): 4.0 + 1.0,
    ("bob", "creator:cr-2"): 3.0,
    ("bob", "creator:cr-1"): 1.5,
}


def test_engagement_becomes_features(server: Server) -> None:
    import_users(server, "ann", "bob")
    track(server, *ENGAGEMENT)
    assert features(server) == EXPECTED
    first = server.runtime.features.read()
    # Nothing new: the same generation, nothing counted twice.
    generation = server.runtime.features.generation
    assert features(server) == EXPECTED
    assert server.runtime.features.generation == generation
    # More engagement adds to it; known items keep their ids.
    track(server, at(event="follow", user_id="ann", account_id="acct-1"))
    assert features(server) == {**EXPECTED, ("ann", "account:acct-1"): 4.0}
    assert server.runtime.features.read().items[: len(first.items)] == first.items


def test_users_imported_after_their_engagement(server: Server) -> None:
    import_users(server, "ann")
    track(
        server,
        at(event="like", user_id="ann", content_id="v-1", category="pets"),
        at(event="follow", user_id="carol", account_id="acct-7"),
        play("carol", 30, 30, category="pets"),
        at(event="ad_click", user_id="carol", ad_id="ad-1", category="pets"),
    )
    assert features(server) == {("ann", "category:pets"): 2.0}  # carol is nobody yet
    import_users(server, "carol")
    assert features(server) == {
        ("ann", "category:pets"): 2.0,
        ("carol", "account:acct-7"): 4.0,
        ("carol", "category:pets"): 2.0,
    }
    # Resolved once: later passes add nothing.
    track(server, at(event="like", user_id="carol", content_id="v-1", creator_id="cr-1"))
    assert features(server) == {
        ("ann", "category:pets"): 2.0,
        ("carol", "account:acct-7"): 4.0,
        ("carol", "category:pets"): 2.0,
        ("carol", "creator:cr-1"): 2.0,
    }


def test_erased_users_leave_the_features(server: Server) -> None:
    import_users(server, "ann", "bob")
    track(server, *ENGAGEMENT)
    assert features(server) == EXPECTED
    bob = {u: e for u, e in ext_ids(server).items() if e == "bob"}
    erase(server, "bob")
    # Engagement the ad server sends about bob afterwards never comes back.
    track(server, at(event="follow", user_id="bob", account_id="acct-2"))
    got = features(server)
    assert got == {k: w for k, w in EXPECTED.items() if k[0] == "ann"}
    assert not set(server.runtime.features.read().uid.tolist()) & set(bob)
    # Nothing of bob is left on disk in the feature store either (merged generations).
    names = {p.name for p in (server.data_dir / "features").glob("*.parquet")}
    generation = server.runtime.features.generation
    assert names == {f"base-{generation}.parquet", f"items-{generation}.parquet"}


def test_backfill_of_events_stored_before_the_feature_store(tmp_path: Path, mode: str) -> None:
    data = tmp_path / "data"
    with running(data, mode) as server:
        import_users(server, "ann", "bob")
        track(server, *ENGAGEMENT)
        # One user imported late: resolved later, stored, then backfilled too.
        track(server, at(event="follow", user_id="carol", account_id="acct-7"))
        server.runtime.events.flush()
        import_users(server, "carol")
        live = features(server)
    assert live == {**EXPECTED, ("carol", "account:acct-7"): 4.0}
    # Restarted as it is: what was stored is not read again.
    with running(data, mode) as server:
        assert features(server) == live
    # A data directory from before features existed.
    shutil.rmtree(data / "features")
    with running(data, mode) as server:
        assert features(server) == live
        assert (data / "features" / "backfilled").exists()
        # And the live path carries on from there.
        track(server, play("ann", 30, 30, category="pets"))  # watched to the end: 2.0
        pets = ("ann", "category:pets")
        assert features(server) == {**live, pets: live[pets] + 2}
    with running(data, mode) as server:
        assert features(server) == {**live, pets: live[pets] + 2}
