"""Identity resolution of events over a real identity graph, log and event store: graph keys,
learned browser and external ids, late resolution, merged copies, limited data use."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from likewise.ingest.identity import EventResolver
from likewise.ingest.processor import EventProcessor
from likewise.ingest.records import EventRecord, encode_batch
from likewise.ingest.users import import_users
from likewise.store import graph as graph_module
from likewise.store.eventlog import EventLog
from likewise.store.events import EventStore
from likewise.store.graph import PlatformGraph
from likewise.store.key_index import KeyIndex
from tests.at_rest import contents

T0 = 1_780_000_000.0
IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class World:
    """``lookup`` "graph" joins with the identity graph for every batch; "index" makes sure the
    in-memory key index is current before each batch, so every keyed batch uses it."""

    def __init__(self, tmp: Path, lookup: str = "graph") -> None:
        self.graph = PlatformGraph(tmp / "platform.duckdb")
        self.log = EventLog(tmp / "events" / "log")
        self.store = EventStore(tmp / "events")
        self.lookup = lookup
        self.resolver = EventResolver(self.graph, key_index=lookup == "index")
        self.proc = EventProcessor(self.log, self.store, clock=lambda: T0, resolver=self.resolver)
        self.index_lookups = 0  # batches whose keys the index answered

    def users(self, rows: dict[str, dict[str, str]]) -> None:
        table = pa.table(
            {
                "user_id": list(rows),
                "email": [r.get("email") for r in rows.values()],
                "phone": [r.get("phone") for r in rows.values()],
                "idfa": [r.get("idfa") for r in rows.values()],
                "country": ["US"] * len(rows),
            }
        )
        import_users(self.graph, table)

    def uid(self, user_id: str) -> int:
        with self.graph.connect() as con:
            return int(
                con.execute("SELECT uid FROM users WHERE ext_id = ?", [user_id]).fetchall()[0][0]
            )

    def send(self, *records: EventRecord) -> None:
        self.log.append(encode_batch(list(records)))
        if self.lookup == "index":
            self.resolver.refresh_index()
        self.proc.flush()

    def owners(self) -> dict[str, int]:
        source = self.store.sql_source()
        assert source is not None
        with self.store.state() as con:
            rows = con.execute(
                f"""SELECT e.event_id, u.uid FROM {source} e JOIN event_uid u USING (eid)
                WHERE e.merged_into IS NULL"""
            ).fetchall()
        return {str(e): int(u) for e, u in rows}


def ev(event_id: str, *, advertiser: int = 7, channel: str = "web", **keys: object) -> EventRecord:
    return EventRecord(
        source_id=advertiser * 10,
        advertiser_id=advertiser,
        channel=channel,
        event="ViewContent",
        event_time=T0 - 60,
        received_at=T0,
        event_id=event_id,
        **keys,  # type: ignore[arg-type]
    )


def count_index_lookups(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    found_keys = graph_module._found_keys

    def counted(index: KeyIndex, keys: pa.Table) -> pa.Table:
        w.index_lookups += 1
        return found_keys(index, keys)

    monkeypatch.setattr(graph_module, "_found_keys", counted)


@pytest.fixture(params=["graph", "index"])
def world(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    w = World(tmp_path, request.param)
    count_index_lookups(w, monkeypatch)
    w.users(
        {
            "ann": {"email": "Ann.Lee@Example.com", "phone": "+1 415 555 0101"},
            "bob": {"email": "bob@example.com", "idfa": IDFA},
        }
    )
    yield w
    w.log.close()
    w.store.close()


def test_graph_keys_resolve(world: World) -> None:
    world.send(
        ev("by-email", email=[sha("ann.lee@example.com")]),  # Events API rule: trim + lowercase
        ev("by-phone", phone=[sha("+14155550101")]),
        ev("by-idfa", idfa=sha(IDFA.lower())),
        ev("nobody", email=[sha("stranger@example.com")]),
        ev("no-keys"),
    )
    ann, bob = world.uid("ann"), world.uid("bob")
    assert world.owners() == {"by-email": ann, "by-phone": ann, "by-idfa": bob}
    assert (world.index_lookups > 0) == (world.lookup == "index")


def test_browser_id_learned_from_a_login_resolves_earlier_events(world: World) -> None:
    world.send(ev("browse-1", ttp="cookie-a"), ev("browse-2", ttp="cookie-a"))
    assert world.owners() == {}
    world.send(ev("login", ttp="cookie-a", email=[sha("bob@example.com")]))
    bob = world.uid("bob")
    assert world.owners() == {"browse-1": bob, "browse-2": bob, "login": bob}
    world.send(ev("later", ttp="cookie-a"))  # and every later visit at once
    assert world.owners()["later"] == bob


def test_links_belong_to_one_advertiser(world: World) -> None:
    world.send(ev("login", ttp="cookie-b", external_id=["crm-9"], email=[sha("bob@example.com")]))
    world.send(
        ev("same-shop-ext", external_id=["crm-9"]),
        ev("other-shop", advertiser=8, ttp="cookie-b"),
    )
    owners = world.owners()
    assert owners["same-shop-ext"] == world.uid("bob")
    assert "other-shop" not in owners


def test_users_imported_later_resolve_stored_events(world: World) -> None:
    world.send(ev("early", email=[sha("carol@example.com")]))
    assert world.owners() == {}
    world.users({"carol": {"email": "carol@example.com"}})
    world.proc.flush()  # the periodic retry, at once
    assert world.owners() == {"early": world.uid("carol")}


def test_merged_pixel_copy_lends_its_keys(world: World) -> None:
    world.send(ev("order-1", channel="pixel", ttp="cookie-z"))
    world.send(ev("order-1", channel="web", email=[sha("ann.lee@example.com")]))
    assert world.owners() == {"order-1": world.uid("ann")}


def test_limited_events_are_never_resolved(world: World) -> None:
    world.send(ev("ldu", limited=True, email=[sha("bob@example.com")], ttp="cookie-l"))
    world.send(ev("after", ttp="cookie-l"))
    assert world.owners() == {}  # and it taught no link either


def test_erasing_a_user_removes_their_events(world: World) -> None:
    bob_mail = sha("bob@example.com")
    world.send(
        ev("bob-1", email=[bob_mail], ttp="cookie-e"),
        ev("ann-1", email=[sha("ann.lee@example.com")]),
    )
    world.send(ev("bob-2", ttp="cookie-e"))
    world.send(ev("bob-1", channel="pixel", ttp="cookie-e"))  # a merged copy goes too
    assert set(world.owners()) == {"bob-1", "bob-2", "ann-1"}
    uids, missing = world.graph.erase_uids(["bob"])
    assert missing == [] and len(uids) == 1
    assert world.proc.erase(uids) == 3
    assert world.owners() == {"ann-1": world.uid("ann")}
    raw = b"".join(contents(p) for p in world.store.parts())
    assert bob_mail.encode() not in raw and b"cookie-e" not in raw
    world.send(ev("bob-3", ttp="cookie-e"))  # the learned link is gone as well
    assert "bob-3" not in world.owners()


def test_background_retries_look_only_where_something_new_can_match(world: World) -> None:
    """The periodic retry does not re-resolve every anonymous event: only those whose browser
    id was linked since the last retry, or all of them once the graph changed."""
    clock = [T0]
    world.proc.clock = lambda: clock[0]
    tried: list[int] = []
    resolve = world.proc.resolver.resolve  # type: ignore[union-attr]

    def counting(con, candidates, now):  # type: ignore[no-untyped-def]
        tried.append(candidates.num_rows)
        return resolve(con, candidates, now)

    world.proc.resolver.resolve = counting  # type: ignore[union-attr,method-assign]

    def process(*records: EventRecord) -> None:
        world.log.append(encode_batch(list(records)))
        world.log.rotate()
        world.proc.run_once()

    process(ev("anon-1", ttp="t-1"), ev("anon-2", ttp="t-2"), ev("later", email=[sha("cy@x.io")]))
    assert tried == [3]  # the pass
    assert world.proc.resolve_pending(everything=False) == 0
    assert tried == [3], "a new store's events met this graph in their pass: no retry"
    tried.clear()
    clock[0] += 30
    assert world.proc.resolve_pending(everything=False) == 0
    assert sum(tried) == 0, "nothing new: no event was tried again"

    clock[0] += 30  # Ann logs in with browser t-1: that teaches the link
    process(ev("login", ttp="t-1", email=[sha("ann.lee@example.com")]))
    clock[0] += 30
    assert world.proc.resolve_pending(everything=False) == 1
    assert tried[-1] == 1, "only the event with the newly linked browser id"
    assert world.owners()["anon-1"] == world.uid("ann")

    world.users({"cy": {"email": "cy@x.io"}})  # an import changes the graph: all are tried
    clock[0] += 30
    assert world.proc.resolve_pending(everything=False) == 1
    assert tried[-1] == 2  # anon-2 and later
    assert world.owners()["later"] == world.uid("cy")


def test_a_stale_key_index_is_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After an erasure or an import the index of the old keys is out of date: batches join
    with the graph until a new one is built in the background, then use that one."""
    w = World(tmp_path, "index")
    count_index_lookups(w, monkeypatch)
    bob_mail, cat_mail = sha("bob@example.com"), sha("cat@example.com")
    try:
        w.users({"ann": {"email": "ann@example.com"}, "bob": {"email": "bob@example.com"}})
        w.resolver.refresh_index()
        first = w.resolver.wait_for_index()
        assert first is not None and len(first) > 0
        w.send(ev("ann", email=[sha("ann@example.com")]))  # found current: no connection next
        assert w.index_lookups > 0
        w.graph.erase_uids(["bob"])
        w.log.append(encode_batch([ev("bob", email=[bob_mail])]))  # the index still has him
        w.proc.flush()
        assert w.owners() == {"ann": w.uid("ann")}
        second = w.resolver.wait_for_index()  # the batch started a build of the new keys
        assert second is not None and second.generation > first.generation
        assert len(second) < len(first)
        w.users({"cat": {"email": "cat@example.com"}})
        w.log.append(encode_batch([ev("cat", email=[cat_mail])]))  # not in the index yet
        w.proc.flush()
        assert w.owners() == {"ann": w.uid("ann"), "cat": w.uid("cat")}
        third = w.resolver.wait_for_index()
        assert third is not None and third.generation > second.generation
        w.send(ev("cat-2", email=[cat_mail]), ev("bob-2", email=[bob_mail]))
        cat = w.uid("cat")
        assert w.owners() == {"ann": w.uid("ann"), "cat": cat, "cat-2": cat}
    finally:
        w.log.close()
        w.store.close()
