"""TikTok's rule_spec parsed into the typed plan: every audience type, every filter value and
parameter filter, the limits, and the errors (each naming the field)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from likewise.domain.rule_spec import parse_rule_audience, parse_rule_spec
from likewise.domain.rule_values import TYPES, filter_values
from likewise.domain.rules import (
    AudienceType,
    Combine,
    EventMatch,
    Operator,
    ParamField,
    ParamFilter,
    Plan,
    Rule,
    SourceKind,
    Sources,
)
from likewise.errors import InvalidParameter

# This advertiser's sources, as the API layer's resolver would answer: Likewise event sources
# resolve to their int ids, platform objects to the id events carry. Anything else is someone
# else's (or nobody's).
OWNED: dict[tuple[SourceKind, str], int | str] = {
    (SourceKind.PIXEL, "CPIXEL00000000000001"): 11,
    (SourceKind.PIXEL, "CPIXEL00000000000002"): 12,
    (SourceKind.APP, "com.example.app"): 21,
    (SourceKind.OFFLINE, "7300000000000000031"): 31,
    (SourceKind.AD_GROUP, "1700000000000001"): "1700000000000001",
    (SourceKind.POST, "v-1"): "v-1",
    (SourceKind.LIVE, "live-1"): "live-1",
    (SourceKind.ACCOUNT, "6900000000000000001"): "acct-1",
    (SourceKind.SHOP, "shop-1"): "shop-1",
}
OTHERS = {(SourceKind.PIXEL, "COTHERADVERTISERPIX1"): 99}  # exists, but not this advertiser's
CALLS: list[tuple[SourceKind, str]] = []


def resolve(kind: SourceKind, raw_id: str) -> int | str | None:
    CALLS.append((kind, raw_id))
    return OWNED.get((kind, raw_id))


SOURCE_OF: dict[AudienceType, list[str] | None] = {
    AudienceType.ENGAGEMENT: ["1700000000000001"],
    AudienceType.ENGAGEMENT_ORGANIC_VIDEO: ["v-1"],
    AudienceType.ENGAGEMENT_LIVE_VIDEO: ["live-1"],
    AudienceType.APP: ["com.example.app"],
    AudienceType.PIXEL: ["CPIXEL00000000000001"],
    AudienceType.LEAD_GENERATION: None,
    AudienceType.BUSINESS_ACCOUNT: ["6900000000000000001"],
    AudienceType.TIKTOK_SHOP: ["shop-1"],
    AudienceType.OFFLINE: ["7300000000000000031"],
}


def rule(
    value: str,
    *,
    ids: list[Any] | None = None,
    days: Any = 30,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    filter_: dict[str, Any] = {"field": "EVENT", "operator": "EQ", "value": value}
    if params is not None:
        filter_["parameter_filters"] = params
    out: dict[str, Any] = {
        "retention_days": days,
        "filter_set": {"operator": "OR", "filters": [filter_]},
    }
    if ids is not None:
        out["event_source_ids"] = ids
    return out


def spec(*rules: dict[str, Any], exclude: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"inclusion_rule_set": {"operator": "OR", "rules": list(rules)}}
    if exclude is not None:
        out["exclusion_rule_set"] = {"operator": "OR", "rules": exclude}
    return out


def parse(audience_type: str, rule_spec: Any) -> Plan:
    return parse_rule_spec(audience_type, rule_spec, resolve_source=resolve)


def bad(audience_type: str, rule_spec: Any) -> InvalidParameter:
    with pytest.raises(InvalidParameter) as caught:
        parse(audience_type, rule_spec)
    assert caught.value.field and caught.value.field in caught.value.message
    return caught.value


def pixel(value: str = "COMPLETE PAYMENT", **kw: Any) -> Plan:
    return parse("PIXEL", spec(rule(value, ids=["CPIXEL00000000000001"], **kw)))


def pixel_bad(value: str = "COMPLETE PAYMENT", **kw: Any) -> InvalidParameter:
    return bad("PIXEL", spec(rule(value, ids=["CPIXEL00000000000001"], **kw)))


# --- every audience type ---------------------------------------------------------------------


def test_pixel_rule_parses_to_the_expected_plan() -> None:
    plan = parse(
        "PIXEL",
        spec(
            rule(
                "PIXEL COMPLETE PAYMENT",
                ids=["CPIXEL00000000000001", "CPIXEL00000000000002"],
                days=30,
                params=[{"field": "URL", "operator": "CONTAINS", "values": ["us"]}],
            )
        ),
    )
    assert plan == Plan(
        audience_type=AudienceType.PIXEL,
        inclusion=(
            Rule(
                sources=Sources(kind=SourceKind.PIXEL, match_field="source_id", ids=(11, 12)),
                event=EventMatch(
                    label="COMPLETE PAYMENT",
                    channels=frozenset({"web", "pixel"}),
                    names=frozenset({"CompletePayment", "Purchase"}),
                ),
                lookback_days=30,
                filters=(ParamFilter(ParamField.URL, Operator.CONTAINS, ("us",)),),
            ),
        ),
    )
    assert plan.combine is Combine.ANY and plan.exclusion == () and plan.horizon_days == 30
    assert plan.inclusion[0].min_count == 1 and plan.inclusion[0].top_share is None


@pytest.mark.parametrize(
    ("audience_type", "value", "kind", "field", "ids", "names", "channel"),
    [
        ("ENGAGEMENT", "CLICK", SourceKind.AD_GROUP, "adgroup_id", ("1700000000000001",),
         {"ad_click"}, "engagement"),
        ("ENGAGEMENT_ORGANIC_VIDEO", "ORGANIC VIDEO ENGAGEMENT", SourceKind.POST, "content_id",
         ("v-1",), {"like", "comment", "share"}, "engagement"),
        ("ENGAGEMENT_LIVE_VIDEO", "LIVE VIDEO VIEW", SourceKind.LIVE, "live_id", ("live-1",),
         {"live_view"}, "engagement"),
        ("APP", "PURCHASE", SourceKind.APP, "source_id", (21,), {"Purchase", "CompletePayment"},
         "app"),
        ("PIXEL", "PAGE BROWSE", SourceKind.PIXEL, "source_id", (11,), {"Pageview", "PageView"},
         "web"),
        ("LEAD_GENERATION", "LEAD GENERATION FORM SUBMISSION", SourceKind.LEAD_FORM, "form_id",
         (), {"lead_form_submit"}, "engagement"),
        ("BUSINESS_ACCOUNT", "BUSINESS ACCOUNT PROFILE FOLLOW", SourceKind.ACCOUNT, "account_id",
         ("acct-1",), {"follow"}, "engagement"),
        ("TIKTOK_SHOP", "TIKTOK SHOP COMPLETE PAYMENT", SourceKind.SHOP, None, ("shop-1",),
         {"shop_purchase"}, "engagement"),
        ("OFFLINE", "OFFLINE COMPLETE PAYMENT", SourceKind.OFFLINE, "source_id", (31,),
         {"CompletePayment", "Purchase"}, "offline"),
    ],
)  # fmt: skip
def test_every_audience_type_parses(
    audience_type: str,
    value: str,
    kind: SourceKind,
    field: str | None,
    ids: tuple[int | str, ...],
    names: set[str],
    channel: str,
) -> None:
    plan = parse(audience_type, spec(rule(value, ids=SOURCE_OF[AudienceType(audience_type)])))
    (only,) = plan.inclusion
    assert plan.audience_type is AudienceType(audience_type)
    assert only.sources.kind is kind and only.sources.match_field == field
    assert only.sources.ids == ids
    assert only.event.names == names and channel in only.event.channels
    assert only.lookback_days == 30


@pytest.mark.parametrize("audience_type", list(AudienceType))
def test_every_filter_value_of_every_type_parses(audience_type: AudienceType) -> None:
    values = filter_values(audience_type)
    assert values
    for value in values:
        plan = parse(audience_type.value, spec(rule(value, ids=SOURCE_OF[audience_type])))
        event = plan.inclusion[0].event
        assert event.names and not event.custom
        assert event.channels <= {"web", "pixel", "app", "offline", "crm", "engagement"}


def test_organic_types_count_organic_activity_on_the_named_objects() -> None:
    for audience_type in ("ENGAGEMENT_ORGANIC_VIDEO", "ENGAGEMENT_LIVE_VIDEO", "BUSINESS_ACCOUNT"):
        ids = SOURCE_OF[AudienceType(audience_type)]
        value = filter_values(AudienceType(audience_type))[0]
        assert parse(audience_type, spec(rule(value, ids=ids))).inclusion[0].sources.organic
    assert not pixel().inclusion[0].sources.organic


def test_play_depth_values() -> None:
    ids = SOURCE_OF[AudienceType.ENGAGEMENT]
    six = parse("ENGAGEMENT", spec(rule("PLAY 6S", ids=ids))).inclusion[0].event
    assert six.names == {"video_play"} and six.min_watched_seconds == 6
    assert six.min_watched_percent is None
    over = parse("ENGAGEMENT", spec(rule("PLAY OVER", ids=ids))).inclusion[0].event
    assert over.min_watched_percent == 100 and over.min_watched_seconds is None
    half = parse("ENGAGEMENT", spec(rule("PLAY 50", ids=ids))).inclusion[0].event
    assert half.min_watched_percent == 50
    acct = SOURCE_OF[AudienceType.BUSINESS_ACCOUNT]
    two = parse("BUSINESS_ACCOUNT", spec(rule("BUSINESS ACCOUNT PLAY 2S", ids=acct)))
    assert two.inclusion[0].event.min_watched_seconds == 2


def test_day_2_retention_is_a_launch_on_the_day_after_install() -> None:
    plan = parse("APP", spec(rule("DAY 2 RETENTION", ids=["com.example.app"])))
    event = plan.inclusion[0].event
    assert event.names == {"LaunchAPP"} and event.retained_on_day == 1


def test_engagement_without_ad_groups_means_all_of_the_advertisers() -> None:
    plan = parse("ENGAGEMENT", spec(rule("IMPRESSION")))
    assert plan.inclusion[0].sources.ids == ()
    assert parse("ENGAGEMENT", spec(rule("IMPRESSION", ids=[]))).inclusion[0].sources.ids == ()


# --- spellings and custom events -------------------------------------------------------------


@pytest.mark.parametrize(
    ("bare", "prefixed"),
    [
        ("COMPLETE PAYMENT", "PIXEL COMPLETE PAYMENT"),
        ("ADD TO CART", "PIXEL ADD TO CART"),
        ("SUBMIT FORM", "PIXEL SUBMIT FORM"),
        ("PAGE BROWSE", "PIXEL PAGE BROWSE"),
    ],
)
def test_both_pixel_spellings_mean_the_same(bare: str, prefixed: str) -> None:
    assert pixel(bare) == pixel(prefixed)


def test_filter_values_are_matched_tolerantly_on_case_and_spacing() -> None:
    assert pixel("complete  payment") == pixel("COMPLETE PAYMENT")
    assert pixel(" Pixel Add To Cart ") == pixel("PIXEL ADD TO CART")


@pytest.mark.parametrize("audience_type", ["PIXEL", "APP"])
def test_custom_event_names(audience_type: str) -> None:
    ids = SOURCE_OF[AudienceType(audience_type)]
    event = parse(audience_type, spec(rule("signup_done", ids=ids))).inclusion[0].event
    assert event.custom and event.names == {"signup_done"} and event.label == "signup_done"
    assert event.channels == TYPES[AudienceType(audience_type)].channels
    # A standard name as stored works as a custom name: it selects exactly that name.
    event = parse(audience_type, spec(rule("Lead", ids=ids))).inclusion[0].event
    assert event.names == {"Lead"}


def test_custom_event_names_are_refused_where_the_type_has_none() -> None:
    ids = SOURCE_OF[AudienceType.OFFLINE]
    error = bad("OFFLINE", spec(rule("signup_done", ids=ids)))
    assert "OFFLINE COMPLETE PAYMENT" in error.message
    assert error.field == "rule_spec.inclusion_rule_set.rules[0].filter_set.filters[0].value"


def test_a_custom_name_longer_than_100_characters_is_refused() -> None:
    error = pixel_bad("e" * 101)
    assert "100" in error.message


# --- parameter filters -----------------------------------------------------------------------

TEXT_FIELDS = ["CONTENT_TYPE", "CONTENT_ID", "CONTENT_CATEGORY"]
NUMERIC = [o.value for o in (Operator.GT, Operator.GTE, Operator.LT, Operator.LTE)]


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("operator", [o.value for o in Operator])
def test_text_fields_take_every_operator(field: str, operator: str) -> None:
    values = ["10", "20"] if operator in NUMERIC else ["shoes", "hats"]
    plan = pixel(params=[{"field": field, "operator": operator, "values": values}])
    (f,) = plan.inclusion[0].filters
    assert f.field is ParamField(field) and f.operator is Operator(operator)
    assert f.values == tuple(values)
    assert f.numeric == (operator in NUMERIC)
    if operator in NUMERIC:
        assert f.numbers == (10.0, 20.0)


@pytest.mark.parametrize("field", ["PRICE", "VALUE"])
@pytest.mark.parametrize("operator", ["EQ", "NOT_EQUAL", *NUMERIC])
def test_numeric_fields_take_comparisons(field: str, operator: str) -> None:
    plan = pixel(params=[{"field": field, "operator": operator, "values": ["9.99", 20]}])
    (f,) = plan.inclusion[0].filters
    assert f.numbers == (9.99, 20.0) and f.values == ("9.99", "20")
    assert f.record_field == {"PRICE": "prices", "VALUE": "value"}[field]


@pytest.mark.parametrize("field", ["PRICE", "VALUE"])
@pytest.mark.parametrize("operator", ["CONTAINS", "DOES_NOT_CONTAIN"])
def test_numeric_fields_refuse_text_operators(field: str, operator: str) -> None:
    error = pixel_bad(params=[{"field": field, "operator": operator, "values": ["9"]}])
    assert error.field.endswith("parameter_filters[0].operator")
    assert field in error.message


def test_numeric_comparison_needs_numbers() -> None:
    error = pixel_bad(params=[{"field": "VALUE", "operator": "IS_LESS_THAN", "values": ["ten"]}])
    assert error.field.endswith("parameter_filters[0].values[0]")
    assert "numbers" in error.message


@pytest.mark.parametrize("operator", ["CONTAINS", "DOES_NOT_CONTAIN", "EQ"])
def test_url_takes_its_three_operators(operator: str) -> None:
    plan = pixel(params=[{"field": "URL", "operator": operator, "values": ["/checkout"]}])
    assert plan.inclusion[0].filters[0].operator is Operator(operator)


@pytest.mark.parametrize("operator", ["NOT_EQUAL", *NUMERIC])
def test_url_with_a_numeric_operator_is_refused(operator: str) -> None:
    error = pixel_bad(params=[{"field": "URL", "operator": operator, "values": ["5"]}])
    assert error.field == (
        "rule_spec.inclusion_rule_set.rules[0].filter_set.filters[0].parameter_filters[0].operator"
    )
    assert "URL" in error.message and operator in error.message


def test_documented_operator_typos_and_the_single_value_form_are_accepted() -> None:
    plan = pixel(
        params=[
            {"field": "PRICE", "operator": "IS_GRETER_THAN_OR_EQUAL_TO", "values": ["5"]},
            {"field": "CONTENT_TYPE", "operator": "DOES_NOT_CONTAINS", "values": ["gift"]},
            {"field": "URL", "operator": "CONTAINS", "value": "us"},  # the spec's example
        ]
    )
    ops = [f.operator for f in plan.inclusion[0].filters]
    assert ops == [Operator.GTE, Operator.DOES_NOT_CONTAIN, Operator.CONTAINS]
    assert plan.inclusion[0].filters[2].values == ("us",)


def test_unknown_parameter_field_and_operator() -> None:
    error = pixel_bad(params=[{"field": "COLOUR", "operator": "EQ", "values": ["red"]}])
    assert error.field.endswith("parameter_filters[0].field") and "CONTENT_TYPE" in error.message
    error = pixel_bad(params=[{"field": "URL", "operator": "LIKE", "values": ["x"]}])
    assert error.field.endswith("parameter_filters[0].operator")


def test_app_and_offline_take_parameters_but_no_url() -> None:
    params = [{"field": "VALUE", "operator": "IS_GREATER_THAN", "values": ["100"]}]
    for audience_type, value in (("APP", "PURCHASE"), ("OFFLINE", "OFFLINE COMPLETE PAYMENT")):
        ids = SOURCE_OF[AudienceType(audience_type)]
        plan = parse(audience_type, spec(rule(value, ids=ids, params=params)))
        assert plan.inclusion[0].filters[0].numbers == (100.0,)
        url = [{"field": "URL", "operator": "CONTAINS", "values": ["x"]}]
        error = bad(audience_type, spec(rule(value, ids=ids, params=url)))
        assert error.field.endswith("parameter_filters[0].field") and "URL" in error.message


def test_engagement_types_take_no_parameter_filters() -> None:
    params = [{"field": "VALUE", "operator": "EQ", "values": ["1"]}]
    error = bad("ENGAGEMENT", spec(rule("CLICK", params=params)))
    assert error.field.endswith("filters[0].parameter_filters")


# --- limits ----------------------------------------------------------------------------------


def _params(n: int, field: str = "CONTENT_TYPE") -> list[dict[str, Any]]:
    return [{"field": field, "operator": "EQ", "values": [f"t{i}"]} for i in range(n)]


def test_ten_parameter_filters_and_one_url_filter_are_the_most() -> None:
    url = [{"field": "URL", "operator": "CONTAINS", "values": ["x"]}]
    assert len(pixel(params=_params(10) + url).inclusion[0].filters) == 11
    error = pixel_bad(params=_params(11))
    assert "11 parameter filters" in error.message and error.field.endswith("parameter_filters")
    error = pixel_bad(params=url + url)
    assert "2 URL filters" in error.message


def test_ten_values_of_100_characters_are_the_most() -> None:
    ok = {"field": "CONTENT_ID", "operator": "EQ", "values": ["x" * 100] * 10}
    assert len(pixel(params=[ok]).inclusion[0].filters[0].values) == 10
    error = pixel_bad(params=[{**ok, "values": ["x"] * 11}])
    assert "11 values" in error.message and error.field.endswith("parameter_filters[0].values")
    error = pixel_bad(params=[{**ok, "values": ["x", "y" * 101]}])
    assert "101 characters" in error.message
    assert error.field.endswith("parameter_filters[0].values[1]")
    error = pixel_bad(params=[{**ok, "values": []}])
    assert "0 values" in error.message
    error = pixel_bad(params=[{**ok, "values": [" "]}])
    assert "empty" in error.message


def test_one_to_five_rules() -> None:
    ids = ["CPIXEL00000000000001"]
    assert len(parse("PIXEL", spec(*[rule("CONTACT", ids=ids)] * 5)).inclusion) == 5
    error = bad("PIXEL", spec(*[rule("CONTACT", ids=ids)] * 6))
    assert error.field == "rule_spec.inclusion_rule_set.rules" and "6 rules" in error.message
    error = bad("PIXEL", spec())
    assert "0 rules" in error.message
    error = bad("PIXEL", spec(rule("CONTACT", ids=ids), exclude=[rule("CONTACT", ids=ids)] * 6))
    assert error.field == "rule_spec.exclusion_rule_set.rules"


def test_exactly_one_event_filter_per_rule() -> None:
    two = rule("CONTACT", ids=["CPIXEL00000000000001"])
    two["filter_set"]["filters"] *= 2
    error = bad("PIXEL", spec(two))
    assert error.field == "rule_spec.inclusion_rule_set.rules[0].filter_set.filters"


def test_post_and_live_ids_are_at_most_ten() -> None:
    error = bad("ENGAGEMENT_LIVE_VIDEO", spec(rule("LIVE VIDEO VIEW", ids=["live-1"] * 11)))
    assert "at most 10" in error.message and error.field.endswith("event_source_ids")


# --- lookback --------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [1, 7, 90, 180, "30"])
def test_lookback_within_1_to_180(days: Any) -> None:
    assert pixel(days=days).inclusion[0].lookback_days == int(days)


@pytest.mark.parametrize("days", [0, -1, 181, 400])
def test_lookback_out_of_range(days: int) -> None:
    error = pixel_bad(days=days)
    assert error.field == "rule_spec.inclusion_rule_set.rules[0].retention_days"
    assert f"is {days}" in error.message and "1-180" in error.message


@pytest.mark.parametrize("days", [None, "soon", True, 7.5])
def test_lookback_must_be_a_whole_number(days: Any) -> None:
    assert pixel_bad(days=days).field.endswith("rules[0].retention_days")


@pytest.mark.parametrize(
    ("audience_type", "value"),
    [
        ("ENGAGEMENT_LIVE_VIDEO", "LIVE VIDEO ENGAGEMENT"),
        ("ENGAGEMENT_ORGANIC_VIDEO", "ORGANIC VIDEO PLAY 6S"),
        ("BUSINESS_ACCOUNT", "BUSINESS ACCOUNT PROFILE VISIT"),
    ],
)
def test_seven_fourteen_or_thirty_days(audience_type: str, value: str) -> None:
    ids = SOURCE_OF[AudienceType(audience_type)]
    for days in (7, 14, 30):
        assert parse(audience_type, spec(rule(value, ids=ids, days=days))).horizon_days == days
    error = bad(audience_type, spec(rule(value, ids=ids, days=60)))
    assert "7, 14, 30" in error.message and error.field.endswith("retention_days")


def test_account_follows_take_any_lookback() -> None:
    ids = SOURCE_OF[AudienceType.BUSINESS_ACCOUNT]
    plan = parse(
        "BUSINESS_ACCOUNT", spec(rule("BUSINESS ACCOUNT PROFILE FOLLOW", ids=ids, days=90))
    )
    assert plan.inclusion[0].lookback_days == 90


# --- sources ---------------------------------------------------------------------------------


def test_another_advertisers_pixel_is_refused_like_an_unknown_one() -> None:
    theirs = bad("PIXEL", spec(rule("CONTACT", ids=["COTHERADVERTISERPIX1"])))
    nobody = bad("PIXEL", spec(rule("CONTACT", ids=["CNOSUCHPIXEL00000000"])))
    assert theirs.field == "rule_spec.inclusion_rule_set.rules[0].event_source_ids[0]"
    assert "pixel 'COTHERADVERTISERPIX1'" in theirs.message and "not one of yours" in theirs.message
    assert theirs.message.replace("COTHERADVERTISERPIX1", "X") == nobody.message.replace(
        "CNOSUCHPIXEL00000000", "X"
    )


def test_source_ids_are_resolved_per_kind_once_and_deduplicated() -> None:
    CALLS.clear()
    ids = ["CPIXEL00000000000001", "CPIXEL00000000000001", 7300000000000000031]
    error = bad("PIXEL", spec(rule("CONTACT", ids=ids)))
    assert error.field.endswith("event_source_ids[2]")  # an offline set is not a pixel
    CALLS.clear()
    plan = parse(
        "PIXEL",
        spec(
            rule("CONTACT", ids=["CPIXEL00000000000001", "CPIXEL00000000000001"]),
            exclude=[rule("CONTACT", ids=["CPIXEL00000000000001"])],
        ),
    )
    assert plan.inclusion[0].sources.ids == (11,)
    assert CALLS == [(SourceKind.PIXEL, "CPIXEL00000000000001")]
    plan = parse("OFFLINE", spec(rule("OFFLINE CONTACT", ids=[7300000000000000031])))
    assert plan.inclusion[0].sources.ids == (31,)  # numbers are accepted for id strings


def test_source_ids_required_or_forbidden_by_type() -> None:
    error = bad("PIXEL", spec(rule("CONTACT")))
    assert "required" in error.message and error.field.endswith("rules[0].event_source_ids")
    error = bad("LEAD_GENERATION", spec(rule("FORM VIEW", ids=["form-1"])))
    assert "must not be given" in error.message
    plan = parse("LEAD_GENERATION", spec(rule("FORM VIEW", ids=[])))
    assert plan.inclusion[0].sources.ids == ()


# --- bad values, types and shapes ------------------------------------------------------------


def test_unknown_filter_value_lists_the_known_ones() -> None:
    error = pixel_bad("COMPLETE PAYMNT")
    assert error.field == "rule_spec.inclusion_rule_set.rules[0].filter_set.filters[0].value"
    assert "'COMPLETE PAYMNT'" in error.message and "PIXEL ADD TO CART" in error.message
    # A value of another type is unknown here.
    assert "CLICK" in pixel_bad("CLICK").message
    assert "VIDEO_WATCHED_6S" in bad("ENGAGEMENT", spec(rule("VIDEO_WATCHED_6S"))).message


def test_unknown_audience_type() -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse("CUSTOMER_FILE", spec(rule("CLICK")))
    assert caught.value.field == "audience_type" and "PIXEL" in caught.value.message
    assert parse("pixel", spec(rule("CONTACT", ids=["CPIXEL00000000000001"]))).audience_type


@pytest.mark.parametrize(
    ("rule_spec", "field"),
    [
        (None, "rule_spec"),
        ([], "rule_spec"),
        ({}, "rule_spec.inclusion_rule_set"),
        ({"inclusion_rule_set": {"operator": "AND", "rules": []}},
         "rule_spec.inclusion_rule_set.operator"),
        ({"inclusion_rule_set": {"rules": "x"}}, "rule_spec.inclusion_rule_set.rules"),
        ({"inclusion_rule_set": {"rules": [5]}}, "rule_spec.inclusion_rule_set.rules[0]"),
        ({"inclusion_rule_set": {"rules": [{"retention_days": 7}]}},
         "rule_spec.inclusion_rule_set.rules[0].filter_set"),
    ],
)  # fmt: skip
def test_malformed_specs_name_the_field(rule_spec: Any, field: str) -> None:
    assert bad("ENGAGEMENT", rule_spec).field == field


def test_the_event_filter_is_field_event_operator_eq() -> None:
    r = rule("CONTACT", ids=["CPIXEL00000000000001"])
    r["filter_set"]["filters"][0]["field"] = "URL"
    assert bad("PIXEL", spec(r)).field.endswith("filters[0].field")
    r = rule("CONTACT", ids=["CPIXEL00000000000001"])
    r["filter_set"]["filters"][0]["operator"] = "CONTAINS"
    assert bad("PIXEL", spec(r)).field.endswith("filters[0].operator")


# --- exclusion and rule sets -----------------------------------------------------------------


def test_exclusion_rules() -> None:
    ids = ["CPIXEL00000000000001"]
    plan = parse(
        "PIXEL",
        spec(
            rule("INITIATE CHECKOUT", ids=ids, days=14),
            rule("PIXEL ADD TO CART", ids=ids, days=7),
            exclude=[rule("COMPLETE PAYMENT", ids=ids, days=60)],
        ),
    )
    assert [r.event.names for r in plan.inclusion] == [{"InitiateCheckout"}, {"AddToCart"}]
    assert [r.lookback_days for r in plan.exclusion] == [60]
    assert plan.exclusion[0].event.names == {"CompletePayment", "Purchase"}
    assert plan.horizon_days == 60


def test_go_sdk_rule_set_names_are_accepted() -> None:
    r = rule("CONTACT", ids=["CPIXEL00000000000001"])
    official = parse("PIXEL", spec(r, exclude=[r]))
    go = parse(
        "PIXEL",
        {"include_rule_set": {"operator": "OR", "rules": [r]},
         "exclude_rule_set": {"operator": "OR", "rules": [r]}},
    )  # fmt: skip
    assert go == official
    error = bad("PIXEL", {"inclusion_rule_set": {"rules": [r]}, "include_rule_set": {"rules": [r]}})
    assert "twice" in error.message


def test_richer_plans_fit_the_same_types() -> None:
    r = pixel().inclusion[0]
    rich = Rule(r.sources, r.event, 30, min_count=3, min_value=100.0, top_share=0.1)
    plan = Plan(AudienceType.PIXEL, (r, rich), combine=Combine.ALL)
    assert plan.combine is Combine.ALL and plan.inclusion[1].min_count == 3
    with pytest.raises(InvalidParameter):
        Rule(r.sources, r.event, 0)
    with pytest.raises(InvalidParameter):
        Rule(r.sources, r.event, 30, top_share=1.5)
    with pytest.raises(InvalidParameter):
        Plan(AudienceType.PIXEL, ())


# --- the other rule/create fields ------------------------------------------------------------


def _body(**extra: Any) -> dict[str, Any]:
    r = rule("CONTACT", ids=["CPIXEL00000000000001"])
    return {"audience_type": "PIXEL", "rule_spec": spec(r), **extra}


def test_auto_refresh_and_retention_in_days() -> None:
    default = parse_rule_audience(_body(), resolve_source=resolve)
    assert default.auto_refresh is True and default.retention_in_days is None
    static = parse_rule_audience(
        _body(is_auto_refresh=False, retention_in_days="90"), resolve_source=resolve
    )
    assert static.auto_refresh is False and static.retention_in_days == 90
    assert static.plan == default.plan
    for value, field in (
        ("yes", "is_auto_refresh"),
        (0, "retention_in_days"),
        (366, "retention_in_days"),
        ("x", "retention_in_days"),
    ):
        with pytest.raises(InvalidParameter) as caught:
            parse_rule_audience(_body(**{field: value}), resolve_source=resolve)
        assert caught.value.field == field
    with pytest.raises(InvalidParameter) as caught:
        parse_rule_audience({"audience_type": "PIXEL"}, resolve_source=resolve)
    assert caught.value.field == "rule_spec"


# --- robustness ------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers(-500, 500) | st.floats() | st.text(max_size=12)
_words = st.sampled_from(
    ["EVENT", "EQ", "OR", "AND", "URL", "PRICE", "CONTAINS", "IS_LESS_THAN", "CLICK",
     "COMPLETE PAYMENT", "CPIXEL00000000000001", "v-1", "30", "7"]
)  # fmt: skip
_keys = st.sampled_from(
    ["inclusion_rule_set", "exclusion_rule_set", "operator", "rules", "event_source_ids",
     "retention_days", "filter_set", "filters", "field", "value", "values",
     "parameter_filters"]
)  # fmt: skip
_junk = st.recursive(
    _scalars | _words,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(audience_type=st.sampled_from([*AudienceType, "NOPE"]), rule_spec=_junk)
def test_junk_specs_raise_nothing_but_invalid_parameter(audience_type: str, rule_spec: Any) -> None:
    try:
        plan = parse_rule_spec(audience_type, rule_spec, resolve_source=resolve)
    except InvalidParameter as exc:
        assert exc.field and exc.message.startswith(exc.field)
    else:
        assert plan.inclusion


@settings(max_examples=200, deadline=None)
@given(
    audience_type=st.sampled_from(list(AudienceType)),
    data=st.data(),
)
def test_any_valid_rule_parses_to_its_table_entry(
    audience_type: AudienceType, data: st.DataObject
) -> None:
    spec_ = TYPES[audience_type]
    value = data.draw(st.sampled_from(filter_values(audience_type)))
    days = data.draw(st.sampled_from([7, 14, 30]))
    plan = parse(audience_type.value, spec(rule(value, ids=SOURCE_OF[audience_type], days=days)))
    assert plan.inclusion[0].event is spec_.values[value]
    assert plan.inclusion[0].lookback_days == days


def test_docs_list_every_filter_value() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()
    for spec_ in TYPES.values():
        for match in spec_.values.values():
            assert f"`{match.label}`" in text, match.label
            for name in match.names:
                assert f"`{name}`" in text, name


def test_posts_and_live_videos_are_the_advertisers_through_its_business_accounts() -> None:
    rule_spec = spec(rule("ORGANIC VIDEO ENGAGEMENT", ids=["v-1"], days=7))
    plan_ = parse_rule_spec(
        "ENGAGEMENT_ORGANIC_VIDEO", rule_spec, resolve_source=resolve, creators=lambda: ["a2", "a1"]
    )
    assert plan_.inclusion[0].sources.creators == ("a1", "a2")
    with pytest.raises(InvalidParameter) as caught:
        parse_rule_spec(
            "ENGAGEMENT_LIVE_VIDEO",
            spec(rule("LIVE VIDEO VIEW", ids=["live-1"], days=7)),
            resolve_source=resolve,
            creators=lambda: [],
        )
    assert "business account" in caught.value.message
    assert caught.value.field == "rule_spec.inclusion_rule_set.rules[0].event_source_ids"
    # Other kinds never ask.
    pixel = parse_rule_spec(
        "PIXEL",
        spec(rule("PAGE BROWSE", ids=["CPIXEL00000000000001"])),
        resolve_source=resolve,
        creators=lambda: [],
    )
    assert pixel.inclusion[0].sources.creators == ()
