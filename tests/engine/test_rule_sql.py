"""The batch evaluator of rule plans (``likewise.engine.rule_sql``) over a real event store:
events go through the log and the processor, resolve against a real identity graph, and plans
(parsed from TikTok ``rule_spec`` bodies, or built directly for Likewise's own extras) are
evaluated over the usable events, as the audience jobs will."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from likewise.domain.rule_spec import parse_rule_spec
from likewise.domain.rules import (
    AudienceType,
    Combine,
    EventMatch,
    Plan,
    Rule,
    SourceKind,
    Sources,
)
from likewise.engine.rule_sql import evaluate, plan_sql, rule_predicate, top_count
from likewise.ingest.queries import usable_events_sql
from likewise.ingest.records import EventRecord
from tests.engine.test_event_identity import T0, World

DAY = 86_400.0
ADVERTISER = 7
PIXEL, OTHER_PIXEL, APP, OTHER_APP = 70, 71, 72, 73
USERS = ("ann", "bob", "cat", "dan", "eve")
# The dict-based source resolver: (kind, id as sent) -> the key stored events carry.
SOURCES: dict[tuple[SourceKind, str], int | str] = {
    (SourceKind.PIXEL, "pixel-1"): PIXEL,
    (SourceKind.APP, "app-1"): APP,
    (SourceKind.AD_GROUP, "ag-1"): "ag-1",
    (SourceKind.POST, "v1"): "v1",
    (SourceKind.ACCOUNT, "acct-1"): "acct-1",
}


def resolve_source(kind: SourceKind, raw_id: str) -> int | str | None:
    return SOURCES.get((kind, raw_id))


class RuleWorld(World):
    """The identity test's world, plus events sent as a named user and a rule evaluator."""

    n = 0

    def event(
        self,
        user: str,
        event: str = "CompletePayment",
        *,
        ago: float = DAY,
        channel: str = "web",
        source: int = PIXEL,
        advertiser: int = ADVERTISER,
        **fields: Any,
    ) -> EventRecord:
        self.n += 1
        return EventRecord(
            source_id=source,
            advertiser_id=advertiser,
            channel=channel,
            event=event,
            event_time=T0 - ago,
            received_at=T0,
            event_id=f"e-{self.n}",
            user_ref=user,  # the platform user id: resolves on any channel
            **fields,
        )

    def engagement(self, user: str, event: str, **fields: Any) -> EventRecord:
        return self.event(user, event, channel="engagement", source=0, **fields)

    def members(self, plan: Plan, *, as_of: float = T0, advertiser: int = ADVERTISER) -> set[str]:
        source = self.store.sql_source()
        assert source is not None
        excluded = pa.table({"uid": pa.array(list(self.graph.excluded()), pa.uint32())})
        with self.store.state() as con:
            con.register("excluded_uids", excluded)
            con.execute(f"CREATE OR REPLACE TEMP VIEW usable AS {usable_events_sql(source)}")
            try:
                found = evaluate(con, plan, advertiser_id=advertiser, as_of=as_of, events="usable")
            finally:
                con.execute("DROP VIEW usable")
                con.unregister("excluded_uids")
        names = {self.uid(name): name for name in USERS}
        return {names[uid] for uid in found}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[RuleWorld]:
    w = RuleWorld(tmp_path)
    w.users({name: {"email": f"{name}@example.com"} for name in USERS})
    yield w
    w.log.close()
    w.store.close()


def rule(
    value: str,
    ids: Sequence[str] | None = ("pixel-1",),
    *,
    days: int = 30,
    params: Sequence[dict[str, object]] = (),
) -> dict[str, object]:
    """One TikTok rule, as a ``rule_spec`` carries it."""
    body: dict[str, object] = {
        "retention_days": days,
        "filter_set": {
            "operator": "OR",
            "filters": [
                {"field": "EVENT", "operator": "EQ", "value": value, "parameter_filters": params}
            ],
        },
    }
    if ids is not None:
        body["event_source_ids"] = list(ids)
    return body


def plan(
    audience_type: str,
    *rules: dict[str, object],
    exclude: Sequence[dict[str, object]] = (),
) -> Plan:
    spec: dict[str, object] = {"inclusion_rule_set": {"operator": "OR", "rules": list(rules)}}
    if exclude:
        spec["exclusion_rule_set"] = {"operator": "OR", "rules": list(exclude)}
    return parse_rule_spec(audience_type, spec, resolve_source=resolve_source)


def param(field: str, operator: str, *values: str) -> dict[str, object]:
    return {"field": field, "operator": operator, "values": list(values)}


def with_rule(p: Plan, **changes: Any) -> Plan:
    """The plan with its first inclusion rule changed (Likewise-only extras)."""
    return replace(p, inclusion=(replace(p.inclusion[0], **changes), *p.inclusion[1:]))


# --- windows, sources, advertisers ---------------------------------------------------------------


def test_pixel_purchase_counts_within_its_lookback_only(world: RuleWorld) -> None:
    start = 30 * DAY
    world.send(
        world.event("ann", ago=5 * DAY),
        world.event("bob", "Purchase", ago=40 * DAY),  # both generations of the web event
        world.event("cat", ago=start),  # exactly on the window's open edge: outside
        world.event("dan", ago=start - 1),  # one second inside
        world.event("eve", source=OTHER_PIXEL),  # another of the advertiser's pixels
    )
    p30 = plan("PIXEL", rule("COMPLETE PAYMENT"))
    assert world.members(p30) == {"ann", "dan"}
    assert world.members(plan("PIXEL", rule("PIXEL COMPLETE PAYMENT", days=60))) == {
        "ann",
        "bob",
        "cat",
        "dan",
    }
    # As of 10 days ago, ann's purchase (5 days ago) had not happened yet, and bob's was on
    # the open edge of that window.
    assert world.members(p30, as_of=T0 - 10 * DAY) == {"cat", "dan"}


def test_other_advertisers_limited_and_opted_out_never_count(world: RuleWorld) -> None:
    world.send(
        world.event("ann"),
        world.event("bob", advertiser=8),  # another advertiser's event, even on the same id
        world.event("cat", limited=True),  # limited data use: stored, never used
        world.event("dan"),
    )
    p = plan("PIXEL", rule("COMPLETE PAYMENT"))
    assert world.members(p) == {"ann", "dan"}
    world.graph.set_consent(["dan"], False)
    assert world.members(p) == {"ann"}
    world.graph.set_consent(["dan"], True)
    assert world.members(p) == {"ann", "dan"}


# --- parameter filters ---------------------------------------------------------------------------


def test_url_filters_ignore_case_and_treat_a_missing_url_as_not_containing(
    world: RuleWorld,
) -> None:
    world.send(
        world.event("ann", "Pageview", channel="pixel", url="https://shop.example/Checkout/1"),
        world.event("bob", "PageView", url="https://shop.example/cart"),
        world.event("cat", "PageView"),  # no URL
        world.event("dan", "PageView", url="https://shop.example/100%_it's"),
    )

    def by_url(operator: str, *values: str) -> set[str]:
        return world.members(
            plan("PIXEL", rule("PAGE BROWSE", params=[param("URL", operator, *values)]))
        )

    assert by_url("CONTAINS", "checkout") == {"ann"}
    assert by_url("CONTAINS", "CHECKOUT", "/cart") == {"ann", "bob"}
    assert by_url("DOES_NOT_CONTAIN", "checkout", "cart") == {"cat", "dan"}
    assert by_url("EQ", "https://shop.example/CART") == {"bob"}
    # Quotes are escaped and % and _ are plain characters, not wildcards.
    assert by_url("CONTAINS", "100%_it's") == {"dan"}
    assert by_url("CONTAINS", "0%_i", "x_y") == {"dan"}


def test_value_and_price_compare_numbers(world: RuleWorld) -> None:
    world.send(
        world.event("ann", value=100.0, prices=[5.0, 150.0]),
        world.event("bob", value=20.0, prices=[20.0]),
        world.event("cat"),  # no value, no prices
    )

    def by(field: str, operator: str, *values: str) -> set[str]:
        spec = rule("COMPLETE PAYMENT", params=[param(field, operator, *values)])
        return world.members(plan("PIXEL", spec))

    assert by("VALUE", "IS_GREATER_THAN", "50") == {"ann"}
    assert by("VALUE", "IS_LESS_THAN_OR_EQUAL_TO", "20") == {"bob"}
    assert by("VALUE", "EQ", "20", "100.0") == {"ann", "bob"}
    assert by("VALUE", "NOT_EQUAL", "20") == {"ann", "cat"}  # missing passes a negative
    assert by("PRICE", "IS_GREATER_THAN", "100") == {"ann"}  # any element of the list
    assert by("PRICE", "IS_LESS_THAN", "10") == {"ann"}
    assert by("PRICE", "NOT_EQUAL", "20") == {"ann", "cat"}  # no element equals


def test_content_filters_on_list_fields(world: RuleWorld) -> None:
    world.send(
        world.event("ann", "AddToCart", content_ids=["sku-1", "sku-2"], content_type="product"),
        world.event("bob", "AddToCart", content_ids=["sku-3"], content_categories=["Shoes"]),
        world.event("cat", "AddToCart", content_type="12"),
    )

    def by(field: str, operator: str, *values: str) -> set[str]:
        spec = rule("ADD TO CART", params=[param(field, operator, *values)])
        return world.members(plan("PIXEL", spec))

    assert by("CONTENT_ID", "EQ", "SKU-2") == {"ann"}
    assert by("CONTENT_ID", "EQ", "sku-3", "sku-9") == {"bob"}
    assert by("CONTENT_ID", "NOT_EQUAL", "sku-3") == {"ann", "cat"}
    assert by("CONTENT_ID", "CONTAINS", "sku") == {"ann", "bob"}
    assert by("CONTENT_CATEGORY", "CONTAINS", "shoe") == {"bob"}
    assert by("CONTENT_TYPE", "EQ", "Product") == {"ann"}
    # An ordering operator reads the text as a number; "product" is none and fails.
    assert by("CONTENT_TYPE", "IS_GREATER_THAN", "10") == {"cat"}
    # Several filters are AND-ed.
    two = [param("CONTENT_ID", "CONTAINS", "sku"), param("CONTENT_TYPE", "EQ", "product")]
    assert world.members(plan("PIXEL", rule("ADD TO CART", params=two))) == {"ann"}


# --- rule sets -----------------------------------------------------------------------------------


def test_exclusion_wins(world: RuleWorld) -> None:
    world.send(
        world.event("ann", "AddToCart"),
        world.event("ann", "CompletePayment"),
        world.event("bob", "AddToCart"),
        world.event("cat", "AddToCart"),
        world.event("cat", "CompletePayment", ago=40 * DAY),  # outside the exclusion's window
    )
    p = plan("PIXEL", rule("ADD TO CART", days=60), exclude=[rule("COMPLETE PAYMENT")])
    assert world.members(p) == {"bob", "cat"}


def test_inclusion_rules_are_or_ed_or_all_required(world: RuleWorld) -> None:
    world.send(
        world.event("ann", "AddToCart"),
        world.event("ann", "Pageview", channel="pixel"),
        world.event("bob", "AddToCart"),
        world.event("cat", "PageView"),
    )
    p = plan("PIXEL", rule("ADD TO CART"), rule("PAGE BROWSE"))
    assert p.combine is Combine.ANY
    assert world.members(p) == {"ann", "bob", "cat"}
    assert world.members(replace(p, combine=Combine.ALL)) == {"ann"}


# --- audience types ------------------------------------------------------------------------------


def test_app_install(world: RuleWorld) -> None:
    world.send(
        world.event("ann", "InstallApp", channel="app", source=APP),
        world.event("bob", "InstallApp", channel="app", source=OTHER_APP),
        world.event("cat", "InstallApp", channel="web", source=APP),  # not an app event
    )
    assert world.members(plan("APP", rule("INSTALL", ["app-1"]))) == {"ann"}


def test_day_2_retention(world: RuleWorld) -> None:
    day0 = (T0 // DAY - 10) * DAY  # midnight UTC, ten days back
    window_open = T0 - 30 * DAY

    def app(user: str, event: str, at: float, source: int = APP) -> EventRecord:
        return world.event(user, event, channel="app", source=source, ago=T0 - at)

    world.send(
        # ann: installed late on day 0, launched early on day 1.
        app("ann", "InstallApp", day0 + 23 * 3600),
        app("ann", "LaunchAPP", day0 + DAY + 1800),
        # bob: launched the same day and two days later, never on the day after.
        app("bob", "InstallApp", day0 + 3600),
        app("bob", "LaunchAPP", day0 + 7200),
        app("bob", "LaunchAPP", day0 + 2 * DAY + 60),
        # cat: a launch with no install before it.
        app("cat", "LaunchAPP", day0 + DAY + 60),
        # dan: the install was of another app.
        app("dan", "InstallApp", day0 + 60, source=OTHER_APP),
        app("dan", "LaunchAPP", day0 + DAY + 60),
        # eve: installed the day before the window opened (outside it), launched inside it.
        app("eve", "InstallApp", window_open - 60),
        app("eve", "LaunchAPP", window_open + DAY),
    )
    p = plan("APP", rule("DAY 2 RETENTION", ["app-1"]))
    assert world.members(p) == {"ann"}
    # The launches are the rule's events: two of them for min_count 2.
    world.send(app("ann", "LaunchAPP", day0 + DAY + 7200))
    assert world.members(with_rule(p, min_count=2)) == {"ann"}
    assert world.members(with_rule(p, min_count=3)) == set()


def test_engagement_video_plays_by_depth(world: RuleWorld) -> None:
    world.send(
        world.engagement("ann", "video_play", adgroup_id="ag-1", watched_seconds=7.0,
                         watched_percent=80.0),
        world.engagement("bob", "video_play", adgroup_id="ag-1", watched_seconds=3.0,
                         watched_percent=90.0),
        world.engagement("cat", "video_play", adgroup_id="ag-1", watched_seconds=10.0),
        world.engagement("dan", "video_play", adgroup_id="ag-2", watched_seconds=6.0,
                         watched_percent=75.0),
        world.engagement("eve", "ad_click", adgroup_id="ag-1", watched_seconds=60.0),
        # A play of the advertiser's own post, not an ad: no ENGAGEMENT rule counts it.
        world.engagement("bob", "video_play", content_id="post-1", watched_seconds=30.0),
    )  # fmt: skip
    assert world.members(plan("ENGAGEMENT", rule("PLAY 6S", ["ag-1"]))) == {"ann", "cat"}
    assert world.members(plan("ENGAGEMENT", rule("PLAY 75", ["ag-1"]))) == {"ann", "bob"}
    # No ad groups named: every ad group of the advertiser; the thresholds are inclusive.
    assert world.members(plan("ENGAGEMENT", rule("PLAY 6S", None))) == {"ann", "cat", "dan"}
    assert world.members(plan("ENGAGEMENT", rule("CLICK", None))) == {"eve"}


def test_lead_form_submissions(world: RuleWorld) -> None:
    world.send(
        world.engagement("ann", "lead_form_submit", form_id="f-1"),
        world.engagement("bob", "lead_form_view", form_id="f-1"),
        world.engagement("cat", "lead_form_submit", form_id="f-2"),
        world.engagement("dan", "lead_form_submit", form_id="f-1", advertiser=8),
    )
    p = plan("LEAD_GENERATION", rule("LEAD GENERATION FORM SUBMISSION", None))
    assert world.members(p) == {"ann", "cat"}  # every form of the advertiser
    assert world.members(plan("LEAD_GENERATION", rule("FORM VIEW", None))) == {"bob"}
    # Likewise's own API can name forms.
    by_form = with_rule(p, sources=Sources(SourceKind.LEAD_FORM, "form_id", ("f-2",)))
    assert world.members(by_form) == {"cat"}


def test_business_account_follow_counts_organic_follows(world: RuleWorld) -> None:
    world.send(
        world.engagement("ann", "follow", account_id="acct-1"),
        world.engagement("bob", "follow", account_id="acct-1", advertiser=0),  # organic
        world.engagement("cat", "follow", account_id="acct-2", advertiser=0),  # another account
        world.engagement("dan", "profile_visit", account_id="acct-1", advertiser=0),
        world.engagement("eve", "follow", account_id="acct-1", advertiser=8),  # another's ad
    )
    # A follow takes any window (the other account values only 7, 14 or 30).
    p = plan("BUSINESS_ACCOUNT", rule("BUSINESS ACCOUNT PROFILE FOLLOW", ["acct-1"], days=90))
    assert world.members(p) == {"ann", "bob"}


def test_organic_video_plays(world: RuleWorld) -> None:
    world.send(
        world.engagement("ann", "video_play", content_id="v1", watched_seconds=7.0, advertiser=0),
        world.engagement("bob", "video_play", content_id="v2", watched_seconds=9.0, advertiser=0),
        world.engagement("cat", "video_play", content_id="v1", watched_seconds=1.0, advertiser=0),
        world.engagement("dan", "like", content_id="v1", advertiser=0),
        world.engagement("eve", "like", content_id="v1", advertiser=0, ago=8 * DAY),
    )
    plays = plan("ENGAGEMENT_ORGANIC_VIDEO", rule("ORGANIC VIDEO PLAY 6S", ["v1"], days=7))
    assert world.members(plays) == {"ann"}
    likes = plan("ENGAGEMENT_ORGANIC_VIDEO", rule("ORGANIC VIDEO ENGAGEMENT", ["v1"], days=7))
    assert world.members(likes) == {"dan"}
    # Organic activity counts only on named objects: with none named, nobody's does.
    unnamed = with_rule(plays, sources=replace(plays.inclusion[0].sources, ids=()))
    assert world.members(unnamed) == set()


def test_organic_activity_counts_only_on_the_advertisers_creators(world: RuleWorld) -> None:
    world.send(
        world.engagement("ann", "like", content_id="v1", creator_id="acct-1", advertiser=0),
        world.engagement("bob", "like", content_id="v1", creator_id="acct-9", advertiser=0),
        world.engagement("cat", "like", content_id="v1", advertiser=0),  # creator unknown
        world.engagement("dan", "like", content_id="v1", advertiser=ADVERTISER),  # its own ad
    )
    likes = plan("ENGAGEMENT_ORGANIC_VIDEO", rule("ORGANIC VIDEO ENGAGEMENT", ["v1"], days=7))
    mine = with_rule(likes, sources=replace(likes.inclusion[0].sources, creators=("acct-1",)))
    assert world.members(mine) == {"ann", "dan"}


# --- Likewise's extras ---------------------------------------------------------------------------


def test_min_count(world: RuleWorld) -> None:
    world.send(
        *(world.event("ann", ago=i * DAY + 60) for i in range(3)),
        *(world.event("bob", ago=i * DAY + 60) for i in range(2)),
        world.event("bob", ago=45 * DAY),  # a third, but outside the window
    )
    p = with_rule(plan("PIXEL", rule("COMPLETE PAYMENT")), min_count=3)
    assert world.members(p) == {"ann"}


def test_min_value_sums_the_qualifying_events(world: RuleWorld) -> None:
    world.send(
        world.event("ann", value=30.0),
        world.event("ann", value=30.0, ago=2 * DAY),
        world.event("bob", value=50.0),
        world.event("bob", value=50.0, ago=40 * DAY),  # outside the window
        world.event("cat", value=70.0),
        world.event("cat"),  # no value: adds nothing
        world.event("dan", "AddToCart", value=500.0),  # not the rule's event
    )
    p = with_rule(plan("PIXEL", rule("COMPLETE PAYMENT")), min_value=60.0)
    assert world.members(p) == {"ann", "cat"}
    assert world.members(with_rule(p, min_value=60.0, min_count=2)) == {"ann", "cat"}
    assert world.members(with_rule(p, min_value=61.0, min_count=2)) == {"cat"}


def test_top_share_keeps_the_biggest_spenders(world: RuleWorld) -> None:
    world.send(
        world.event("ann", value=10.0),
        world.event("bob", value=40.0),
        world.event("cat", value=25.0),
        world.event("cat", value=15.0),  # 40 in all: a tie with bob
        world.event("dan", value=5.0),
        world.event("eve", value=1000.0, ago=40 * DAY),  # outside the window: not a match
    )
    p = plan("PIXEL", rule("COMPLETE PAYMENT"))
    assert world.members(with_rule(p, top_share=0.5)) == {"bob", "cat"}  # 2 of 4
    assert world.members(with_rule(p, top_share=0.6)) == {"bob", "cat", "ann"}  # ceil(2.4)
    assert world.members(with_rule(p, top_share=1.0)) == {"ann", "bob", "cat", "dan"}
    # A tie is broken by the lower uid, so the result is reproducible.
    first = min(("bob", "cat"), key=world.uid)
    assert world.members(with_rule(p, top_share=0.25)) == {first}
    # The share applies to people who pass the other thresholds.
    assert world.members(with_rule(p, top_share=0.5, min_count=2)) == {"cat"}


def test_top_count_ignores_floating_point_noise() -> None:
    assert 0.07 * 100 > 7  # the noise
    assert top_count(0.07, 100) == 7
    assert top_count(0.5, 3) == 2
    assert top_count(1.0, 7) == 7
    assert top_count(0.01, 1) == 1
    assert top_count(0.5, 0) == 0


# --- the SQL itself ------------------------------------------------------------------------------


def test_each_rule_is_one_filter_over_the_events(world: RuleWorld) -> None:
    p = plan(
        "PIXEL",
        rule("ADD TO CART"),
        rule("PAGE BROWSE", params=[param("URL", "CONTAINS", "it's")]),
        exclude=[rule("COMPLETE PAYMENT")],
    )
    sql = plan_sql(p, advertiser_id=ADVERTISER, as_of=T0, events="usable")
    assert sql.count("FROM usable WHERE") == 3
    assert "'it''s'" in sql  # quotes are escaped
    # The predicate is never NULL, so a shared scan can select it as a column.
    world.send(world.event("ann", "PageView"), world.event("bob", "AddToCart", url=None))
    predicate = rule_predicate(p.inclusion[1], ADVERTISER, T0)
    source = world.store.sql_source()
    assert source is not None
    with world.store.state() as con:
        con.register("excluded_uids", pa.table({"uid": pa.array([], pa.uint32())}))
        rows = con.execute(
            f"SELECT {predicate} FROM ({usable_events_sql(source)}) AS usable"
        ).fetchall()
        con.unregister("excluded_uids")
    assert sorted(rows) == [(False,), (False,)]


def test_a_rule_built_in_code_is_evaluated_too(world: RuleWorld) -> None:
    world.send(
        world.event("ann", "signup_done", channel="pixel"),
        world.event("bob", "signup_done", channel="app", source=APP),
    )
    custom = Rule(
        sources=Sources(SourceKind.PIXEL, "source_id", (PIXEL, APP)),
        event=EventMatch(
            label="signup_done",
            channels=frozenset({"web", "pixel"}),
            names=frozenset({"signup_done"}),
        ),
        lookback_days=7,
    )
    assert world.members(Plan(AudienceType.PIXEL, inclusion=(custom,))) == {"ann"}
