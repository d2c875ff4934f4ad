"""Simulated activity: determinism, funnels, the effect of interests, and bodies that the real
decoders accept carrying the right users' identifiers (checked with hashlib over the sim's
ground truth, nothing from ``likewise.identity``)."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from likewise.ingest import events as intake
from likewise.ingest import schema
from likewise.sim import (
    APP_EVENTS,
    CATEGORIES,
    ENGAGEMENT_EVENTS,
    MATCHES,
    MAX_EVENTS_PER_BODY,
    WEB_FUNNEL,
    SimActivity,
    SimAdvertiser,
    generate_users,
    ground_truth_identifiers,
    simulate_activity,
)

N_USERS = 4000
DAY = 86400
END = int(time.time()) - 3600
START = END - 30 * DAY
# Every activity kind, and advertisers missing some of them.
ADVERTISERS = [
    SimAdvertiser(
        id=str(7_000_000_000_000_000_101 + i),
        category=category,
        pixel_code=f"CSIMPIXEL{i:011d}" if category != "games" else None,
        app_id=f"com.sim.app{i}" if category != "travel" else None,
        lead_form_id=f"form-{i}" if category in ("travel", "beauty") else None,
        shop=category != "travel",
    )
    for i, category in enumerate(("fashion", "electronics", "games", "beauty", "travel"))
]
EVERY_MATCH = tuple(MATCHES)


def simulate(users: pa.Table, **kw: object) -> SimActivity:
    args: dict[str, object] = {
        "start": START,
        "end": END,
        "seed": 11,
        "scale": 3.0,
        "organic": 0.3,
        **kw,
    }
    return simulate_activity(users, ADVERTISERS, **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def users() -> pa.Table:
    return generate_users(N_USERS, seed=3)


@pytest.fixture(scope="module")
def act(users: pa.Table) -> SimActivity:
    return simulate(users)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hashed(value: str | None) -> list[str]:
    return [] if value is None else [sha(value)]


def who(act: SimActivity, advertiser: SimAdvertiser, event: str) -> set[str]:
    """Everyone who did ``event``, whatever a server could resolve."""
    return act.users_who(advertiser.id, event, matches=EVERY_MATCH, include_limited=True)


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_same_output(users: pa.Table) -> None:
    small = users.slice(0, 1500)
    a, b = simulate(small), simulate(small)
    assert a.events.equals(b.events)
    assert a.truth.equals(b.truth)
    for kind in ("web", "pixel", "app", "engagement"):
        assert list(a.bodies(kind)) == list(b.bodies(kind)), kind
    other = simulate(small, seed=12)
    assert not other.truth.equals(a.truth)
    # Event ids and who did what do not depend on where the window sits, only on its length.
    shifted = simulate(small, start=START - DAY, end=END - DAY)
    assert shifted.events.column("event_id").equals(a.events.column("event_id"))
    assert shifted.events.column("user_id").equals(a.events.column("user_id"))


# --- the model ----------------------------------------------------------------------------------


def test_funnels_are_monotone(act: SimActivity) -> None:
    """Each step's users are among the previous step's, per advertiser, and nobody buys before
    first seeing the shop."""
    funnels = [
        WEB_FUNNEL,
        ("shop_product_view", "shop_add_to_cart", "shop_purchase"),
        ("lead_form_view", "lead_form_submit"),
        ("ad_impression", "ad_click"),
        ("InstallApp", "LaunchAPP"),
        ("InstallApp", "Purchase"),
    ]
    checked = 0
    for adv in ADVERTISERS:
        for funnel in funnels:
            steps = [who(act, adv, event) for event in funnel]
            for before, after in itertools.pairwise(steps):
                assert after <= before, (adv.category, funnel)
                checked += bool(after)
    assert checked >= 20  # the funnels are not vacuous
    truth = act.truth.to_pylist()
    first: dict[tuple[str, str, str], int] = {}
    for r in truth:
        key = (r["advertiser_id"], r["user_id"], r["event"])
        first[key] = min(first.get(key, r["first_time"]), r["first_time"])
    for (adv_id, user, event), t in first.items():
        if event == "CompletePayment":
            assert first[(adv_id, user, "Pageview")] <= t


def test_interest_drives_visits_and_conversion(act: SimActivity, users: pa.Table) -> None:
    row = {u: i for i, u in enumerate(users.column("user_id").to_pylist())}

    def mask(ids: set[str]) -> np.ndarray:
        out = np.zeros(N_USERS, dtype=bool)
        out[[row[u] for u in ids]] = True
        return out

    for adv in ADVERTISERS:
        interest = act.interests[:, CATEGORIES.index(adv.category)]
        low, high = interest <= np.quantile(interest, 0.25), interest >= np.quantile(interest, 0.75)
        clicks = mask(who(act, adv, "ad_click"))
        assert clicks[high].mean() > 5 * clicks[low].mean() + 0.02, adv.category
        if adv.pixel_code is None:
            continue
        visitors, buyers = mask(who(act, adv, "Pageview")), mask(who(act, adv, "CompletePayment"))
        assert visitors[high].mean() > 5 * visitors[low].mean(), adv.category
        # Among visitors too: interested visitors convert more often.
        median = np.median(interest[visitors])
        keen, lukewarm = visitors & (interest >= median), visitors & (interest < median)
        assert buyers[keen].mean() > 2 * buyers[lukewarm].mean(), adv.category


def test_organic_engagement_follows_interests(act: SimActivity, users: pa.Table) -> None:
    plays = act.engagement_bodies
    row = {u: i for i, u in enumerate(users.column("user_id").to_pylist())}
    favourite = act.interests.argmax(axis=1)
    organic = [
        e
        for b in plays
        for e in b["data"]
        if e["event"] == "video_play" and "advertiser_id" not in e
    ]
    assert len(organic) > 1000
    assert all(e["creator_id"].startswith("creator-") for e in organic)
    in_favourite = np.mean(
        [CATEGORIES.index(e["category"]) == favourite[row[e["user_id"]]] for e in organic]
    )
    assert in_favourite > 0.25  # vs 0.1 if categories were picked at random


def test_kinds_follow_the_advertisers_sources(act: SimActivity) -> None:
    by_adv = Counter(
        (r["advertiser_id"], r["channel"])
        for r in act.events.select(["advertiser_id", "channel"]).to_pylist()
    )
    for adv in ADVERTISERS:
        assert (by_adv[(adv.id, "web")] > 0) == (adv.pixel_code is not None)
        assert (by_adv[(adv.id, "app")] > 0) == (adv.app_id is not None)
        assert by_adv[(adv.id, "engagement")] > 0
        assert bool(who(act, adv, "lead_form_view")) == (adv.lead_form_id is not None)
        assert bool(who(act, adv, "shop_product_view")) == adv.shop
    assert by_adv[(None, "engagement")] > 0  # organic
    assert set(act.events.column("event").to_pylist()) == {
        *WEB_FUNNEL,
        *APP_EVENTS,
        *ENGAGEMENT_EVENTS,
    }


def test_truth_adds_up(act: SimActivity) -> None:
    counts = act.counts()
    events = act.events
    assert events.num_rows == len(act.web) + len(act.app) + len(act.engagement)
    assert sum(act.truth.column("count").to_pylist()) == events.num_rows
    assert len(set(events.column("event_id").to_pylist())) == events.num_rows
    sent = {
        "web": sum(len(b["data"]) for b in act.web_bodies),
        "pixel": sum(len(b["events"]) for b in act.pixel_bodies),
        "app": sum(len(b["data"]) for b in act.app_bodies),
        "engagement": sum(len(b["data"]) for b in act.engagement_bodies),
    }
    assert sent == counts
    truth = act.truth
    assert truth.column("identified").to_pylist() == [
        m != "none" for m in truth.column("match").to_pylist()
    ]
    # Every match kind and some limited events occur; engagement always names the user.
    rows = act.events.to_pylist()
    assert {r["match"] for r in rows} == set(MATCHES)
    assert {r["match"] for r in rows if r["channel"] == "engagement"} == {"user_id"}
    assert any(r["limited"] for r in rows if r["channel"] == "web")
    assert any(r["limited"] for r in rows if r["channel"] == "app")


def test_users_who_filters(act: SimActivity) -> None:
    adv = ADVERTISERS[0]
    everyone = who(act, adv, "CompletePayment")
    usable = act.users_who(adv.id, "CompletePayment")
    recent = act.users_who(adv.id, "CompletePayment", since=END - 7 * DAY)
    consented = act.users_who(adv.id, "CompletePayment", consented_only=True)
    assert recent < usable <= everyone and consented < usable
    assert act.users_who(adv.id, "CompletePayment", since=END + 1) == set()
    # The same answer straight from the event rows.
    expected = {
        r["user_id"]
        for r in act.events.to_pylist()
        if r["advertiser_id"] == adv.id
        and r["event"] == "CompletePayment"
        and r["event_time"] >= END - 7 * DAY
        and r["match"] in ("graph", "link", "user_id")
        and not r["limited"]
    }
    assert recent == expected


# --- bodies -------------------------------------------------------------------------------------


def test_web_and_app_bodies_pass_the_real_decoder(act: SimActivity, users: pa.Table) -> None:
    """Every web and app body decodes as an Events API 2.0 request and yields one record per
    event, whose hashed identifiers are those of the event's user."""
    truth = ground_truth_identifiers(users).to_pylist()
    by_id = {u["user_id"]: u for u in truth}
    user_of = dict(
        zip(
            act.events.column("event_id").to_pylist(),
            act.events.column("user_id").to_pylist(),
            strict=True,
        )
    )
    window = intake.Window(now=time.time(), max_age_days=180)
    source = intake.Source(id=1, advertiser_id=1)
    limited = resolvable = 0
    for body in [*act.web_bodies, *act.app_bodies]:
        decoded = schema.decode(schema.TrackBody, json.dumps(body).encode())
        records = intake.track_records(decoded, source, window)
        assert len(records) == len(body["data"])
        for record in records:
            assert record.event_id is not None
            t = by_id[user_of[record.event_id]]
            # Each key is absent, or the event's user's (and never one the user lacks).
            assert record.email in ([], hashed(t["email_basic"]))
            assert record.phone in ([], hashed(t["phone_e164"]))
            for device in (record.idfa, record.gaid):
                assert device is None or [device] == hashed(t["maid"])
            limited += record.limited
            resolvable += bool(record.email or record.phone or record.idfa or record.gaid)
    assert limited > 0 and resolvable > 0
    web = [e for b in act.web_bodies for e in b["data"]]
    assert any("ttclid" in e["user"] for e in web)
    assert any(set(e["user"]) == {"ttp"} for e in web)  # anonymous
    assert any(e.get("limited_data_use") for e in web)
    app = [e for b in act.app_bodies for e in b["data"]]
    assert {e["user"].get("att_status") for e in app} >= {"AUTHORIZED", "DENIED", None}
    assert not any("idfa" in e["user"] for e in app if e["user"].get("att_status") == "DENIED")


def test_pixel_bodies_pass_the_collector_and_pair_with_server_copies(act: SimActivity) -> None:
    window = intake.Window(now=time.time(), max_age_days=180)
    source = intake.Source(id=1, advertiser_id=1)
    server = {e["event_id"]: e for b in act.web_bodies for e in b["data"]}
    copies = 0
    for body in act.pixel_bodies:
        decoded = schema.decode(schema.CollectBody, json.dumps(body).encode())
        records = intake.collect_records(decoded, source, window)
        assert len(records) == len(body["events"]) <= 50
        for event, record in zip(body["events"], records, strict=True):
            twin = server[event["event_id"]]
            assert (record.event, record.event_time) == (twin["event"], twin["event_time"])
            assert record.ttp == twin["user"]["ttp"]
            assert not twin.get("limited_data_use")  # the pixel cannot say so: no copy
            copies += 1
    assert copies == act.counts()["pixel"] > 0


def test_body_limits_and_times(act: SimActivity) -> None:
    for kind, items, limit in (
        ("web", "data", MAX_EVENTS_PER_BODY),
        ("app", "data", MAX_EVENTS_PER_BODY),
        ("engagement", "data", MAX_EVENTS_PER_BODY),
        ("pixel", "events", 50),
    ):
        bodies = list(act.bodies(kind))
        assert bodies, kind
        for body in bodies:
            assert 1 <= len(body[items]) <= limit
            times = [int(e.get("event_time", e.get("timestamp"))) for e in body[items]]
            assert times == sorted(times)  # one source per body, in time order
            assert all(START <= t <= END for t in times)
    times = act.events.column("event_time").to_numpy()
    assert times.min() >= START and times.max() <= END
    assert {b["event_source_id"] for b in act.web_bodies} == {
        a.pixel_code for a in ADVERTISERS if a.pixel_code
    }
    # A retried server copy is the only repeated event id.
    ids = Counter(e["event_id"] for b in act.web_bodies for e in b["data"])
    assert sum(n - 1 for n in ids.values()) == int(act.web.cols["retry"].sum()) > 0


def test_engagement_bodies_pass_the_engagement_intake(act: SimActivity) -> None:
    """Needs the engagement intake (``likewise.ingest.engagement``)."""
    from likewise.ingest import engagement

    window = intake.Window(now=time.time(), max_age_days=180)
    kinds: Counter[str] = Counter()
    for body in act.engagement_bodies:
        records = engagement.records(engagement.decode(json.dumps(body).encode()), window)
        assert len(records) == len(body["data"])
        kinds.update(r.event for r in records)
    assert set(kinds) == set(ENGAGEMENT_EVENTS)
    clicks = [e for b in act.engagement_bodies for e in b["data"] if e["event"] == "ad_click"]
    assert all(e["ttclid"].startswith("E.C.P.") and e["ad_id"] for e in clicks)
    web_clicks = {e["user"].get("ttclid") for b in act.web_bodies for e in b["data"]} - {None}
    assert web_clicks <= {e["ttclid"] for e in clicks}  # landings carry a real click's id


# --- arguments ----------------------------------------------------------------------------------


def test_arguments_are_checked(users: pa.Table) -> None:
    small = users.slice(0, 100)
    now = time.time()
    with pytest.raises(ValueError, match="180 days"):
        simulate(small, start=now - 181 * DAY, end=now - DAY)
    with pytest.raises(ValueError, match="future"):
        simulate(small, start=now - DAY, end=now + 3600)
    with pytest.raises(ValueError, match="before start"):
        simulate(small, start=END, end=START)
    with pytest.raises(ValueError, match="category"):
        simulate_activity(small, [SimAdvertiser(id="1", category="cars")], start=START, end=END)
    # Without the retention check any past range works (the output depends on no clock).
    old = simulate(small, start=1_600_000_000, end=1_600_000_000 + 30 * DAY, retention_days=None)
    assert old.events.num_rows > 0
    assert simulate(small, scale=0.0, organic=0.0).events.num_rows == 0


def test_volume_scales_with_scale(users: pa.Table) -> None:
    one = sum(simulate(users, scale=1.0).counts().values())
    three = sum(simulate(users, scale=3.0).counts().values())
    assert 2.5 < three / one < 3.5
