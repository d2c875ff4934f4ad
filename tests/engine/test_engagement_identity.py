"""Platform engagement events and ``ttclid`` click ids through identity resolution, over a real
identity graph, log and event store: the platform user id, click ids registered by ad clicks
(before and after the events that carry them), users imported later, erasure, and the usable
events audiences may be built from (consent, limited data use, merged copies)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from likewise.ingest.intake import EventIntake, usable_events_sql
from likewise.ingest.records import EventRecord, encode_batch
from likewise.settings import Settings
from tests.at_rest import contents
from tests.engine.test_event_identity import T0, World, ev, sha

ANN_MAIL = sha("ann.lee@example.com")
BOB_MAIL = sha("bob@example.com")


def engagement(
    event_id: str, user: str, event: str = "like", *, advertiser: int = 7, **fields: object
) -> EventRecord:
    return EventRecord(
        source_id=0,
        advertiser_id=advertiser,
        channel="engagement",
        event=event,
        event_time=T0 - 30,
        received_at=T0,
        event_id=event_id,
        user_ref=user,
        **fields,  # type: ignore[arg-type]
    )


def click(event_id: str, user: str, ttclid: str, *, advertiser: int = 7) -> EventRecord:
    return engagement(
        event_id, user, "ad_click", advertiser=advertiser, ad_id="ad-1", ttclid=ttclid
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    w.users(
        {
            "ann": {"email": "Ann.Lee@Example.com"},
            "bob": {"email": "bob@example.com"},
        }
    )
    yield w
    w.log.close()
    w.store.close()


def test_engagement_resolves_by_the_platform_user_id(world: World) -> None:
    world.send(
        engagement("like-1", "ann"),
        engagement("follow-1", "bob", "follow", account_id="acct-1"),
        engagement("organic", "ann", "video_play", advertiser=0, content_id="v1"),
        engagement("stranger", "nobody-yet"),
    )
    ann, bob = world.uid("ann"), world.uid("bob")
    assert world.owners() == {"like-1": ann, "follow-1": bob, "organic": ann}


def test_unknown_users_resolve_once_imported(world: World) -> None:
    world.send(engagement("early", "carol"), click("early-click", "carol", "tc-carol"))
    world.send(ev("landing", channel="pixel", ttclid="tc-carol"))
    assert world.owners() == {}
    world.users({"carol": {"email": "carol@example.com"}})
    world.proc.flush()  # the periodic retry, at once
    carol = world.uid("carol")
    assert world.owners() == {"early": carol, "early-click": carol, "landing": carol}


def test_a_click_id_resolves_later_events_of_any_advertiser(world: World) -> None:
    world.send(click("click-1", "bob", "tc-1", advertiser=7))
    world.send(
        ev("pixel-7", channel="pixel", ttclid="tc-1"),
        ev("server-8", advertiser=8, channel="web", ttclid="tc-1"),
        ev("other-click", ttclid="tc-2"),
    )
    bob = world.uid("bob")
    assert world.owners() == {"click-1": bob, "pixel-7": bob, "server-8": bob}


def test_events_before_the_click_is_processed_resolve_on_the_next_retry(world: World) -> None:
    world.send(ev("landing", channel="pixel", ttclid="tc-late"))
    assert world.owners() == {}
    world.log.append(encode_batch([click("click-late", "ann", "tc-late")]))
    world.log.rotate()
    world.proc.run_once()  # the click is processed: the landing event is not yet retried
    ann = world.uid("ann")
    assert world.owners() == {"click-late": ann}
    assert world.proc.resolve_pending() == 1
    assert world.owners() == {"click-late": ann, "landing": ann}


def test_a_click_and_its_landing_in_one_batch(world: World) -> None:
    world.send(ev("landing", channel="pixel", ttclid="tc-same"), click("c", "ann", "tc-same"))
    assert world.owners() == {"landing": world.uid("ann"), "c": world.uid("ann")}


def test_graph_keys_and_the_user_id_win_over_a_click_id(world: World) -> None:
    world.send(click("click", "ann", "tc-shared"))
    world.send(ev("bob-login", email=[BOB_MAIL], ttclid="tc-shared"))  # a forwarded link
    assert world.owners()["bob-login"] == world.uid("bob")


def test_only_platform_clicks_teach_click_ids(world: World) -> None:
    # An advertiser's event with a click id proves nothing about who clicked: no link.
    world.send(ev("login", email=[BOB_MAIL], ttclid="tc-shop"))
    world.send(ev("after", ttclid="tc-shop"), engagement("impression", "ann", "ad_impression"))
    assert set(world.owners()) == {"login", "impression"}


def test_limited_events_with_a_click_id_are_never_resolved(world: World) -> None:
    world.send(click("click", "ann", "tc-ldu"))
    world.send(ev("ldu", limited=True, ttclid="tc-ldu"))
    world.proc.flush()
    assert "ldu" not in world.owners()


def test_erasure_removes_engagement_click_links_and_events(world: World) -> None:
    world.send(
        click("bob-click", "bob", "tc-bob"),
        engagement("bob-like", "bob"),
        engagement("ann-like", "ann"),
    )
    world.send(ev("bob-landing", advertiser=8, channel="pixel", ttclid="tc-bob"))
    assert set(world.owners()) == {"bob-click", "bob-like", "ann-like", "bob-landing"}
    uids, _missing = world.graph.erase_uids(["bob"])
    # Sent after the erasure (the ad server had not heard yet): never resolved, and erased too.
    world.send(engagement("bob-late", "bob"))
    assert world.proc.erase(uids, user_refs=["bob"]) == 4
    assert world.owners() == {"ann-like": world.uid("ann")}
    with world.store.state() as con:
        assert con.execute("SELECT count(*) FROM links WHERE kind = 'ttclid'").fetchall() == [(0,)]
    raw = b"".join(contents(p) for p in world.store.parts())
    assert b"tc-bob" not in raw and b"bob-late" not in raw
    world.send(ev("bob-again", channel="pixel", ttclid="tc-bob"))
    assert "bob-again" not in world.owners()


# --- usable events ------------------------------------------------------------------------


@pytest.fixture
def intake(tmp_path: Path, world: World) -> Iterator[EventIntake]:
    events = EventIntake(
        Settings(data_dir=tmp_path / "intake"), clock=lambda: T0, graph=world.graph
    )
    yield events
    events.close()


def send(intake: EventIntake, *records: EventRecord) -> None:
    intake.log.append(encode_batch(list(records)))
    intake.flush()


def test_usable_events_leave_out_what_audiences_must_not_use(
    world: World, intake: EventIntake
) -> None:
    world.users(
        {
            "carol": {"email": "carol@example.com"},  # opts out
            "dave": {"email": "dave@example.com"},  # is erased
            "erin": {"email": "erin@example.com"},  # only sends limited and test events
        }
    )
    world.graph.set_consent(["carol"], personalized_ads=False)
    send(
        intake,
        ev("ann-view", email=[ANN_MAIL]),
        engagement("bob-like", "bob"),
        engagement("carol-like", "carol"),
        engagement("dave-like", "dave"),
        ev("erin-ldu", limited=True, email=[sha("erin@example.com")]),
        ev("erin-test", test=True, email=[sha("erin@example.com")]),
        ev("order-1", channel="web", email=[ANN_MAIL]),
    )
    send(intake, ev("order-1", channel="pixel", email=[ANN_MAIL]))  # merged into the first
    uids, _ = world.graph.erase_uids(["dave"])
    ann, bob = world.uid("ann"), world.uid("bob")
    assert set(intake.usable_uids(7)) == {ann, bob}
    assert set(intake.usable_uids(7, events=["like"])) == {bob}
    assert set(intake.usable_uids(7, events=["Purchase"])) == set()
    assert set(intake.usable_uids(8)) == set()
    # The rows: one per event (the merged copy not twice), with the graph's exclusions.
    source = intake.store.sql_source(7)
    assert source is not None
    excluded = pa.table({"uid": pa.array(list(world.graph.excluded()), pa.uint32())})
    with intake.store.state() as con:
        con.register("excluded_uids", excluded)
        rows = con.execute(
            f"SELECT event_id, uid FROM ({usable_events_sql(source)}) ORDER BY event_id"
        ).fetchall()
        con.unregister("excluded_uids")
    assert rows == [("ann-view", ann), ("bob-like", bob), ("order-1", ann)]
    # Erasure takes dave's events away entirely; opting back in makes carol usable again.
    intake.erase(uids, user_refs=["dave"])
    world.graph.set_consent(["carol"], personalized_ads=True)
    assert set(intake.usable_uids(7)) == {ann, bob, world.uid("carol")}
