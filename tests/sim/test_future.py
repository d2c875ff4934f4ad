"""Simulated activity cut in time (:meth:`SimActivity.split`): the parts add up to the whole with
the same event ids and bodies, each part renders on its own, and the future part holds buyers
the past does not, planted by interest. Simulated into the future as a lookalike evaluation
does: [now - 60 days, now + 30 days], split at now."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from likewise.ingest import engagement as engagement_intake
from likewise.ingest import events as intake
from likewise.ingest import schema
from likewise.sim import (
    CATEGORIES,
    MATCHES,
    MAX_EVENTS_PER_BODY,
    SimActivity,
    SimAdvertiser,
    generate_users,
    simulate_activity,
)

N_USERS = 3000
DAY = 86400
NOW = int(time.time()) // 3600 * 3600
START, END = NOW - 60 * DAY, NOW + 30 * DAY
KINDS = ("web", "pixel", "app", "engagement")
FASHION = SimAdvertiser(
    id="7000000000000000201",
    category="fashion",
    pixel_code="CSIMPIXEL00000000201",
    app_id="com.sim.fashion",
)
# A second advertiser with a lead form and no app, so that clicks also lead to forms.
BEAUTY = SimAdvertiser(
    id="7000000000000000202",
    category="beauty",
    pixel_code="CSIMPIXEL00000000202",
    lead_form_id="form-202",
)
ADVERTISERS = [FASHION, BEAUTY]
# The truth columns of an event that do not depend on which other events were sent.
SAME_COLUMNS = [
    "event_id",
    "advertiser_id",
    "user_id",
    "channel",
    "event",
    "limited",
    "personalized_ads",
    "event_time",
    "pixel_copy",
    "retried",
]


def simulate(users: pa.Table) -> SimActivity:
    return simulate_activity(
        users,
        ADVERTISERS,
        start=START,
        end=END,
        seed=21,
        organic=0.1,
        retention_days=None,  # the range reaches into the future
    )


@pytest.fixture(scope="module")
def users() -> pa.Table:
    return generate_users(N_USERS, seed=4)


@pytest.fixture(scope="module")
def whole(users: pa.Table) -> SimActivity:
    return simulate(users)


@pytest.fixture(scope="module")
def parts(whole: SimActivity) -> tuple[SimActivity, SimActivity]:
    # A naive datetime is UTC.
    return whole.split(datetime.fromtimestamp(NOW, UTC).replace(tzinfo=None))


def by_event_id(act: SimActivity, kind: str) -> dict[str, dict[str, Any]]:
    items = "events" if kind == "pixel" else "data"
    return {e["event_id"]: e for b in act.bodies(kind) for e in b[items]}


def ids_sent(act: SimActivity, kind: str) -> Counter[str]:
    items = "events" if kind == "pixel" else "data"
    return Counter(e["event_id"] for b in act.bodies(kind) for e in b[items])


def sorted_events(table: pa.Table) -> pa.Table:
    return table.sort_by("event_id")


# --- the parts add up to the whole --------------------------------------------------------------


def test_parts_have_exactly_the_events_of_the_whole(
    whole: SimActivity, parts: tuple[SimActivity, SimActivity]
) -> None:
    past, future = parts
    assert past.events.num_rows > 1000 and future.events.num_rows > 1000
    joined = sorted_events(pa.concat_tables([past.events, future.events]))
    full = sorted_events(whole.events)
    assert joined.select(SAME_COLUMNS).equals(full.select(SAME_COLUMNS))
    for part in parts:
        assert len(set(part.events.column("event_id").to_pylist())) == part.events.num_rows
    assert Counter(past.events.column("event").to_pylist()) + Counter(
        future.events.column("event").to_pylist()
    ) == Counter(whole.events.column("event").to_pylist())
    # A part resolves from its own events: the only change is a _ttp link that an event of the
    # other part made, which is then the ttclid or nothing.
    was, now = full.column("match").to_pylist(), joined.column("match").to_pylist()
    changed = Counter((a, b) for a, b in zip(was, now, strict=True) if a != b)
    assert set(changed) <= {("link", "click"), ("link", "none")}
    assert sum(changed.values()) < 0.05 * full.num_rows
    # Sent events and per-advertiser totals add up; the truth counts every event once.
    counts = [p.counts() for p in parts]
    assert {k: counts[0][k] + counts[1][k] for k in counts[0]} == whole.counts()
    for part in parts:
        assert sum(part.truth.column("count").to_pylist()) == part.events.num_rows
    for adv in ADVERTISERS:
        e = [p.expected(adv.id) for p in parts]
        full_expected = whole.expected(adv.id)
        for source in ("web", "app"):
            assert {k: e[0][source][k] + e[1][source][k] for k in e[0][source]} == (
                full_expected[source]
            )


def test_bodies_of_the_parts_are_those_of_the_whole(
    whole: SimActivity, parts: tuple[SimActivity, SimActivity]
) -> None:
    """The same events with the same ids and content, each sent in exactly one part."""
    past, future = parts
    for kind in KINDS:
        sent = [ids_sent(past, kind), ids_sent(future, kind)]
        assert not set(sent[0]) & set(sent[1]), kind
        assert sent[0] + sent[1] == ids_sent(whole, kind), kind
        assert by_event_id(past, kind) | by_event_id(future, kind) == by_event_id(whole, kind)
    assert ids_sent(past, "engagement") and ids_sent(future, "engagement")


# --- time ---------------------------------------------------------------------------------------


def test_parts_lie_on_their_side_of_the_cut(
    whole: SimActivity, parts: tuple[SimActivity, SimActivity]
) -> None:
    past, future = parts
    assert (past.start, past.end, future.start, future.end) == (START, NOW - 1, NOW, END)
    assert pc.max(past.events.column("event_time")).as_py() < NOW
    assert pc.min(future.events.column("event_time")).as_py() >= NOW
    for part in parts:
        for kind in KINDS:
            for e in by_event_id(part, kind).values():
                assert part.start <= int(e.get("event_time", e.get("timestamp"))) <= part.end
        for stream in (part.web, part.app, part.engagement):
            t = stream.cols["t"]
            assert ((t >= part.start) & (t <= part.end)).all()
    # Event times are whole seconds: a cut inside second NOW - 1 is the cut at NOW.
    for at in (NOW - 0.5, datetime.fromtimestamp(NOW - 1, UTC) + timedelta(microseconds=1)):
        a, b = whole.split(at)
        assert a.end == NOW - 1 and a.events.equals(past.events) and b.events.equals(future.events)
    # A cut at the start leaves the past empty (and the future is the whole, matches included).
    empty, everything = whole.split(START)
    assert (empty.start, empty.end) == (START, START - 1)
    assert empty.events.num_rows == 0 and sum(empty.counts().values()) == 0
    assert all(list(empty.bodies(kind)) == [] for kind in KINDS)
    assert empty.truth.num_rows == 0 and empty.purchasers(FASHION.id).size == 0
    assert everything.events.equals(whole.events)
    assert whole.split(END + 1)[0].events.equals(whole.events)


def test_a_part_cut_again_keeps_the_ids(
    whole: SimActivity, parts: tuple[SimActivity, SimActivity]
) -> None:
    middle, _ = parts[1].split(NOW + 10 * DAY)
    t = whole.events.column("event_time")
    window = pc.and_(pc.greater_equal(t, NOW), pc.less(t, NOW + 10 * DAY))
    expected = sorted_events(whole.events.filter(window)).select(SAME_COLUMNS)
    assert sorted_events(middle.events).select(SAME_COLUMNS).equals(expected)
    assert (middle.start, middle.end) == (NOW, NOW + 10 * DAY - 1)


# --- each part renders on its own ---------------------------------------------------------------


def test_parts_render_valid_bodies(parts: tuple[SimActivity, SimActivity]) -> None:
    for part in parts:
        ids = set(part.events.column("event_id").to_pylist())
        for kind in KINDS:
            items = "events" if kind == "pixel" else "data"
            bodies = list(part.bodies(kind))
            assert sum(len(b[items]) for b in bodies) == part.counts()[kind] > 0
            for body in bodies:
                assert 1 <= len(body[items]) <= (50 if kind == "pixel" else MAX_EVENTS_PER_BODY)
                times = [int(e.get("event_time", e.get("timestamp"))) for e in body[items]]
                assert times == sorted(times)
                assert {e["event_id"] for e in body[items]} <= ids
        # The pixel's copies pair with their server copies in the same part.
        server = by_event_id(part, "web")
        for event in by_event_id(part, "pixel").values():
            twin = server[event["event_id"]]
            assert event["ttp"] == twin["user"]["ttp"] and event["event"] == twin["event"]


def test_clicks_and_landings_across_the_cut(
    whole: SimActivity, parts: tuple[SimActivity, SimActivity]
) -> None:
    """A landing carries its click's ttclid in whichever part it falls; its click is in the same
    part or, for a landing just after the cut, in the past."""

    def clicks(act: SimActivity) -> set[str]:
        return {
            e["ttclid"] for e in by_event_id(act, "engagement").values() if e["event"] == "ad_click"
        }

    def landings(act: SimActivity) -> set[str]:
        web = by_event_id(act, "web").values()
        return {e["user"]["ttclid"] for e in web if "ttclid" in e["user"]}

    past, future = parts
    assert landings(past) and landings(future)
    assert landings(past) <= clicks(past)  # a landing follows its click
    assert landings(future) <= clicks(future) | clicks(past)
    assert clicks(past) | clicks(future) == clicks(whole)
    assert landings(past) | landings(future) == landings(whole)
    # Every ttclid is the id of one click (not reused by another after filtering).
    for part in parts:
        ad_clicks = [
            e["ttclid"]
            for e in by_event_id(part, "engagement").values()
            if e["event"] == "ad_click"
        ]
        assert len(ad_clicks) == len(set(ad_clicks))


def test_the_past_part_passes_the_intake(parts: tuple[SimActivity, SimActivity]) -> None:
    """What a server gets: the past part's bodies decode, one record per event."""
    past, _ = parts
    window = intake.Window(now=time.time(), max_age_days=180)
    source = intake.Source(id=1, advertiser_id=1)
    for body in [*past.bodies("web"), *past.bodies("app")]:
        decoded = schema.decode(schema.TrackBody, json.dumps(body).encode())
        assert len(intake.track_records(decoded, source, window)) == len(body["data"])
    for body in past.bodies("pixel"):
        decoded = schema.decode(schema.CollectBody, json.dumps(body).encode())
        assert len(intake.collect_records(decoded, source, window)) == len(body["events"])
    for body in past.bodies("engagement"):
        decoded = engagement_intake.decode(json.dumps(body).encode())
        assert len(engagement_intake.records(decoded, window)) == len(body["data"])


# --- purchasers and the planted future ----------------------------------------------------------


def test_purchasers_are_the_buyers_of_the_truth(
    whole: SimActivity, parts: tuple[SimActivity, SimActivity]
) -> None:
    row = {u: i for i, u in enumerate(whole.users.column("user_id").to_pylist())}
    for act in (whole, *parts):
        for adv in ADVERTISERS:
            rows = act.purchasers(adv.id)
            assert rows.dtype == np.int64 and (np.diff(rows) > 0).all()
            buyers = act.users_who(
                adv.id,
                ["CompletePayment", "Purchase", "shop_purchase"],
                matches=MATCHES,
                include_limited=True,
            )
            assert rows.tolist() == sorted(row[u] for u in buyers)
    assert set(parts[0].purchasers(FASHION.id)) | set(parts[1].purchasers(FASHION.id)) == set(
        whole.purchasers(FASHION.id)
    )
    with pytest.raises(ValueError, match="not in the simulation"):
        whole.purchasers("nobody")


def test_future_purchasers_are_planted_by_interest(
    whole: SimActivity, parts: tuple[SimActivity, SimActivity]
) -> None:
    past, future = parts
    new = np.setdiff1d(future.purchasers(FASHION.id), past.purchasers(FASHION.id))
    interest = whole.interests[:, CATEGORIES.index(FASHION.category)]
    assert len(new) >= 20
    assert interest[new].mean() >= 2 * interest.mean()


# --- determinism and state ----------------------------------------------------------------------


def test_same_arguments_same_parts(
    users: pa.Table, whole: SimActivity, parts: tuple[SimActivity, SimActivity]
) -> None:
    fresh = simulate(users)  # nothing cached yet, unlike ``whole``
    again = fresh.split(NOW)
    for a, b in zip(parts, again, strict=True):
        assert a.events.equals(b.events)
        assert a.truth.equals(b.truth)
        for kind in KINDS:
            assert list(a.bodies(kind)) == list(b.bodies(kind)), kind
    # Parts are new instances: nothing cached is shared with the whole or each other.
    past, future = whole.split(NOW)
    assert "events" not in vars(past) and "_flat" not in vars(future)
    assert past.events is not whole.events and past.truth is not future.truth
    assert past.web.cols["t"] is not whole.web.cols["t"]
    assert np.array_equal(past.prices, whole.prices) and past.interests is whole.interests
