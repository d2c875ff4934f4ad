"""The two evaluators of a rule plan agree (DESIGN.md, "The audience engine": one plan, two
evaluators that must agree).

Hypothesis draws an event stream (a handful of users, sources, events including ones that
qualify for exclusion rules, values, URLs and list fields, times over about 45 days on a grid
that makes window boundaries land exactly on events) and a plan from a small family (PIXEL
purchase / add to cart / page browse with lookbacks, URL, VALUE, PRICE, CONTENT_ID and numeric
CONTENT_TYPE filters, exclusion, min_count, min_value, Combine.ALL, top_share; APP rules
with day-2 retention). The events arrive in random batches in arrival order (not event-time
order: late events included); after each batch, and at sweep times after the last, the
incremental evaluator's members are compared with the batch SQL's over the events arrived so
far. Between a query and :meth:`LiveAudience.next_change` the batch answer must not change
(the sweep misses nothing).

Values are whole numbers: a sum of doubles depends on the order of addition, which no two
engines (nor two parallel runs of one) share, so a threshold met by a rounding error is not a
meaning either evaluator could promise.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from likewise.domain.rule_spec import parse_rule_spec
from likewise.domain.rules import Combine, Plan, Rule, SourceKind
from likewise.engine import rule_sql
from likewise.engine.rule_live import LiveAudience
from tests.engine.test_rule_live import SCHEMA  # the event columns both evaluators read

ADV = 7
PIXEL = 11
OTHER_PIXEL = 12
APP = 21
DAY = 86_400
T0 = 1_699_920_000  # a UTC midnight
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


# --- strategies -----------------------------------------------------------------------------------

# Seconds into a day: midnight, just after, noon, the last second (UTC day edges for day-2
# retention; whole-day lookbacks put window edges exactly on these).
SECONDS = st.sampled_from([0, 1, 43_200, 86_399])
TIMES = st.builds(lambda d, s: float(T0 + d * DAY + s), st.integers(0, 45), SECONDS)
URLS = st.sampled_from(
    [
        None,
        "https://shop.example/Sale/1",
        "https://shop.example/sale_2",
        "https://shop.example/checkout",
        "https://SHOP.example/cart%25",
        "https://shop.example/saleXb",
    ]
)


@st.composite
def event_rows(draw: st.DrawFn) -> dict[str, Any]:
    """One stored event: mostly the advertiser's web or app events of the plan family, some
    of another advertiser, source or channel (which must never count)."""
    if draw(st.booleans()):
        channel = draw(st.sampled_from(["web", "pixel"]))
        source = draw(st.sampled_from([PIXEL, PIXEL, OTHER_PIXEL]))
        names = ["CompletePayment", "Purchase", "AddToCart", "PageView", "LaunchAPP"]
    else:
        channel, source = "app", APP
        names = ["InstallApp", "LaunchAPP", "LaunchAPP", "Purchase", "AddToCart"]
    if draw(st.integers(0, 9)) == 0:  # noise: the wrong channel or source for its name
        channel = draw(st.sampled_from(["web", "app", "offline"]))
        source = draw(st.sampled_from([PIXEL, APP, 99]))
    return {
        "uid": draw(st.integers(1, 4)),
        "advertiser_id": draw(st.sampled_from([ADV] * 8 + [ADV + 1, 0])),
        "source_id": source,
        "channel": channel,
        "event": draw(st.sampled_from(names)),
        "event_time": draw(TIMES),
        "url": draw(URLS),
        "value": draw(st.none() | st.integers(-20, 100).map(float)),
        "content_type": draw(st.sampled_from([None, "product", "3", " 7 ", "Product"])),
        "content_ids": draw(
            st.lists(st.sampled_from(["sku-1", "SKU-1", "sku-2", "x_y"]), max_size=3)
        ),
        "content_categories": draw(st.lists(st.sampled_from(["toys", "Food"]), max_size=2)),
        "prices": draw(st.lists(st.sampled_from([5.0, 50.0, 150.0]), max_size=2)),
    }


PARAM_FILTERS = st.sampled_from(
    [
        {"field": "URL", "operator": "CONTAINS", "values": ["sale"]},
        {"field": "URL", "operator": "CONTAINS", "values": ["/sale_", "checkout"]},
        {"field": "URL", "operator": "DOES_NOT_CONTAIN", "values": ["Sale", "%25"]},
        {"field": "URL", "operator": "EQ", "values": ["https://shop.example/checkout"]},
        {"field": "VALUE", "operator": "IS_GREATER_THAN", "values": ["10"]},
        {"field": "VALUE", "operator": "IS_LESS_THAN_OR_EQUAL_TO", "values": ["50", "0"]},
        {"field": "VALUE", "operator": "NOT_EQUAL", "values": ["0"]},
        {"field": "PRICE", "operator": "IS_GREATER_THAN_OR_EQUAL_TO", "values": ["50"]},
        {"field": "PRICE", "operator": "EQ", "values": ["5"]},
        {"field": "CONTENT_ID", "operator": "EQ", "values": ["sku-1"]},
        {"field": "CONTENT_ID", "operator": "NOT_EQUAL", "values": ["sku-2", "x_y"]},
        {"field": "CONTENT_ID", "operator": "CONTAINS", "values": ["_"]},
        {"field": "CONTENT_CATEGORY", "operator": "DOES_NOT_CONTAIN", "values": ["FOO"]},
        {"field": "CONTENT_TYPE", "operator": "IS_GREATER_THAN", "values": ["4"]},
        {"field": "CONTENT_TYPE", "operator": "EQ", "values": ["product"]},
    ]
)
PIXEL_VALUES = ["COMPLETE PAYMENT", "ADD TO CART", "PAGE BROWSE"]
APP_VALUES = ["DAY 2 RETENTION", "LAUNCH APP", "INSTALL", "PURCHASE"]


def _resolve(kind: SourceKind, raw_id: str) -> int | str | None:
    return int(raw_id)


@st.composite
def wire_rules(draw: st.DrawFn, audience_type: str) -> dict[str, Any]:
    pixel = audience_type == "PIXEL"
    params = draw(st.lists(PARAM_FILTERS, max_size=2, unique_by=lambda f: f["field"]))
    params = params if draw(st.integers(0, 2)) == 0 else []  # most rules filter nothing
    if not pixel:
        params = [f for f in params if f["field"] != "URL"]
    sources = [PIXEL] if pixel else [APP]
    if pixel and draw(st.booleans()):
        sources.append(OTHER_PIXEL)
    return {
        "event_source_ids": [str(s) for s in sources],
        "retention_days": draw(st.sampled_from([1, 2, 7, 7, 30, 30])),
        "filter_set": {
            "filters": [
                {
                    "field": "EVENT",
                    "operator": "EQ",
                    "value": draw(st.sampled_from(PIXEL_VALUES if pixel else APP_VALUES)),
                    "parameter_filters": params,
                }
            ]
        },
    }


@st.composite
def extras(draw: st.DrawFn, rule: Rule) -> Rule:
    """Likewise's own extras on a parsed rule: min_count, min_value, top_share."""
    return replace(
        rule,
        min_count=draw(st.sampled_from([1, 1, 1, 2, 3])),
        min_value=draw(st.sampled_from([None, None, None, 0.0, 30.0, 100.0])),
        top_share=draw(st.sampled_from([None, None, None, 0.1, 0.34, 0.5, 1.0])),
    )


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    audience_type = draw(st.sampled_from(["PIXEL", "PIXEL", "APP"]))
    inclusion = draw(st.lists(wire_rules(audience_type), min_size=1, max_size=2))
    exclusion = draw(st.lists(wire_rules(audience_type), max_size=1)) if draw(st.booleans()) else []
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


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[list[dict[str, Any]]], list[float]]:
    """Events in arrival order, cut into batches, and one query time per batch (never going
    back) plus a few later ones."""
    events = draw(st.lists(event_rows(), min_size=15, max_size=60))
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), max_size=5)))
    bounds = [0, *cuts, len(events)]
    batches = [events[a:b] for a, b in itertools.pairwise(bounds)]
    times = sorted(draw(st.lists(TIMES, min_size=len(batches) + 3, max_size=len(batches) + 3)))
    return batches, times


# --- the comparison -------------------------------------------------------------------------------


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _batch(
    con: duckdb.DuckDBPyConnection, plan: Plan, rows: list[dict[str, Any]], t: float
) -> BitMap:
    con.register("events", _table(rows))
    try:
        return rule_sql.evaluate(con, plan, advertiser_id=ADV, as_of=t, events="events")
    finally:
        con.unregister("events")


@SETTINGS
@given(plan=plans(), stream=streams())
def test_incremental_and_batch_evaluators_agree(
    plan: Plan, stream: tuple[list[list[dict[str, Any]]], list[float]]
) -> None:
    batches, times = stream
    live = LiveAudience(plan, advertiser_id=ADV)
    arrived: list[dict[str, Any]] = []
    con = duckdb.connect()
    try:
        for i, t in enumerate(times):
            if i < len(batches):
                live.apply(_table(batches[i]))
                arrived.extend(batches[i])
            expected = _batch(con, plan, arrived, t)
            assert live.members(t) == expected, f"as of day {(t - T0) / DAY:.5f}"
            # The sweep time: nothing changes before it without new events.
            change = live.next_change()
            if change is not None:
                assert change > t
                assert _batch(con, plan, arrived, change - 0.5) == expected
            else:
                assert _batch(con, plan, arrived, t + 200 * DAY) == expected
        # Sweeps after the last event, on time.
        while (change := live.next_change()) is not None:
            assert live.members(change) == _batch(con, plan, arrived, change)
    finally:
        con.close()
