"""The typed plan of a rule audience: what a ``rule_spec`` means, once parsed.

Both evaluators (batch SQL over the event log, incremental per arriving event) read this plan and
nothing else, so one rule keeps one meaning. The plan is richer than TikTok's wire format (AND
between rules, a minimum count, a value threshold, a top share by value) so that Likewise's own
API can express more; the TikTok parser (:mod:`likewise.domain.rule_spec`) only ever builds
plans with the defaults for those extras, which keeps the wire format's exact meaning.

Pure data: no I/O. Event sources are already resolved to the keys stored events carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from likewise.errors import InvalidParameter

MIN_LOOKBACK_DAYS = 1
MAX_LOOKBACK_DAYS = 180
FIXED_LOOKBACKS = (7, 14, 30)  # the only windows of LIVE, organic video and most account rules
MAX_RULES = 5  # per rule set
MAX_PARAM_FILTERS = 10  # besides at most one URL filter
MAX_URL_FILTERS = 1
MAX_FILTER_VALUES = 10
MAX_FILTER_VALUE_CHARS = 100
MAX_OBJECT_IDS = 10  # TikTok post ids or LIVE ids of one rule
MAX_SOURCE_IDS = 1_000  # any other kind: an advertiser holds at most 1,000 sources of a kind
MAX_EVENT_NAME = 100


class AudienceType(StrEnum):
    ENGAGEMENT = "ENGAGEMENT"
    ENGAGEMENT_ORGANIC_VIDEO = "ENGAGEMENT_ORGANIC_VIDEO"
    ENGAGEMENT_LIVE_VIDEO = "ENGAGEMENT_LIVE_VIDEO"
    APP = "APP"
    PIXEL = "PIXEL"
    LEAD_GENERATION = "LEAD_GENERATION"
    BUSINESS_ACCOUNT = "BUSINESS_ACCOUNT"
    TIKTOK_SHOP = "TIKTOK_SHOP"
    OFFLINE = "OFFLINE"


class SourceKind(StrEnum):
    """What one of a rule's ``event_source_ids`` names. PIXEL, APP, OFFLINE, LEAD_FORM and
    ACCOUNT share their names with ``likewise.engine.sources.SourceKind``; the others are
    objects of the platform (ad groups, posts, LIVE videos, shops) that engagement events name."""

    PIXEL = "PIXEL"
    APP = "APP"
    OFFLINE = "OFFLINE"
    LEAD_FORM = "LEAD_FORM"
    ACCOUNT = "ACCOUNT"
    AD_GROUP = "AD_GROUP"
    POST = "POST"
    LIVE = "LIVE"
    SHOP = "SHOP"


class ParamField(StrEnum):
    URL = "URL"
    CONTENT_TYPE = "CONTENT_TYPE"
    PRICE = "PRICE"
    VALUE = "VALUE"
    CONTENT_ID = "CONTENT_ID"
    CONTENT_CATEGORY = "CONTENT_CATEGORY"


class Operator(StrEnum):
    CONTAINS = "CONTAINS"
    DOES_NOT_CONTAIN = "DOES_NOT_CONTAIN"
    EQ = "EQ"
    NOT_EQUAL = "NOT_EQUAL"
    GT = "IS_GREATER_THAN"
    GTE = "IS_GREATER_THAN_OR_EQUAL_TO"
    LT = "IS_LESS_THAN"
    LTE = "IS_LESS_THAN_OR_EQUAL_TO"


class Combine(StrEnum):
    ANY = "any"  # TikTok: inclusion rules are OR-ed
    ALL = "all"  # Likewise's own API: a member must satisfy every inclusion rule


NEGATIVE_OPERATORS = frozenset({Operator.DOES_NOT_CONTAIN, Operator.NOT_EQUAL})
NUMERIC_OPERATORS = frozenset({Operator.GT, Operator.GTE, Operator.LT, Operator.LTE})
TEXT_OPERATORS = frozenset({Operator.CONTAINS, Operator.DOES_NOT_CONTAIN})
NUMERIC_FIELDS = frozenset({ParamField.PRICE, ParamField.VALUE})
# The EventRecord field each parameter filter reads; list fields match if any element does.
PARAM_RECORD_FIELDS: dict[ParamField, str] = {
    ParamField.URL: "url",
    ParamField.CONTENT_TYPE: "content_type",
    ParamField.PRICE: "prices",
    ParamField.VALUE: "value",
    ParamField.CONTENT_ID: "content_ids",
    ParamField.CONTENT_CATEGORY: "content_categories",
}
# Which operators each field takes. URL: TikTok's own restriction. PRICE and VALUE are numbers:
# "contains" on a number has no meaning users would expect, so it is refused rather than guessed.
FIELD_OPERATORS: dict[ParamField, frozenset[Operator]] = {
    ParamField.URL: frozenset({Operator.CONTAINS, Operator.DOES_NOT_CONTAIN, Operator.EQ}),
    ParamField.PRICE: frozenset(Operator) - TEXT_OPERATORS,
    ParamField.VALUE: frozenset(Operator) - TEXT_OPERATORS,
    ParamField.CONTENT_TYPE: frozenset(Operator),
    ParamField.CONTENT_ID: frozenset(Operator),
    ParamField.CONTENT_CATEGORY: frozenset(Operator),
}


def _check(ok: bool, message: str) -> None:
    # Plans built by a parser are valid already; this guards plans built in code (Likewise's
    # own API, tests), so an evaluator never meets a plan that means nothing.
    if not ok:
        raise InvalidParameter(message)


@dataclass(frozen=True)
class EventMatch:
    """Which stored events one filter value selects: ``channel`` in ``channels`` and ``event``
    in ``names``, plus play-depth thresholds for video plays. ``label`` is the filter value as
    TikTok spells it (or the custom event name), kept for messages and the audience's rule."""

    label: str
    channels: frozenset[str]
    names: frozenset[str]
    min_watched_seconds: float | None = None
    min_watched_percent: float | None = None
    # Day-2 retention: a launch on the day after the install (the install must be in the
    # window too); no stored event says this on its own, so it is a sequence the evaluator
    # checks, not a name.
    retained_on_day: int | None = None
    custom: bool = False  # a custom event name rather than one of TikTok's filter values

    def __post_init__(self) -> None:
        _check(bool(self.channels) and bool(self.names), f"{self.label}: no events to match")


@dataclass(frozen=True)
class Sources:
    """A rule's event sources. ``ids`` are the keys stored events carry in ``match_field``:
    Likewise source ids (``source_id``) or platform object ids (``adgroup_id``, ``content_id``,
    ``live_id``, ``account_id``). Empty ``ids``, or no ``match_field`` (shop events name no
    shop): every source of the kind the advertiser owns, that is, every matching event stored
    under the advertiser. ``organic``: events stored as
    organic activity (advertiser 0) count too when they name one of ``ids`` (plays of the
    advertiser's own posts and LIVE videos are organic, not ads). ``creators``: when given,
    such organic activity counts only when its ``creator_id`` is one of them (a post or LIVE
    id alone does not say whose it is; the advertiser's business accounts do)."""

    kind: SourceKind
    match_field: str | None
    ids: tuple[int | str, ...] = ()
    organic: bool = False
    creators: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParamFilter:
    """One parameter filter, AND-ed with the rule's event. ``values`` are OR-ed; a negative
    operator negates that OR (``DOES_NOT_CONTAIN ["a", "b"]``: contains neither), which is
    what people mean and what TikTok's UI shows. An event without the field fails a positive
    operator and passes a negative one. ``numbers`` holds the values as numbers whenever the
    comparison is numeric (PRICE, VALUE, or an ordering operator); else it is empty."""

    field: ParamField
    operator: Operator
    values: tuple[str, ...]
    numbers: tuple[float, ...] = ()

    @property
    def record_field(self) -> str:
        return PARAM_RECORD_FIELDS[self.field]

    @property
    def numeric(self) -> bool:
        return bool(self.numbers)

    def __post_init__(self) -> None:
        _check(
            self.operator in FIELD_OPERATORS[self.field],
            f"{self.field.value} does not take {self.operator.value}",
        )
        _check(0 < len(self.values) <= MAX_FILTER_VALUES, "1 to 10 values")
        numeric = self.field in NUMERIC_FIELDS or self.operator in NUMERIC_OPERATORS
        _check(numeric == bool(self.numbers), "numbers are given exactly for numeric filters")


@dataclass(frozen=True)
class Rule:
    """People with at least ``min_count`` events from ``sources`` matching ``event`` and every
    filter in ``filters`` within the last ``lookback_days`` days. Beyond TikTok: ``min_value``
    (sum of those events' ``value`` at least this) and ``top_share`` (only the top share of
    such people by summed value, 0 < share <= 1)."""

    sources: Sources
    event: EventMatch
    lookback_days: int
    filters: tuple[ParamFilter, ...] = ()
    min_count: int = 1
    min_value: float | None = None
    top_share: float | None = None

    def __post_init__(self) -> None:
        _check(
            MIN_LOOKBACK_DAYS <= self.lookback_days <= MAX_LOOKBACK_DAYS,
            f"lookback_days must be {MIN_LOOKBACK_DAYS}-{MAX_LOOKBACK_DAYS}",
        )
        _check(self.min_count >= 1, "min_count must be at least 1")
        _check(self.top_share is None or 0 < self.top_share <= 1, "top_share must be in (0, 1]")


@dataclass(frozen=True)
class Plan:
    """Members = people matching the inclusion rules (any of them, or all with
    ``Combine.ALL``) and none of the exclusion rules. Exclusion always wins."""

    audience_type: AudienceType
    inclusion: tuple[Rule, ...]
    exclusion: tuple[Rule, ...] = ()
    combine: Combine = Combine.ANY
    # The longest window of any rule: how far back an evaluator must read.
    horizon_days: int = field(init=False)

    def __post_init__(self) -> None:
        _check(bool(self.inclusion), "a plan needs at least one inclusion rule")
        days = max(r.lookback_days for r in (*self.inclusion, *self.exclusion))
        object.__setattr__(self, "horizon_days", days)


@dataclass(frozen=True)
class RuleAudience:
    """What ``rule/create`` asks for besides the plan: daily re-evaluation over the rolling
    window (``auto_refresh``; false keeps the first result) and a fixed expiry."""

    plan: Plan
    auto_refresh: bool = True
    retention_in_days: int | None = None
