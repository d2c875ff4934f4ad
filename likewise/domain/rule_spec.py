"""TikTok's ``rule_spec`` (``dmp/custom_audience/rule/create/``) parsed into a typed :class:`Plan`.

Every problem is an :class:`InvalidParameter` (40002) whose message and ``field`` name the exact
place, e.g. ``rule_spec.inclusion_rule_set.rules[2].filter_set.filters[0].value``. Input is
read tolerantly where real clients differ (the Go SDK's ``include_rule_set``, numbers sent for
strings, enum case, the spec's own ``value`` for ``values`` and its ``IS_GRETER...`` typo) and
strictly where a guess could change who is in the audience.

With ``extended=True`` the parser reads Likewise's own dialect (``/likewise/v1/audience/rule/
create/``): the same body plus ``operator`` ``AND`` on the inclusion rule set and, per rule,
``min_count``, ``min_value`` and ``top_share``; a rule there may hold no other key (a misspelt
threshold must not vanish silently). Without it (TikTok's endpoint) those keys are ignored like
any other unknown key, so TikTok's wire format keeps its exact meaning.

Source ownership needs the store, so it is a callback: ``resolve_source(kind, raw_id)`` gives
the key stored events carry for that source (an int source id, or a platform object id), or
None when the advertiser has no such source; unknown and other advertisers' sources get the same
answer, so a message never tells one tenant what another owns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from likewise.domain.rule_values import TYPES, TypeSpec, filter_values
from likewise.domain.rules import (
    FIELD_OPERATORS,
    FIXED_LOOKBACKS,
    MAX_EVENT_NAME,
    MAX_FILTER_VALUE_CHARS,
    MAX_FILTER_VALUES,
    MAX_LOOKBACK_DAYS,
    MAX_PARAM_FILTERS,
    MAX_RULES,
    MAX_URL_FILTERS,
    MIN_LOOKBACK_DAYS,
    NUMERIC_FIELDS,
    NUMERIC_OPERATORS,
    AudienceType,
    Combine,
    EventMatch,
    Operator,
    ParamField,
    ParamFilter,
    Plan,
    Rule,
    RuleAudience,
    SourceKind,
    Sources,
)
from likewise.errors import InvalidParameter

MIN_RETENTION_IN_DAYS = 1
MAX_RETENTION_IN_DAYS = 365
MAX_MIN_COUNT = 1_000_000  # Likewise's dialect: "at least n events"
# The keys a rule may hold in Likewise's dialect (TikTok's three plus the thresholds).
EXTENDED_RULE_KEYS = (
    "event_source_ids",
    "retention_days",
    "filter_set",
    "min_count",
    "min_value",
    "top_share",
)
SPEC = "rule_spec"
# Spellings real clients send for the two rule sets: the official spec's, and the Go SDK's.
RULE_SETS = {
    "inclusion_rule_set": ("inclusion_rule_set", "include_rule_set"),
    "exclusion_rule_set": ("exclusion_rule_set", "exclude_rule_set"),
}
# Typos in TikTok's own documentation that clients copy.
OPERATOR_ALIASES = {
    "IS_GRETER_THAN_OR_EQUAL_TO": Operator.GTE,
    "DOES_NOT_CONTAINS": Operator.DOES_NOT_CONTAIN,
}
# TikTok's filter values are upper case with spaces; a value of that shape that is not in the
# type's table is a misspelt TikTok value, never a custom event (which would match no one).
_TIKTOK_SHAPED = re.compile(r"[A-Z0-9 _\-]+")
_SPACES = re.compile(r"\s+")
NOUNS: dict[SourceKind, str] = {
    SourceKind.PIXEL: "pixel",
    SourceKind.APP: "app",
    SourceKind.OFFLINE: "offline event set",
    SourceKind.LEAD_FORM: "lead form",
    SourceKind.ACCOUNT: "business account",
    SourceKind.AD_GROUP: "ad group",
    SourceKind.POST: "TikTok post",
    SourceKind.LIVE: "LIVE video",
    SourceKind.SHOP: "TikTok Shop",
}


# Platform objects that say nothing of their owner but their creator (a business account).
OWNED_BY_ACCOUNTS = frozenset({SourceKind.POST, SourceKind.LIVE})


class SourceResolver(Protocol):
    def __call__(self, kind: SourceKind, raw_id: str, /) -> int | str | None: ...


def parse_rule_audience(
    body: Mapping[str, object],
    *,
    resolve_source: SourceResolver,
    creators: Callable[[], Sequence[str]] | None = None,
    extended: bool = False,
) -> RuleAudience:
    """The rule-related fields of a ``rule/create`` body: ``audience_type``, ``rule_spec``,
    ``is_auto_refresh`` (default true) and ``retention_in_days`` (1-365, optional).
    ``extended``: the ``rule_spec`` is in Likewise's dialect (see the module's docstring)."""
    if "audience_type" not in body:
        raise _bad("audience_type", "is required")
    if "rule_spec" not in body:
        raise _bad("rule_spec", "is required")
    plan = parse_rule_spec(
        body["audience_type"],
        body["rule_spec"],
        resolve_source=resolve_source,
        creators=creators,
        extended=extended,
    )
    refresh = body.get("is_auto_refresh")
    if refresh is None:
        refresh = True
    elif not isinstance(refresh, bool):
        raise _bad("is_auto_refresh", "must be true or false")
    retention = body.get("retention_in_days")
    if retention is not None:
        retention = _int(retention, "retention_in_days")
        if not MIN_RETENTION_IN_DAYS <= retention <= MAX_RETENTION_IN_DAYS:
            raise _bad(
                "retention_in_days",
                f"is {retention}; it must be {MIN_RETENTION_IN_DAYS}-{MAX_RETENTION_IN_DAYS}",
            )
    return RuleAudience(plan=plan, auto_refresh=refresh, retention_in_days=retention)


def parse_rule_spec(
    audience_type: object,
    rule_spec: object,
    *,
    resolve_source: SourceResolver,
    creators: Callable[[], Sequence[str]] | None = None,
    extended: bool = False,
) -> Plan:
    """``rule_spec`` of an ``audience_type`` as a plan, or an error naming the problem.
    ``extended``: Likewise's dialect (AND between inclusion rules, per-rule thresholds).

    ``creators`` gives the advertiser's business accounts (their ``creator_id``): a post or
    LIVE video counts as the advertiser's only when one of them created it. None: no such
    restriction (plans built for tests)."""
    kind = _audience_type(audience_type)
    spec = TYPES[kind]
    body = _object(rule_spec, SPEC)
    parser = _Parser(kind, spec, resolve_source, creators, extended=extended)
    inclusion, combine = parser.rule_set(body, "inclusion_rule_set", required=True)
    exclusion, _ = parser.rule_set(body, "exclusion_rule_set", required=False)
    return Plan(audience_type=kind, inclusion=inclusion, exclusion=exclusion, combine=combine)


# --- small readers -------------------------------------------------------------------------------


def _bad(field: str, problem: str) -> InvalidParameter:
    return InvalidParameter(f"{field} {problem}", field=field)


def _object(value: object, at: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise _bad(at, "must be an object")
    return value


def _list(value: object, at: str) -> Sequence[object]:
    if not isinstance(value, list | tuple):
        raise _bad(at, "must be a list")
    return value


def _text(value: object, at: str) -> str:
    # Ids and values are strings on the wire, but clients send numbers for them too.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _bad(at, "must be a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(at, "must be a finite number")
    return value if isinstance(value, str) else repr(value)


def _int(value: object, at: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)  # v1.3 converts numeric strings (x-open-convert int64)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(at, "must be a whole number")
    return value


def _number_of(value: object, at: str) -> float:
    """A finite number: a JSON number, or a plain decimal string (Likewise's dialect)."""
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _bad(at, f"is {value[:40]!r}; it must be a number") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise _bad(at, "must be a number")
    if not math.isfinite(number):
        raise _bad(at, "must be a finite number")
    return number


def _enum(value: object, at: str, known: Sequence[str]) -> str:
    if value is None:
        raise _bad(at, f"is required: one of {', '.join(known)}")
    name = _text(value, at).strip().upper()
    if name not in known:
        raise _bad(at, f"is {str(value)[:40]!r}; it must be one of {', '.join(known)}")
    return name


def _audience_type(value: object) -> AudienceType:
    return AudienceType(_enum(value, "audience_type", [t.value for t in AudienceType]))


# --- the rule spec -------------------------------------------------------------------------------


class _Parser:
    def __init__(
        self,
        kind: AudienceType,
        spec: TypeSpec,
        resolve: SourceResolver,
        creators: Callable[[], Sequence[str]] | None = None,
        *,
        extended: bool = False,
    ) -> None:
        self.kind = kind
        self.spec = spec
        self.resolve = resolve
        self.creators = creators
        self.extended = extended
        self.resolved: dict[str, int | str] = {}  # one lookup per id across all rules

    def rule_set(
        self, body: Mapping[str, object], name: str, *, required: bool
    ) -> tuple[tuple[Rule, ...], Combine]:
        """The rules of one rule set, and how they combine (TikTok's: always OR)."""
        at = f"{SPEC}.{name}"
        present = [key for key in RULE_SETS[name] if body.get(key) is not None]
        if not present:
            if required:
                raise _bad(at, "is required")
            return (), Combine.ANY
        if len(present) > 1:
            raise _bad(at, f"is given twice (as {' and '.join(present)})")
        rule_set = _object(body[present[0]], at)
        combine = self.combine(rule_set.get("operator"), name, f"{at}.operator")
        rules = _list(rule_set.get("rules"), f"{at}.rules")
        if not 1 <= len(rules) <= MAX_RULES:
            raise _bad(f"{at}.rules", f"holds {len(rules)} rules; it must hold 1 to {MAX_RULES}")
        return tuple(self.rule(rule, f"{at}.rules[{i}]") for i, rule in enumerate(rules)), combine

    def combine(self, operator: object, name: str, at: str) -> Combine:
        if operator is None:
            return Combine.ANY
        if not self.extended:
            _enum(operator, at, ["OR"])  # TikTok only ORs rules; AND is not wire
            return Combine.ANY
        if name == "exclusion_rule_set":
            if _text(operator, at).strip().upper() == "AND":
                raise _bad(at, "is 'AND'; exclusion rules are always OR-ed (matching any excludes)")
            _enum(operator, at, ["OR"])
            return Combine.ANY
        word = _enum(operator, at, ["OR", "AND"])
        return Combine.ALL if word == "AND" else Combine.ANY

    def rule(self, value: object, at: str) -> Rule:
        rule = _object(value, at)
        sources = self.sources(rule.get("event_source_ids"), f"{at}.event_source_ids")
        filter_set = _object(rule.get("filter_set"), f"{at}.filter_set")
        if filter_set.get("operator") is not None:
            _enum(filter_set["operator"], f"{at}.filter_set.operator", ["AND", "OR"])
        filters = _list(filter_set.get("filters"), f"{at}.filter_set.filters")
        if len(filters) != 1:
            raise _bad(
                f"{at}.filter_set.filters", f"holds {len(filters)} filters; it must hold exactly 1"
            )
        fat = f"{at}.filter_set.filters[0]"
        filter_ = _object(filters[0], fat)
        _enum(filter_.get("field"), f"{fat}.field", ["EVENT"])
        _enum(filter_.get("operator"), f"{fat}.operator", ["EQ"])
        event = self.event(filter_.get("value"), f"{fat}.value")
        params = self.param_filters(filter_.get("parameter_filters"), f"{fat}.parameter_filters")
        days = self.lookback(rule.get("retention_days"), event, f"{at}.retention_days")
        extras = self.thresholds(rule, at) if self.extended else {}
        return Rule(sources=sources, event=event, lookback_days=days, filters=params, **extras)

    def thresholds(self, rule: Mapping[str, object], at: str) -> dict[str, Any]:
        """Likewise's dialect: ``min_count`` (whole number, 1 to 1,000,000), ``min_value`` (a
        finite number: the summed ``value`` of the rule's events) and ``top_share`` (a fraction,
        0 < share <= 1: 0.25 keeps the top 25 % by summed value). Null means absent."""
        for key in rule:
            if key not in EXTENDED_RULE_KEYS:
                raise _bad(
                    f"{at}.{str(key)[:40]}",
                    f"is not a field of a rule; a rule holds {', '.join(EXTENDED_RULE_KEYS)}",
                )
        extras: dict[str, Any] = {}
        if rule.get("min_count") is not None:
            count = _int(rule["min_count"], f"{at}.min_count")
            if not 1 <= count <= MAX_MIN_COUNT:
                raise _bad(f"{at}.min_count", f"is {count}; it must be 1-{MAX_MIN_COUNT:,}")
            extras["min_count"] = count
        if rule.get("min_value") is not None:
            extras["min_value"] = _number_of(rule["min_value"], f"{at}.min_value")
        if rule.get("top_share") is not None:
            share = _number_of(rule["top_share"], f"{at}.top_share")
            if not 0 < share <= 1:
                raise _bad(
                    f"{at}.top_share",
                    f"is {share:g}; it must be a fraction above 0 and at most 1 "
                    "(0.25 keeps the top 25 %)",
                )
            extras["top_share"] = share
        return extras

    def sources(self, value: object, at: str) -> Sources:
        spec = self.spec
        raw = [] if value is None else _list(value, at)
        if spec.ids == "forbidden" and raw:
            raise _bad(at, f"must not be given for {self.kind.value} audiences")
        if spec.ids == "required" and not raw:
            raise _bad(at, f"is required for {self.kind.value} audiences")
        if len(raw) > spec.max_ids:
            raise _bad(at, f"holds {len(raw)} ids; at most {spec.max_ids} allowed")
        keys: list[int | str] = []
        for i, item in enumerate(raw):
            raw_id = _text(item, f"{at}[{i}]").strip()
            if not raw_id:
                raise _bad(f"{at}[{i}]", "must not be empty")
            key = self.source(raw_id, f"{at}[{i}]")
            if key not in keys:
                keys.append(key)
        return Sources(
            kind=spec.kind,
            match_field=spec.match_field,
            ids=tuple(keys),
            organic=spec.organic,
            creators=self.owners(at) if spec.kind in OWNED_BY_ACCOUNTS else (),
        )

    def owners(self, at: str) -> tuple[str, ...]:
        if self.creators is None:
            return ()
        codes = tuple(sorted(set(self.creators())))
        if not codes:
            noun = NOUNS[self.spec.kind]
            raise _bad(
                at,
                f"names {noun}s, which are yours only when one of your business accounts "
                "created them; add your business account as an event source first",
            )
        return codes

    def source(self, raw_id: str, at: str) -> int | str:
        key = self.resolved.get(raw_id)
        if key is None:
            key = self.resolve(self.spec.kind, raw_id)
            if key is None:
                noun = NOUNS[self.spec.kind]
                raise _bad(at, f"names {noun} {raw_id[:64]!r}, which is not one of yours")
            self.resolved[raw_id] = key
        return key

    def event(self, value: object, at: str) -> EventMatch:
        if value is None:
            raise _bad(at, "is required")
        text = _text(value, at).strip()
        found = self.spec.values.get(_SPACES.sub(" ", text).upper())
        if found is not None:
            return found
        if self.spec.custom_events and text and not _TIKTOK_SHAPED.fullmatch(text):
            if len(text) > MAX_EVENT_NAME:
                raise _bad(at, f"is longer than {MAX_EVENT_NAME} characters")
            return EventMatch(
                label=text, channels=self.spec.channels, names=frozenset({text}), custom=True
            )
        known = ", ".join(filter_values(self.kind))
        custom = " or a custom event name" if self.spec.custom_events else ""
        raise _bad(
            at,
            f"is {text[:60]!r}, not a filter value of {self.kind.value} audiences; "
            f"use one of {known}{custom}",
        )

    def lookback(self, value: object, event: EventMatch, at: str) -> int:
        if value is None:
            raise _bad(at, "is required")
        days = _int(value, at)
        if not MIN_LOOKBACK_DAYS <= days <= MAX_LOOKBACK_DAYS:
            raise _bad(at, f"is {days}; it must be {MIN_LOOKBACK_DAYS}-{MAX_LOOKBACK_DAYS} days")
        fixed = self.spec.fixed_lookback and event.label not in self.spec.free_lookback_values
        if fixed and days not in FIXED_LOOKBACKS:
            choices = ", ".join(map(str, FIXED_LOOKBACKS))
            raise _bad(
                at, f"is {days}; {self.kind.value} rules on {event.label} take {choices} days"
            )
        return days

    def param_filters(self, value: object, at: str) -> tuple[ParamFilter, ...]:
        raw = [] if value is None else _list(value, at)
        if not raw:
            return ()
        allowed = self.spec.params
        if not allowed:
            raise _bad(
                at,
                f"are not taken by {self.kind.value} audiences (their events carry no parameters)",
            )
        filters = tuple(self.param_filter(item, f"{at}[{i}]") for i, item in enumerate(raw))
        urls = sum(1 for f in filters if f.field is ParamField.URL)
        others = len(filters) - urls
        if urls > MAX_URL_FILTERS:
            raise _bad(at, f"hold {urls} URL filters; at most {MAX_URL_FILTERS} allowed")
        if others > MAX_PARAM_FILTERS:
            raise _bad(
                at,
                f"hold {others} parameter filters; at most {MAX_PARAM_FILTERS} besides a URL one",
            )
        for i, f in enumerate(filters):
            if f.field not in allowed:
                raise _bad(
                    f"{at}[{i}].field",
                    f"is {f.field.value}; {self.kind.value} events carry no URL",
                )
        return filters

    def param_filter(self, value: object, at: str) -> ParamFilter:
        item = _object(value, at)
        field = ParamField(_enum(item.get("field"), f"{at}.field", [f.value for f in ParamField]))
        raw_op = _text(item.get("operator"), f"{at}.operator").strip().upper()
        operator = OPERATOR_ALIASES.get(raw_op) or _operator(raw_op, f"{at}.operator")
        if operator not in FIELD_OPERATORS[field]:
            takes = ", ".join(o.value for o in Operator if o in FIELD_OPERATORS[field])
            raise _bad(f"{at}.operator", f"is {operator.value}; {field.value} takes {takes}")
        values = self.filter_values(item, at)
        numbers: tuple[float, ...] = ()
        if field in NUMERIC_FIELDS or operator in NUMERIC_OPERATORS:
            numbers = tuple(_number(v, f"{at}.values[{i}]") for i, v in enumerate(values))
        return ParamFilter(field=field, operator=operator, values=values, numbers=numbers)

    def filter_values(self, item: Mapping[str, object], at: str) -> tuple[str, ...]:
        if item.get("values") is not None:
            raw = _list(item["values"], f"{at}.values")
        elif item.get("value") is not None:  # the spec's own example writes one "value"
            raw = [item["value"]]
        else:
            raise _bad(f"{at}.values", "is required")
        if not 1 <= len(raw) <= MAX_FILTER_VALUES:
            raise _bad(
                f"{at}.values", f"holds {len(raw)} values; it must hold 1 to {MAX_FILTER_VALUES}"
            )
        values: list[str] = []
        for i, v in enumerate(raw):
            text = _text(v, f"{at}.values[{i}]")
            if not text.strip():
                raise _bad(f"{at}.values[{i}]", "must not be empty")
            if len(text) > MAX_FILTER_VALUE_CHARS:
                raise _bad(
                    f"{at}.values[{i}]",
                    f"is {len(text)} characters; at most {MAX_FILTER_VALUE_CHARS} allowed",
                )
            values.append(text)
        return tuple(values)


def _operator(name: str, at: str) -> Operator:
    try:
        return Operator(name)
    except ValueError:
        known = ", ".join(o.value for o in Operator)
        raise _bad(at, f"is {name[:40]!r}; it must be one of {known}") from None


def _number(text: str, at: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise _bad(at, f"is {text[:40]!r}; this filter compares numbers") from None
    if not math.isfinite(number):
        raise _bad(at, "must be a finite number")
    return number
