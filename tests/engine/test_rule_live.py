"""The incremental rule evaluator (likewise.engine.rule_live), event by event.

Issue 4: a qualifying event makes the user a member within seconds, an exclusion event removes
them, and a sweep removes members whose last qualifying event left the window, on time; late
identity resolution (an old event applied late) updates memberships too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pyroaring import BitMap

from likewise.domain.rule_spec import parse_rule_spec
from likewise.domain.rule_values import TYPES
from likewise.domain.rules import (
    AudienceType,
    Combine,
    Operator,
    ParamField,
    ParamFilter,
    Plan,
    Rule,
    SourceKind,
)
from likewise.engine.rule_live import LiveAudience

ADV = 7
PIXEL = 11
OTHER_PIXEL = 12
APP = 21
DAY = 86_400.0
T0 = 1_700_000_000.0  # a UTC midnight is T0 - T0 % DAY

SCHEMA = pa.schema(
    [
        ("uid", pa.uint32()),
        ("advertiser_id", pa.int64()),
        ("source_id", pa.int64()),
        ("channel", pa.string()),
        ("event", pa.string()),
        ("event_time", pa.float64()),
        ("url", pa.string()),
        ("value", pa.float64()),
        ("content_type", pa.string()),
        ("content_ids", pa.list_(pa.string())),
        ("content_categories", pa.list_(pa.string())),
        ("prices", pa.list_(pa.float64())),
        ("adgroup_id", pa.string()),
        ("content_id", pa.string()),
        ("live_id", pa.string()),
        ("creator_id", pa.string()),
        ("account_id", pa.string()),
        ("form_id", pa.string()),
        ("watched_seconds", pa.float64()),
        ("watched_percent", pa.float64()),
    ]
)
DEFAULTS: dict[str, Any] = {
    "advertiser_id": ADV,
    "source_id": PIXEL,
    "channel": "web",
    "event": "CompletePayment",
    "content_ids": [],
    "content_categories": [],
    "prices": [],
}


def events(*rows: Mapping[str, Any]) -> pa.Table:
    """Stored events as the usable-events relation gives them (defaults: a web purchase on the
    advertiser's pixel)."""
    full = [{**DEFAULTS, **row} for row in rows]
    return pa.Table.from_pylist(full, schema=SCHEMA)


def resolve(kind: SourceKind, raw_id: str) -> int | str | None:
    return int(raw_id) if kind in (SourceKind.PIXEL, SourceKind.APP) else raw_id


def rule(
    value: str = "COMPLETE PAYMENT",
    days: int = 30,
    params: list[dict[str, Any]] | None = None,
    source: int | str = PIXEL,
) -> dict[str, Any]:
    return {
        "event_source_ids": [str(source)],
        "retention_days": days,
        "filter_set": {
            "operator": "OR",
            "filters": [
                {
                    "field": "EVENT",
                    "operator": "EQ",
                    "value": value,
                    "parameter_filters": params or [],
                }
            ],
        },
    }


def plan(
    *inclusion: dict[str, Any],
    exclusion: tuple[dict[str, Any], ...] = (),
    audience_type: str = "PIXEL",
) -> Plan:
    spec: dict[str, Any] = {"inclusion_rule_set": {"operator": "OR", "rules": list(inclusion)}}
    if exclusion:
        spec["exclusion_rule_set"] = {"operator": "OR", "rules": list(exclusion)}
    return parse_rule_spec(audience_type, spec, resolve_source=resolve)


def live(p: Plan, *batches: pa.Table) -> LiveAudience:
    audience = LiveAudience(p, advertiser_id=ADV)
    for batch in batches:
        audience.apply(batch)
    return audience


def with_rule(p: Plan, **changes: Any) -> Plan:
    """The plan with its first inclusion rule changed (Likewise's own extras)."""
    return replace(p, inclusion=(replace(p.inclusion[0], **changes), *p.inclusion[1:]))


# --- membership -----------------------------------------------------------------------------------


def test_a_qualifying_event_makes_a_member() -> None:
    audience = live(plan(rule()), events({"uid": 1, "event_time": T0}))
    assert audience.members(T0) == BitMap([1])
    assert audience.members(T0 + 5) == BitMap([1])


def test_events_that_do_not_qualify_make_no_member() -> None:
    audience = live(
        plan(rule()),
        events(
            {"uid": 1, "event_time": T0, "source_id": OTHER_PIXEL},  # another pixel
            {"uid": 2, "event_time": T0, "advertiser_id": ADV + 1},  # another advertiser
            {"uid": 3, "event_time": T0, "event": "AddToCart"},  # another event
            {"uid": 4, "event_time": T0, "channel": "app"},  # not a web event
            {"uid": 5, "event_time": T0, "channel": "pixel", "event": "Purchase"},  # qualifies
        ),
    )
    assert audience.members(T0) == BitMap([5])


def test_an_exclusion_event_removes_a_member() -> None:
    p = plan(rule(), exclusion=(rule("ADD TO CART", days=7),))
    audience = live(p, events({"uid": 1, "event_time": T0}, {"uid": 2, "event_time": T0}))
    assert audience.members(T0) == BitMap([1, 2])
    audience.apply(events({"uid": 2, "event_time": T0 + 60, "event": "AddToCart"}))
    assert audience.members(T0 + 60) == BitMap([1])
    # The exclusion lapses after its own (shorter) window: the purchase still counts.
    assert audience.members(T0 + 60 + 7 * DAY) == BitMap([1, 2])


def test_window_expiry_is_exact_at_the_boundary() -> None:
    audience = live(plan(rule(days=7)), events({"uid": 1, "event_time": T0}))
    assert audience.members(T0 + 7 * DAY - 0.001) == BitMap([1])
    assert audience.members(T0 + 7 * DAY) == BitMap()  # as_of - 7 days < t fails at equality


def test_an_event_stamped_after_as_of_counts_only_from_its_time() -> None:
    audience = live(plan(rule(days=1)), events({"uid": 1, "event_time": T0 + 100}))
    assert audience.members(T0) == BitMap()
    assert audience.members(T0 + 100) == BitMap([1])


def test_min_count() -> None:
    p = with_rule(plan(rule(days=10)), min_count=3)
    audience = live(
        p,
        events(*({"uid": 1, "event_time": T0 + i * DAY} for i in range(3))),
        events(*({"uid": 2, "event_time": T0 + i * DAY} for i in range(2))),
    )
    assert audience.members(T0 + 2 * DAY) == BitMap([1])
    # The first of user 1's purchases leaves the window: two remain.
    assert audience.members(T0 + 10 * DAY) == BitMap()
    audience.apply(events({"uid": 1, "event_time": T0 + 10 * DAY}))
    assert audience.members(T0 + 10 * DAY) == BitMap([1])


def test_min_count_survives_pruning_of_old_events() -> None:
    # Only the latest min_count events of a user before the reference are kept; the answer at
    # any later time must be unchanged by that.
    p = with_rule(plan(rule(days=10)), min_count=2)
    times = [T0, T0 + DAY, T0 + 2 * DAY, T0 + 20 * DAY]
    audience = live(p, events(*({"uid": 1, "event_time": t} for t in times)))
    assert audience.members(T0 + 5 * DAY) == BitMap([1])
    assert audience.members(T0 + 11 * DAY) == BitMap()  # only T0 + 2 days is left
    assert audience.members(T0 + 20 * DAY) == BitMap()
    audience.apply(events({"uid": 1, "event_time": T0 + 19 * DAY}))
    assert audience.members(T0 + 20 * DAY) == BitMap([1])


def test_min_value_sums_values_and_missing_counts_as_zero() -> None:
    p = with_rule(plan(rule()), min_value=100.0)
    audience = live(
        p,
        events(
            {"uid": 1, "event_time": T0, "value": 60.0},
            {"uid": 1, "event_time": T0 + 1, "value": 40.0},
            {"uid": 2, "event_time": T0, "value": 99.0},
            {"uid": 2, "event_time": T0 + 1},  # no value
            {"uid": 3, "event_time": T0, "value": 150.0},
        ),
    )
    assert audience.members(T0 + 1) == BitMap([1, 3])


def test_top_share_keeps_the_highest_sums_ties_to_the_lower_uid() -> None:
    p = with_rule(plan(rule()), top_share=0.5)
    rows = [{"uid": u, "event_time": T0, "value": v} for u, v in [(1, 5), (2, 10), (3, 10), (4, 1)]]
    audience = live(p, events(*rows))
    assert audience.members(T0) == BitMap([2, 3])
    p = with_rule(plan(rule()), top_share=0.25)
    assert live(p, events(*rows)).members(T0) == BitMap([2])  # 2 and 3 tie: the lower uid


def test_top_share_has_no_floating_point_noise() -> None:
    # 0.1 * 30 is 3.0000000000000004: the top 10% of 30 people is 3 of them, not 4.
    p = with_rule(plan(rule()), top_share=0.1)
    rows = [{"uid": u, "event_time": T0, "value": float(u)} for u in range(1, 31)]
    assert live(p, events(*rows)).members(T0) == BitMap([28, 29, 30])


def test_combine_all_needs_every_inclusion_rule() -> None:
    p = replace(plan(rule(), rule("ADD TO CART")), combine=Combine.ALL)
    audience = live(
        p,
        events(
            {"uid": 1, "event_time": T0},
            {"uid": 1, "event_time": T0, "event": "AddToCart"},
            {"uid": 2, "event_time": T0},
            {"uid": 3, "event_time": T0, "event": "AddToCart"},
        ),
    )
    assert audience.members(T0) == BitMap([1])
    any_plan = plan(rule(), rule("ADD TO CART"))
    assert live(any_plan, events({"uid": 3, "event_time": T0, "event": "AddToCart"})).members(
        T0
    ) == BitMap([3])


# --- late events ----------------------------------------------------------------------------------


def test_a_late_event_counts_as_if_it_had_arrived_in_time() -> None:
    # Late identity resolution: the event is applied only when its user becomes known.
    audience = live(plan(rule(days=7)))
    assert audience.members(T0) == BitMap()
    audience.apply(events({"uid": 9, "event_time": T0 - 3 * DAY}))
    assert audience.members(T0) == BitMap([9])
    assert audience.members(T0 + 4 * DAY) == BitMap()  # and it expires on its own time


def test_an_event_already_out_of_the_window_is_ignored() -> None:
    audience = live(plan(rule(days=7)))
    audience.members(T0)
    audience.apply(events({"uid": 9, "event_time": T0 - 7 * DAY}))
    assert audience.members(T0) == BitMap()


def test_an_as_of_before_the_pruning_reference_is_refused() -> None:
    audience = live(plan(rule()), events({"uid": 1, "event_time": T0}))
    audience.members(T0)
    with pytest.raises(ValueError, match="before"):
        audience.members(T0 - 1)
    assert audience.as_of == T0


def test_forgotten_users_stop_counting() -> None:
    audience = live(
        plan(rule()), events({"uid": 1, "event_time": T0}, {"uid": 2, "event_time": T0})
    )
    audience.forget(BitMap([2]))
    assert audience.members(T0) == BitMap([1])


# --- sources and filters --------------------------------------------------------------------------


def test_organic_activity_counts_on_the_named_objects_only() -> None:
    p = plan(
        rule("ORGANIC VIDEO ENGAGEMENT", days=7, source="post-1"),
        audience_type="ENGAGEMENT_ORGANIC_VIDEO",
    )
    base = {"channel": "engagement", "event": "like", "event_time": T0, "source_id": 0}
    audience = live(
        p,
        events(
            {**base, "uid": 1, "advertiser_id": 0, "content_id": "post-1"},
            {**base, "uid": 2, "advertiser_id": 0, "content_id": "post-2"},
            {**base, "uid": 3, "advertiser_id": ADV, "content_id": "post-1"},
            {**base, "uid": 4, "advertiser_id": ADV + 1, "content_id": "post-1"},
        ),
    )
    assert audience.members(T0) == BitMap([1, 3])


def test_organic_activity_counts_only_on_the_advertisers_creators() -> None:
    p = plan(
        rule("ORGANIC VIDEO ENGAGEMENT", days=7, source="post-1"),
        audience_type="ENGAGEMENT_ORGANIC_VIDEO",
    )
    sources = replace(p.inclusion[0].sources, creators=("acct-1",))
    p = replace(p, inclusion=(replace(p.inclusion[0], sources=sources),))
    base = {"channel": "engagement", "event": "like", "event_time": T0, "source_id": 0}
    post = {**base, "content_id": "post-1"}
    audience = live(
        p,
        events(
            {**post, "uid": 1, "advertiser_id": 0, "creator_id": "acct-1"},
            {**post, "uid": 2, "advertiser_id": 0, "creator_id": "acct-2"},
            {**post, "uid": 3, "advertiser_id": 0},
            {**post, "uid": 4, "advertiser_id": ADV},
        ),
    )
    assert audience.members(T0) == BitMap([1, 4])


def test_engagement_without_ad_groups_takes_ads_only() -> None:
    p = plan(rule("PLAY 2S", source="ag-1"), audience_type="ENGAGEMENT")
    unnamed = replace(p.inclusion[0].sources, ids=())
    p = replace(p, inclusion=(replace(p.inclusion[0], sources=unnamed),))
    base = {"channel": "engagement", "event": "video_play", "event_time": T0, "source_id": 0}
    audience = live(
        p,
        events(
            {**base, "uid": 1, "adgroup_id": "ag-7", "watched_seconds": 5.0},
            {**base, "uid": 2, "content_id": "post-1", "watched_seconds": 5.0},  # not an ad
        ),
    )
    assert audience.members(T0) == BitMap([1])


def test_play_depth_thresholds_fail_without_the_measure() -> None:
    p = plan(rule("PLAY 50", source="ag-1"), audience_type="ENGAGEMENT")
    base = {"channel": "engagement", "event": "video_play", "event_time": T0, "adgroup_id": "ag-1"}
    audience = live(
        p,
        events(
            {**base, "uid": 1, "watched_percent": 50.0},
            {**base, "uid": 2, "watched_percent": 49.9},
            {**base, "uid": 3, "watched_seconds": 30.0},  # no percentage known
        ),
    )
    assert audience.members(T0) == BitMap([1])


def test_url_filters_ignore_case_and_a_missing_url_passes_a_negative_one() -> None:
    contains = plan(rule(params=[{"field": "URL", "operator": "CONTAINS", "values": ["/Shoes"]}]))
    excludes = plan(
        rule(params=[{"field": "URL", "operator": "DOES_NOT_CONTAIN", "values": ["a_b", "x%"]}])
    )
    rows = events(
        {"uid": 1, "event_time": T0, "url": "https://shop.example/shoes/42"},
        {"uid": 2, "event_time": T0, "url": "https://shop.example/hats"},
        {"uid": 3, "event_time": T0},  # no url
        {"uid": 4, "event_time": T0, "url": "https://shop.example/A_B"},
        {"uid": 5, "event_time": T0, "url": "https://shop.example/aXb"},  # "_" is literal
    )
    assert live(contains, rows).members(T0) == BitMap([1])
    assert live(excludes, rows).members(T0) == BitMap([1, 2, 3, 5])


def test_list_fields_match_when_any_element_does() -> None:
    p = plan(
        rule(
            params=[
                {"field": "CONTENT_ID", "operator": "EQ", "values": ["sku-1", "sku-2"]},
                {"field": "PRICE", "operator": "IS_GREATER_THAN", "values": ["100"]},
            ]
        )
    )
    audience = live(
        p,
        events(
            {"uid": 1, "event_time": T0, "content_ids": ["x", "SKU-2"], "prices": [5.0, 150.0]},
            {"uid": 2, "event_time": T0, "content_ids": ["sku-1"], "prices": [100.0]},
            {"uid": 3, "event_time": T0, "content_ids": ["sku-3"], "prices": [500.0]},
            {"uid": 4, "event_time": T0, "prices": [500.0]},  # no content ids
        ),
    )
    assert audience.members(T0) == BitMap([1])


def test_negative_operators_negate_the_or_of_the_values() -> None:
    p = plan(
        rule(
            params=[
                {"field": "CONTENT_CATEGORY", "operator": "NOT_EQUAL", "values": ["toys", "food"]}
            ]
        )
    )
    audience = live(
        p,
        events(
            {"uid": 1, "event_time": T0, "content_categories": ["books"]},
            {"uid": 2, "event_time": T0, "content_categories": ["books", "Toys"]},
            {"uid": 3, "event_time": T0},  # no categories: passes
        ),
    )
    assert audience.members(T0) == BitMap([1, 3])


def test_numeric_comparison_of_a_text_field_reads_numbers_only() -> None:
    f = ParamFilter(ParamField.CONTENT_TYPE, Operator.GTE, ("3",), (3.0,))
    p = with_rule(plan(rule()), filters=(f,))
    audience = live(
        p,
        events(
            {"uid": 1, "event_time": T0, "content_type": " 4.5 "},
            {"uid": 2, "event_time": T0, "content_type": "2"},
            {"uid": 3, "event_time": T0, "content_type": "product"},
            {"uid": 4, "event_time": T0},
        ),
    )
    assert audience.members(T0) == BitMap([1])


def test_value_filter() -> None:
    p = plan(rule(params=[{"field": "VALUE", "operator": "IS_LESS_THAN_OR_EQUAL_TO", "value": 10}]))
    audience = live(
        p,
        events(
            {"uid": 1, "event_time": T0, "value": 10.0},
            {"uid": 2, "event_time": T0, "value": 10.5},
            {"uid": 3, "event_time": T0},
        ),
    )
    assert audience.members(T0) == BitMap([1])


def test_a_batch_without_some_columns() -> None:
    table = pa.table(
        {
            "uid": pa.array([1, 2], pa.uint32()),
            "advertiser_id": [ADV, ADV],
            "source_id": [PIXEL, PIXEL],
            "channel": ["web", "web"],
            "event": ["CompletePayment", "CompletePayment"],
            "event_time": [T0, T0],
            "url": [None, "https://x.example/sale"],
        }
    )
    p = plan(rule(params=[{"field": "URL", "operator": "CONTAINS", "values": ["sale"]}]))
    assert live(p, table).members(T0) == BitMap([2])
    p = plan(rule(params=[{"field": "CONTENT_ID", "operator": "NOT_EQUAL", "values": ["a"]}]))
    assert live(p, table).members(T0) == BitMap([1, 2])


# --- day-2 retention ------------------------------------------------------------------------------


def test_day_2_retention_needs_a_launch_on_the_next_utc_day() -> None:
    p = plan(rule("DAY 2 RETENTION", days=7, source=APP), audience_type="APP")
    midnight = T0 - T0 % DAY
    base = {"channel": "app", "source_id": APP}
    audience = live(
        p,
        events(
            # 1: installed late on day 0, launched early on day 1: retained.
            {**base, "uid": 1, "event": "InstallApp", "event_time": midnight - 60},
            {**base, "uid": 1, "event": "LaunchAPP", "event_time": midnight + 60},
            # 2: launched the same day only.
            {**base, "uid": 2, "event": "InstallApp", "event_time": midnight + 10},
            {**base, "uid": 2, "event": "LaunchAPP", "event_time": midnight + 20},
            # 3: launched two days later only.
            {**base, "uid": 3, "event": "InstallApp", "event_time": midnight - 60},
            {**base, "uid": 3, "event": "LaunchAPP", "event_time": midnight + DAY + 60},
            # 4: a launch without an install.
            {**base, "uid": 4, "event": "LaunchAPP", "event_time": midnight + 60},
        ),
    )
    assert audience.members(midnight + 2 * DAY) == BitMap([1])
    # The install leaves the window first: then the launch alone does not count.
    assert audience.members(midnight - 60 + 7 * DAY) == BitMap()


def test_day_2_retention_install_may_arrive_after_the_launch() -> None:
    p = plan(rule("DAY 2 RETENTION", days=7, source=APP), audience_type="APP")
    base = {"channel": "app", "source_id": APP, "uid": 1}
    audience = live(p, events({**base, "event": "LaunchAPP", "event_time": T0 + DAY}))
    assert audience.members(T0 + DAY) == BitMap()
    audience.apply(events({**base, "event": "InstallApp", "event_time": T0}))
    assert audience.members(T0 + DAY) == BitMap([1])


# --- the sweep ------------------------------------------------------------------------------------


def test_next_change_is_when_a_member_expires() -> None:
    audience = live(plan(rule(days=7)))
    assert audience.next_change() is None
    audience.apply(events({"uid": 1, "event_time": T0}, {"uid": 2, "event_time": T0 + 50}))
    assert audience.members(T0 + 100) == BitMap([1, 2])
    assert audience.next_change() == T0 + 7 * DAY
    assert audience.members(T0 + 7 * DAY) == BitMap([2])  # the sweep, on time
    assert audience.next_change() == T0 + 50 + 7 * DAY
    assert audience.members(T0 + 50 + 7 * DAY) == BitMap()
    assert audience.next_change() is None


def test_next_change_includes_exclusions_lapsing_and_future_events() -> None:
    p = plan(rule(days=30), exclusion=(rule("ADD TO CART", days=1),))
    audience = live(
        p,
        events(
            {"uid": 1, "event_time": T0},
            {"uid": 1, "event_time": T0 + 10, "event": "AddToCart"},
            {"uid": 2, "event_time": T0 + 5000},  # stamped ahead of the clock
        ),
    )
    assert audience.members(T0 + 10) == BitMap()
    assert audience.next_change() == T0 + 5000
    assert audience.members(T0 + 5000) == BitMap([2])
    assert audience.next_change() == T0 + 10 + DAY
    assert audience.members(T0 + 10 + DAY) == BitMap([1, 2])


def test_next_change_counts_events_applied_since_the_last_query() -> None:
    audience = live(plan(rule(days=1)))
    audience.members(T0)
    audience.apply(events({"uid": 1, "event_time": T0}))
    assert audience.next_change() == T0 + DAY


# --- scale ----------------------------------------------------------------------------------------


def test_a_batch_of_50000_events_applies_fast() -> None:
    rng = np.random.default_rng(4)
    n = 50_000
    names = np.array(["CompletePayment", "AddToCart", "PageView", "ViewContent"])
    table = pa.table(
        {
            "uid": pa.array(rng.integers(0, 20_000, n), pa.uint32()),
            "advertiser_id": pa.array(np.full(n, ADV), pa.int64()),
            "source_id": pa.array(rng.choice([PIXEL, OTHER_PIXEL], n), pa.int64()),
            "channel": pa.array(np.full(n, "web")),
            "event": pa.array(names[rng.integers(0, len(names), n)]),
            "event_time": pa.array(T0 - rng.uniform(0, 40 * DAY, n)),
            "url": pa.array([f"https://shop.example/p/{i % 97}" for i in range(n)]),
            "value": pa.array(rng.uniform(0, 200, n)),
            "content_ids": pa.array([[f"sku-{i % 13}"] for i in range(n)], pa.list_(pa.string())),
        }
    )
    p = plan(
        rule(params=[{"field": "URL", "operator": "CONTAINS", "values": ["/p/1"]}]),
        rule("ADD TO CART", days=14),
        exclusion=(
            rule(
                "PAGE BROWSE",
                days=3,
                params=[{"field": "CONTENT_ID", "operator": "EQ", "values": ["sku-3"]}],
            ),
        ),
    )
    p = replace(p, inclusion=(replace(p.inclusion[0], min_value=300.0), p.inclusion[1]))
    audience = LiveAudience(p, advertiser_id=ADV)
    started = time.perf_counter()
    audience.apply(table)
    members = audience.members(T0)
    elapsed = time.perf_counter() - started
    assert len(members) > 1000
    assert elapsed < 2.0, f"{elapsed:.2f}s for one batch of {n} events"


def test_every_audience_type_applies() -> None:
    # Each type's first filter value, over a batch that carries every column: no type trips.
    table = events({"uid": 1, "event_time": T0})
    for audience_type, spec in TYPES.items():
        source = {SourceKind.PIXEL: PIXEL, SourceKind.APP: APP}.get(spec.kind, "obj-1")
        value = sorted(spec.values)[0]
        r = rule(value, days=30, source=source)
        if spec.ids == "forbidden":
            r["event_source_ids"] = []
        p = plan(r, audience_type=audience_type.value)
        assert isinstance(live(p, table).members(T0), BitMap)


def test_a_plan_built_in_code() -> None:
    # Rules are pure data: a plan built without the parser is read the same way.
    from likewise.domain.rules import EventMatch, Sources

    r = Rule(
        sources=Sources(SourceKind.PIXEL, "source_id", (PIXEL,)),
        event=EventMatch("signup", frozenset({"web"}), frozenset({"signup_done"}), custom=True),
        lookback_days=2,
    )
    p = Plan(AudienceType.PIXEL, inclusion=(r,))
    audience = live(p, events({"uid": 3, "event_time": T0, "event": "signup_done"}))
    assert audience.members(T0 + DAY) == BitMap([3])


def test_real_advertiser_ids_are_told_apart() -> None:
    """Advertiser ids are 64-bit (7000000000000000001 and ...002 are the same float64)."""
    big = 7_000_000_000_000_000_001
    p = plan(rule())
    audience = LiveAudience(p, advertiser_id=big)
    audience.apply(
        events(
            {"uid": 1, "event_time": T0, "advertiser_id": big},
            {"uid": 2, "event_time": T0, "advertiser_id": big + 1},
        )
    )
    assert audience.members(T0) == BitMap([1])
