"""Many plans at once (``likewise.engine.rule_batch.evaluate_many``) give exactly what each plan
gives alone (``likewise.engine.rule_sql.evaluate``).

Hypothesis draws events of two advertisers and organic activity (the agreement test's web and
app events, plus engagement events on ad groups, posts, LIVE videos and accounts) and several
plans of either advertiser (the agreement test's PIXEL and APP family with Likewise's extras,
and engagement plans of every engagement type, organic ones included), then compares. Targeted
cases cover organic sources, day-2 retention, top_share, exclusion, one plan under two
advertisers, empty results, and the Parquet store's layout (hive partitions).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from likewise.domain.rule_spec import parse_rule_spec
from likewise.domain.rule_values import TYPES as AUDIENCE_TYPES
from likewise.domain.rules import AudienceType, Combine, Plan, SourceKind
from likewise.engine import rule_sql
from likewise.engine.rule_batch import ADVERTISERS_PER_SCAN, evaluate_many
from tests.engine.test_rule_agreement import (
    ADV,
    APP,
    DAY,
    PIXEL,
    SECONDS,
    T0,
    TIMES,
    event_rows,
    extras,
    wire_rules,
)
from tests.engine.test_rule_agreement import plans as web_and_app_plans
from tests.engine.test_rule_live import SCHEMA as LIVE_SCHEMA

OTHER_ADV = ADV + 1
SCHEMA = LIVE_SCHEMA.append(pa.field("creator_id", pa.string()))
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
POSTS = ["v1", "v2", "v3"]
LIVES = ["l1", "l2"]
ACCOUNTS = ["a1", "a2"]
AD_GROUPS = ["g1", "g2"]
NUMBER_KINDS = frozenset({SourceKind.PIXEL, SourceKind.APP, SourceKind.OFFLINE})


def _resolve(kind: SourceKind, raw_id: str) -> int | str | None:
    return int(raw_id) if kind in NUMBER_KINDS else raw_id


# --- strategies -----------------------------------------------------------------------------------


@st.composite
def engagement_rows(draw: st.DrawFn) -> dict[str, Any]:
    """An engagement event: ads of either advertiser, or organic activity (advertiser 0) on
    posts, LIVE videos and accounts, some of the wrong channel."""
    return {
        "uid": draw(st.integers(1, 4)),
        "advertiser_id": draw(st.sampled_from([0, 0, ADV, OTHER_ADV])),
        "source_id": 0,
        "channel": draw(st.sampled_from(["engagement"] * 9 + ["web"])),
        "event": draw(
            st.sampled_from(
                [
                    "video_play",
                    "video_play",
                    "like",
                    "share",
                    "live_view",
                    "follow",
                    "profile_visit",
                    "ad_click",
                    "ad_impression",
                ]
            )
        ),
        "event_time": draw(TIMES),
        "content_id": draw(st.sampled_from([None, *POSTS])),
        "live_id": draw(st.sampled_from([None, *LIVES])),
        "account_id": draw(st.sampled_from([None, *ACCOUNTS])),
        "adgroup_id": draw(st.sampled_from([None, *AD_GROUPS])),
        "creator_id": draw(st.sampled_from([None, "c1"])),
        "watched_seconds": draw(st.sampled_from([None, 1.0, 2.0, 6.0])),
        "watched_percent": draw(st.sampled_from([None, 25.0, 75.0, 100.0])),
        "value": draw(st.none() | st.integers(0, 50).map(float)),
    }


ENGAGEMENT_IDS: dict[AudienceType, list[str]] = {
    AudienceType.ENGAGEMENT: AD_GROUPS,
    AudienceType.ENGAGEMENT_ORGANIC_VIDEO: POSTS,
    AudienceType.ENGAGEMENT_LIVE_VIDEO: LIVES,
    AudienceType.BUSINESS_ACCOUNT: ACCOUNTS,
}


@st.composite
def engagement_rule(draw: st.DrawFn, audience_type: AudienceType) -> dict[str, Any]:
    spec = AUDIENCE_TYPES[audience_type]
    value = draw(st.sampled_from(sorted(spec.values)))
    fixed = spec.fixed_lookback and value not in spec.free_lookback_values
    body: dict[str, Any] = {
        "retention_days": draw(st.sampled_from([7, 14, 30] if fixed else [1, 7, 30, 180])),
        "filter_set": {"filters": [{"field": "EVENT", "operator": "EQ", "value": value}]},
    }
    ids = draw(st.lists(st.sampled_from(ENGAGEMENT_IDS[audience_type]), max_size=2, unique=True))
    if ids or spec.ids == "required":
        body["event_source_ids"] = ids or ENGAGEMENT_IDS[audience_type][:1]
    return body


@st.composite
def engagement_plans(draw: st.DrawFn) -> Plan:
    audience_type = draw(st.sampled_from(sorted(ENGAGEMENT_IDS)))
    inclusion = draw(st.lists(engagement_rule(audience_type), min_size=1, max_size=2))
    exclusion = draw(st.lists(engagement_rule(audience_type), max_size=1))
    spec: dict[str, Any] = {"inclusion_rule_set": {"operator": "OR", "rules": inclusion}}
    if exclusion:
        spec["exclusion_rule_set"] = {"operator": "OR", "rules": exclusion}
    plan = parse_rule_spec(audience_type, spec, resolve_source=_resolve)
    return replace(
        plan,
        inclusion=tuple(draw(extras(r)) for r in plan.inclusion),
        exclusion=tuple(draw(extras(r)) for r in plan.exclusion),
        combine=draw(st.sampled_from([Combine.ANY, Combine.ANY, Combine.ALL])),
    )


# Mostly near the end of the events' 45 days, so that long and short windows both hold some.
LATE = st.builds(lambda d, s: float(T0 + d * DAY + s), st.integers(40, 46), SECONDS)
AS_OFS = st.one_of(TIMES, LATE, LATE)


@st.composite
def retention_plans(draw: st.DrawFn) -> Plan:
    """APP plans whose first rule is day-2 retention (its installs are read besides its
    launches), with the family's other rules and extras."""
    first = draw(wire_rules("APP"))
    first["filter_set"]["filters"][0]["value"] = "DAY 2 RETENTION"
    others = draw(st.lists(wire_rules("APP"), max_size=1))
    exclusion = draw(st.lists(wire_rules("APP"), max_size=1))
    spec: dict[str, Any] = {"inclusion_rule_set": {"operator": "OR", "rules": [first, *others]}}
    if exclusion:
        spec["exclusion_rule_set"] = {"operator": "OR", "rules": exclusion}
    plan = parse_rule_spec("APP", spec, resolve_source=_resolve)
    return replace(plan, inclusion=tuple(draw(extras(r)) for r in plan.inclusion))


@st.composite
def lighter(draw: st.DrawFn, plans: st.SearchStrategy[Plan]) -> Plan:
    """Half the plans without their exclusion, half without the extras: with a handful of
    users, most plans with both would have no members, and the test would compare empty sets."""
    plan = draw(plans)
    if draw(st.booleans()):
        plan = replace(plan, exclusion=())
    if draw(st.booleans()):
        plain = [replace(r, min_count=1, min_value=None, top_share=None) for r in plan.inclusion]
        plan = replace(plan, inclusion=tuple(plain))
    return plan


PLANS = st.tuples(
    lighter(web_and_app_plans() | engagement_plans() | retention_plans()),
    st.sampled_from([ADV, ADV, OTHER_ADV]),
)


@st.composite
def retained(draw: st.DrawFn) -> list[dict[str, Any]]:
    """An app install and a launch of the same person a UTC day later (or the same day): the
    pairs day-2 retention rules look for, which independent events seldom make."""
    install = draw(event_rows())
    install.update(channel="app", source_id=APP, event="InstallApp", advertiser_id=ADV)
    install["event_time"] = draw(
        st.builds(lambda d, s: float(T0 + d * DAY + s), st.integers(36, 44), SECONDS)
    )
    launch = {**install, "event": "LaunchAPP"}
    launch["event_time"] += draw(st.sampled_from([1, DAY, DAY, DAY + 43_200]))
    return [install, launch]


ROWS = st.builds(
    lambda single, pairs: single + [row for pair in pairs for row in pair],
    st.lists(event_rows() | engagement_rows(), min_size=80, max_size=250),
    st.lists(retained(), min_size=1, max_size=6),
)


# --- helpers --------------------------------------------------------------------------------------


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _one_by_one(
    con: duckdb.DuckDBPyConnection, plans: dict[Any, tuple[Plan, int]], as_of: float, events: str
) -> dict[Any, BitMap]:
    return {
        key: rule_sql.evaluate(con, plan, advertiser_id=adv, as_of=as_of, events=events)
        for key, (plan, adv) in plans.items()
    }


def _temp_objects(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        name
        for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'likewise%'"
        ).fetchall()
    ]


def _compare(
    rows: list[dict[str, Any]],
    plans: dict[Any, tuple[Plan, int]],
    as_of: float,
    per_scan: int = ADVERTISERS_PER_SCAN,
) -> dict[Any, BitMap]:
    con = duckdb.connect()
    try:
        con.register("events", _table(rows))
        got = evaluate_many(con, plans, as_of=as_of, events="events", advertisers_per_scan=per_scan)
        assert got == _one_by_one(con, plans, as_of, "events")
        assert _temp_objects(con) == []  # cleaned up
        return got
    finally:
        con.close()


# --- agreement ------------------------------------------------------------------------------------


@SETTINGS
@given(
    rows=ROWS,
    plans=st.lists(PLANS, min_size=1, max_size=6),
    as_of=AS_OFS,
    per_scan=st.sampled_from([1, 2, ADVERTISERS_PER_SCAN]),
)
def test_many_plans_at_once_agree_with_each_plan_alone(
    rows: list[dict[str, Any]], plans: list[tuple[Plan, int]], as_of: float, per_scan: int
) -> None:
    """Also with one or two advertisers per scan: then the table is filled by several."""
    _compare(rows, dict(enumerate(plans)), as_of, per_scan)


# --- targeted cases -------------------------------------------------------------------------------


def _plan(
    audience_type: str, *rules: dict[str, Any], exclude: list[dict[str, Any]] | None = None
) -> Plan:
    spec: dict[str, Any] = {"inclusion_rule_set": {"operator": "OR", "rules": list(rules)}}
    if exclude:
        spec["exclusion_rule_set"] = {"operator": "OR", "rules": exclude}
    return parse_rule_spec(audience_type, spec, resolve_source=_resolve)


def _rule(value: str, ids: list[str] | None, days: int = 30, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "retention_days": days,
        "filter_set": {"filters": [{"field": "EVENT", "operator": "EQ", "value": value, **extra}]},
    }
    if ids is not None:
        body["event_source_ids"] = ids
    return body


AS_OF = float(T0 + 40 * DAY)


def _event(uid: int, advertiser: int, event: str, days_ago: float, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "uid": uid,
        "advertiser_id": advertiser,
        "source_id": PIXEL,
        "channel": "web",
        "event": event,
        "event_time": AS_OF - days_ago * DAY,
    }
    row.update(fields)
    return row


def _play(
    uid: int, advertiser: int, post: str, seconds: float, days_ago: float = 1, **fields: Any
) -> dict[str, Any]:
    return _event(
        uid,
        advertiser,
        "video_play",
        days_ago,
        source_id=0,
        channel="engagement",
        content_id=post,
        watched_seconds=seconds,
        **fields,
    )


@pytest.mark.parametrize("per_scan", [1, ADVERTISERS_PER_SCAN])
def test_organic_activity_counts_for_every_advertiser_naming_the_post(per_scan: int) -> None:
    """Also with one advertiser per scan: organic rows then come from another scan than the
    advertiser's own."""
    rows = [
        _play(1, 0, "v1", 5),  # organic, on v1: counts for both advertisers' rules on v1
        _play(2, ADV, "v1", 5, adgroup_id="g1"),  # an ad's play, stored under ADV: ADV's only
        _play(3, OTHER_ADV, "v1", 5),  # stored under OTHER_ADV: theirs only
        _play(4, 0, "v2", 5),  # organic on another post
        _play(5, 0, "v1", 1),  # too short for PLAY 2S
        _play(6, 0, "v1", 5, days_ago=8),  # outside a 7-day window
    ]
    organic = _plan("ENGAGEMENT_ORGANIC_VIDEO", _rule("ORGANIC VIDEO PLAY 2S", ["v1"], days=7))
    ads = _plan("ENGAGEMENT", _rule("PLAY 2S", None))  # every ad play of the advertiser's
    got = _compare(
        rows,
        {"adv": (organic, ADV), "other": (organic, OTHER_ADV), "ads": (ads, ADV)},
        AS_OF,
        per_scan,
    )
    assert got == {"adv": BitMap([1, 2]), "other": BitMap([1, 3]), "ads": BitMap([2])}


def test_day_2_retention_and_exclusion_and_top_share() -> None:
    rows = [
        # 1 installs and launches the next UTC day; 2 launches on the same day only
        _event(1, ADV, "InstallApp", 10, source_id=APP, channel="app"),
        _event(1, ADV, "LaunchAPP", 9, source_id=APP, channel="app"),
        _event(2, ADV, "InstallApp", 10, source_id=APP, channel="app"),
        _event(2, ADV, "LaunchAPP", 10, source_id=APP, channel="app"),
        # 3 retained too, but purchased in the app: excluded
        _event(3, ADV, "InstallApp", 10, source_id=APP, channel="app"),
        _event(3, ADV, "LaunchAPP", 9, source_id=APP, channel="app"),
        _event(3, ADV, "Purchase", 2, source_id=APP, channel="app"),
        # web buyers by value: 4 > 5 > 6
        _event(4, ADV, "CompletePayment", 3, value=300.0),
        _event(5, ADV, "CompletePayment", 3, value=200.0),
        _event(6, ADV, "Purchase", 3, value=100.0),
        _event(6, OTHER_ADV, "Purchase", 3, value=900.0),  # another advertiser's: never counts
    ]
    retained = _plan(
        "APP",
        _rule("DAY 2 RETENTION", [str(APP)]),
        exclude=[_rule("PURCHASE", [str(APP)])],
    )
    buyers = _plan("PIXEL", _rule("COMPLETE PAYMENT", [str(PIXEL)]))
    top = replace(buyers, inclusion=(replace(buyers.inclusion[0], top_share=0.5),))
    got = _compare(
        rows, {"retained": (retained, ADV), "buyers": (buyers, ADV), "top": (top, ADV)}, AS_OF
    )
    assert got == {
        "retained": BitMap([1]),
        "buyers": BitMap([4, 5, 6]),
        "top": BitMap([4, 5]),  # ceil(0.5 × 3) = 2
    }


def test_empty_results_and_no_plans() -> None:
    rows = [_event(1, ADV, "CompletePayment", 3)]
    none_yet = _plan("PIXEL", _rule("ADD TO CART", [str(PIXEL)]))
    elsewhere = _plan("PIXEL", _rule("COMPLETE PAYMENT", [str(PIXEL)]))
    got = _compare(rows, {"cart": (none_yet, ADV), "other": (elsewhere, OTHER_ADV)}, AS_OF)
    assert got == {"cart": BitMap(), "other": BitMap()}
    assert _compare([], {"cart": (none_yet, ADV)}, AS_OF) == {"cart": BitMap()}
    assert _compare(rows, {}, AS_OF) == {}


def test_over_the_stores_parquet_layout(tmp_path: Path) -> None:
    """Partitioned by advertiser and day as the event store writes them, read through a view
    (the bench's setup): the scans prune partitions, and the answer does not change."""
    rows = [
        _event(u, adv, name, days, value=float(u))
        for u in range(1, 30)
        for adv, name, days in [
            (ADV, "CompletePayment", u % 9),
            (OTHER_ADV, "AddToCart", u % 5 + 0.5),
            (ADV, "AddToCart", u % 7 + 0.25),
        ]
    ] + [_play(u, 0, POSTS[u % 3], u % 4) for u in range(1, 30)]
    table = _table(rows)
    for adv in (0, ADV, OTHER_ADV):
        part = tmp_path / f"advertiser_id={adv}" / "day=2023-11-14"
        part.mkdir(parents=True)
        mine = table.filter(pa.compute.equal(table["advertiser_id"], adv))
        pq.write_table(mine.drop_columns(["advertiser_id"]), part / "p.parquet")
    plans = {
        "buy": (_plan("PIXEL", _rule("COMPLETE PAYMENT", [str(PIXEL)], days=3)), ADV),
        "cart": (
            _plan(
                "PIXEL",
                _rule("ADD TO CART", [str(PIXEL)], days=5),
                exclude=[_rule("COMPLETE PAYMENT", [str(PIXEL)], days=5)],
            ),
            ADV,
        ),
        "cart_other": (_plan("PIXEL", _rule("ADD TO CART", [str(PIXEL)], days=2)), OTHER_ADV),
        "posts": (_plan("ENGAGEMENT_ORGANIC_VIDEO", _rule("ORGANIC VIDEO PLAY 2S", ["v1"])), ADV),
    }
    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE VIEW events AS SELECT * FROM read_parquet('{tmp_path}/**/*.parquet', "
            "hive_partitioning = true, union_by_name = true)"
        )
        got = evaluate_many(con, plans, as_of=AS_OF, events="events")
        assert got == _one_by_one(con, plans, AS_OF, "events")
        assert all(got.values())
    finally:
        con.close()


@pytest.mark.parametrize("combine", [Combine.ANY, Combine.ALL])
def test_rules_shared_between_plans(combine: Combine) -> None:
    """The same rule in several plans (and the same plan under several keys) is read once and
    answers each."""
    rows = [_event(u, ADV, "CompletePayment", u) for u in range(1, 9)]
    rows += [_event(u, ADV, "AddToCart", u / 2) for u in range(1, 9)]
    buy = _rule("COMPLETE PAYMENT", [str(PIXEL)], days=5)
    cart = _rule("ADD TO CART", [str(PIXEL)], days=3)
    both = replace(_plan("PIXEL", buy, cart), combine=combine)
    plans = {i: (p, ADV) for i, p in enumerate([both, both, _plan("PIXEL", buy)])}
    got = _compare(rows, plans, AS_OF)
    assert got[0] == got[1]
