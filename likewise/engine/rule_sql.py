"""The batch evaluator of a rule plan: the plan compiled to SQL over the event log.

Used when a rule audience is created and for backfills (DuckDB over the Parquet parts today; the
SQL is written so that another engine, Spark SQL or Trino, can run it later). The incremental
evaluator (:mod:`likewise.engine.rule_live`) implements the same meaning per arriving event; both
read only the typed :class:`~likewise.domain.rules.Plan`.

Shape of the query (one CTE per rule, each a filter over the one ``events`` relation, so a later
multi-audience compiler can scan the events once and evaluate every rule's
:func:`rule_predicate` as a column of that scan)::

    WITH
      inc_0_events AS (SELECT uid, value FROM events WHERE <rule_predicate>),
      inc_0 AS (SELECT uid FROM inc_0_events GROUP BY uid HAVING count(*) >= n ...),
      exc_0_events AS (...), exc_0 AS (...),
      included AS (SELECT uid FROM inc_0 UNION SELECT uid FROM inc_1),   -- INTERSECT: ALL
      excluded AS (SELECT uid FROM exc_0 UNION ...)
    SELECT uid FROM included EXCEPT SELECT uid FROM excluded

Semantics decided here (and documented in ``docs/rules.md``), which the incremental evaluator
must share:

- Text comparisons (``CONTAINS``, ``DOES_NOT_CONTAIN``, ``EQ``, ``NOT_EQUAL`` on URL, content
  type, ids and categories) ignore case: people write ``/Checkout`` and mean ``/checkout``, and a
  content id differing only in case is the same product to them. ``CONTAINS`` is a plain
  substring test (no wildcards: ``%`` and ``_`` are literal characters).
- Numeric comparisons read ``ParamFilter.numbers``; a text field compared by an ordering operator
  (``CONTENT_TYPE IS_GREATER_THAN 3``) is read as a number, and a value that is not a number
  fails the comparison (and so passes its negation, like a missing field).
- ``min_value``: a qualifying event without ``value`` adds 0 to the sum.
- ``top_share``: of the n people matching the rule, the ``top_count(share, n)`` with the largest
  summed value are kept; ties go to the lower ``uid`` so a result is reproducible.
- Day-2 retention (``EventMatch.retained_on_day``): a qualifying launch on UTC day d + k after a
  qualifying install on UTC day d (day = floor(event_time / 86400)). "Qualifying" is the same
  rule predicate for both (sources, channels, parameter filters, window), with the install's
  event names (:data:`INSTALL_EVENTS`) in place of the launch's. The launches are the rule's
  events: ``min_count`` counts them, ``min_value`` sums their values.
- Organic activity (advertiser 0) counts only when it names one of ``Sources.ids``: a rule
  with no ids has no objects whose organic activity could be the advertiser's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import duckdb
import numpy as np
from pyroaring import BitMap

from likewise.domain.rule_values import TYPES
from likewise.domain.rules import (
    NEGATIVE_OPERATORS,
    AudienceType,
    Combine,
    Operator,
    ParamFilter,
    Plan,
    Rule,
)
from likewise.errors import InvalidParameter

DAY_SECONDS = 86_400
# What a day-2 retention rule's install is: the INSTALL filter value's events, one table.
INSTALL_EVENTS: frozenset[str] = TYPES[AudienceType.APP].values["INSTALL"].names
# Columns of the stored events whose values are lists (a filter matches if any element does).
LIST_FIELDS = frozenset({"prices", "content_ids", "content_categories"})
# Columns holding numbers; every other parameter field is text.
NUMBER_FIELDS = frozenset({"prices", "value"})
# Source keys that are numbers in the store; every other match field holds text ids.
INT_ID_FIELDS = frozenset({"source_id"})
# Slack for ceil(share × n): 0.07 × 100 is 7.000000000000001 in floating point, and "the top
# 7% of 100 people" means 7 of them, not 8.
TOP_SHARE_EPSILON = 1e-9
_ELEMENT = "x"  # the lambda variable of list filters; no event column has this name
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

_COMPARISONS: dict[Operator, str] = {
    Operator.GT: ">",
    Operator.GTE: ">=",
    Operator.LT: "<",
    Operator.LTE: "<=",
    Operator.EQ: "=",
    Operator.NOT_EQUAL: "=",  # negative: the OR of equalities, negated
}


def plan_sql(plan: Plan, *, advertiser_id: int, as_of: float, events: str) -> str:
    """SQL selecting ``uid`` (distinct) of the plan's members as of ``as_of`` (Unix seconds)
    from the relation ``events`` (a table/view/subquery name with the stored event columns plus
    ``uid`` and ``advertiser_id``, already restricted to usable events)."""
    ctes: list[str] = []
    inclusion = [
        _rule_ctes(ctes, f"inc_{i}", rule, advertiser_id, as_of, events)
        for i, rule in enumerate(plan.inclusion)
    ]
    exclusion = [
        _rule_ctes(ctes, f"exc_{i}", rule, advertiser_id, as_of, events)
        for i, rule in enumerate(plan.exclusion)
    ]
    # Set operators are standard SQL and remove duplicates, so each step stays distinct.
    combine = "INTERSECT" if plan.combine is Combine.ALL else "UNION"
    ctes.append(f"included AS ({_set_of(inclusion, combine)})")
    query = "SELECT uid FROM included"
    if exclusion:
        ctes.append(f"excluded AS ({_set_of(exclusion, 'UNION')})")
        query += " EXCEPT SELECT uid FROM excluded"  # exclusion always wins
    return "WITH\n  " + ",\n  ".join(ctes) + "\n" + query


def evaluate(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    *,
    advertiser_id: int,
    as_of: float,
    events: str,
) -> BitMap:
    """Run :func:`plan_sql` on ``con`` and return the members."""
    sql = plan_sql(plan, advertiser_id=advertiser_id, as_of=as_of, events=events)
    # Copied into numpy (not left as Arrow): DuckDB's Arrow output can point into memory the
    # connection owns.
    uids = con.execute(sql).fetchnumpy()["uid"]
    return BitMap(np.asarray(uids, dtype=np.uint32))


def top_count(share: float, n: int) -> int:
    """How many of ``n`` matching people a ``top_share`` keeps: ceil(share × n), without
    floating-point noise rounding an exact product up (see :data:`TOP_SHARE_EPSILON`)."""
    return max(0, math.ceil(share * n - TOP_SHARE_EPSILON))


def rule_predicate(rule: Rule, advertiser_id: int, as_of: float) -> str:
    """A boolean SQL expression over one row of the events relation (unqualified column names):
    true when the event qualifies for ``rule`` as of ``as_of``, false otherwise (never NULL, so
    it can also be selected as a column of a shared scan). For a day-2 retention rule it selects
    the launches; :func:`install_predicate` selects the installs they must follow."""
    return _predicate(rule, rule.event.names, advertiser_id, as_of)


def install_predicate(rule: Rule, advertiser_id: int, as_of: float) -> str:
    """The installs a day-2 retention rule's launches must follow: the rule's predicate with
    the install's event names (:data:`INSTALL_EVENTS`) for the launch's."""
    return _predicate(rule, INSTALL_EVENTS, advertiser_id, as_of)


# --- one rule ------------------------------------------------------------------------------------


def _rule_ctes(
    ctes: list[str], name: str, rule: Rule, advertiser_id: int, as_of: float, events: str
) -> str:
    """Append the CTEs of one rule (the last one, ``name``, holds its people's ``uid``)."""
    where = rule_predicate(rule, advertiser_id, as_of)
    retention = rule.event.retained_on_day
    if retention is not None:
        installs = install_predicate(rule, advertiser_id, as_of)
        ctes.append(
            f"{name}_installs AS (SELECT DISTINCT uid, {_utc_day('event_time')} AS day_no "
            f"FROM {events} WHERE {installs})"
        )
        ctes.append(
            f"{name}_launches AS (SELECT uid, value, {_utc_day('event_time')} AS day_no "
            f"FROM {events} WHERE {where})"
        )
        # A launch counts when the same person installed exactly `retention` UTC days before.
        ctes.append(
            f"{name}_events AS (SELECT l.uid, l.value FROM {name}_launches l WHERE EXISTS "
            f"(SELECT 1 FROM {name}_installs i "
            f"WHERE i.uid = l.uid AND i.day_no = l.day_no - {int(retention)}))"
        )
    elif rule.min_count == 1 and rule.min_value is None and rule.top_share is None:
        # TikTok's rules: one qualifying event is enough, so no grouping is needed.
        ctes.append(f"{name} AS (SELECT DISTINCT uid FROM {events} WHERE {where})")
        return name
    else:
        ctes.append(f"{name}_events AS (SELECT uid, value FROM {events} WHERE {where})")

    having = [f"COUNT(*) >= {int(rule.min_count)}"]
    if rule.min_value is not None:
        having.append(f"SUM(COALESCE(value, 0)) >= {_number(rule.min_value)}")
    if rule.top_share is None:
        ctes.append(
            f"{name} AS (SELECT uid FROM {name}_events GROUP BY uid HAVING {' AND '.join(having)})"
        )
        return name
    ctes.append(
        f"{name}_matched AS (SELECT uid, SUM(COALESCE(value, 0)) AS total FROM {name}_events "
        f"GROUP BY uid HAVING {' AND '.join(having)})"
    )
    # Rank by summed value (ties: lower uid first) and keep top_count(share, n); the arithmetic
    # is the same double-precision expression as top_count's.
    ctes.append(
        f"{name} AS (SELECT uid FROM (SELECT uid, "
        f"ROW_NUMBER() OVER (ORDER BY total DESC, uid ASC) AS rank_no, COUNT(*) OVER () AS n "
        f"FROM {name}_matched) ranked "
        f"WHERE rank_no <= CEIL({_number(rule.top_share)} * n - {TOP_SHARE_EPSILON!r}))"
    )
    return name


def _set_of(names: list[str], operator: str) -> str:
    return f" {operator} ".join(f"SELECT uid FROM {name}" for name in names)


def _predicate(rule: Rule, names: Iterable[str], advertiser_id: int, as_of: float) -> str:
    # Top-level conjuncts stay plain comparisons on plain columns (advertiser_id, channel,
    # event, event_time) so the engine can push them into the scan: advertiser_id and the
    # Parquet statistics prune partitions and row groups.
    start = as_of - rule.lookback_days * DAY_SECONDS
    parts = [
        _sources(rule, advertiser_id),
        f"channel IN ({_texts(rule.event.channels)})",
        f"event IN ({_texts(names)})",
        f"event_time > {_number(start)}",
        f"event_time <= {_number(as_of)}",
    ]
    # Play depth: a play without the measure fails (COALESCE: never NULL).
    if rule.event.min_watched_seconds is not None:
        seconds = _number(rule.event.min_watched_seconds)
        parts.append(f"COALESCE(watched_seconds >= {seconds}, FALSE)")
    if rule.event.min_watched_percent is not None:
        percent = _number(rule.event.min_watched_percent)
        parts.append(f"COALESCE(watched_percent >= {percent}, FALSE)")
    parts.extend(_param_filter(f) for f in rule.filters)
    return "(" + " AND ".join(parts) + ")"


def _sources(rule: Rule, advertiser_id: int) -> str:
    sources = rule.sources
    own = f"advertiser_id = {int(advertiser_id)}"
    if sources.match_field is None:
        # Shop events name no shop: every one stored under the advertiser (who owns its shop).
        return own
    column = _column(sources.match_field)
    if not sources.ids:
        # Every source of the kind the advertiser owns: its events naming one (an ENGAGEMENT
        # rule without ad groups takes every ad's events, not plays of the advertiser's posts).
        return f"({own} AND {column} IS NOT NULL)"
    named = f"COALESCE({column} IN ({_ids(column, sources.ids)}), FALSE)"
    if sources.organic:
        # Organic activity (advertiser 0) on the advertiser's own posts, LIVE videos, accounts.
        organic = f"(advertiser_id IN ({int(advertiser_id)}, 0) AND {named}"
        if sources.creators:
            creators = f"COALESCE(creator_id IN ({_texts(sources.creators)}), FALSE)"
            organic += f" AND ({own} OR {creators})"
        return organic + ")"
    return f"({own} AND {named})"


def _param_filter(f: ParamFilter) -> str:
    column = _column(f.record_field)
    if column in LIST_FIELDS:
        matches = _any_element(column, _value_test(f, column, _ELEMENT))
    else:
        matches = f"({_value_test(f, column, column)})"
    # COALESCE: a missing field (NULL, or an empty list) is a clean FALSE, so a positive
    # operator fails and the negation of a negative operator passes.
    held = f"COALESCE({matches}, FALSE)"
    return f"NOT {held}" if f.operator in NEGATIVE_OPERATORS else held


def _value_test(f: ParamFilter, column: str, x: str) -> str:
    """The OR of the filter's values tested against ``x`` (the column, or one list element),
    before a negative operator's negation."""
    if f.numeric:
        comparison = _COMPARISONS[f.operator]
        value = x if column in NUMBER_FIELDS else _as_number(x)
        return " OR ".join(f"{value} {comparison} {_number(n)}" for n in f.numbers)
    if f.operator in (Operator.CONTAINS, Operator.DOES_NOT_CONTAIN):
        return " OR ".join(f"INSTR(LOWER({x}), LOWER({_text(v)})) > 0" for v in f.values)
    # EQ, NOT_EQUAL on text. LOWER on both sides: one case-folding function, the engine's.
    return f"LOWER({x}) IN ({', '.join(f'LOWER({_text(v)})' for v in f.values)})"


# --- the only engine-specific SQL ----------------------------------------------------------------


def _any_element(column: str, test: str) -> str:
    """True when some element of list ``column`` passes ``test`` (an expression over the
    element, named :data:`_ELEMENT`). DuckDB's list lambda; Spark SQL: ``exists(column, x ->
    test)``; Trino: ``any_match(column, x -> test)``. NULL when the list is NULL (callers
    COALESCE)."""
    return f"(LEN(LIST_FILTER({column}, LAMBDA {_ELEMENT}: COALESCE({test}, FALSE))) > 0)"


def _as_number(expression: str) -> str:
    """Text read as a number, NULL when it is not one (DuckDB and Spark SQL: ``TRY_CAST``;
    Trino: ``TRY_CAST`` too; PostgreSQL would need a guarded CAST)."""
    return f"TRY_CAST({expression} AS DOUBLE)"


def _utc_day(expression: str) -> str:
    """The UTC day number of a Unix-seconds timestamp (portable: plain arithmetic)."""
    return f"CAST(FLOOR({expression} / {DAY_SECONDS}) AS BIGINT)"


# --- literals ------------------------------------------------------------------------------------


def _text(value: str) -> str:
    """A string literal. Quotes are doubled (standard SQL); a NUL character cannot be stored
    in a text column, so it is refused rather than silently cut. Spark SQL reads backslashes
    as escapes: its dialect must double them too."""
    if "\x00" in value:
        raise InvalidParameter("text values must not contain NUL characters")
    return "'" + value.replace("'", "''") + "'"


def _texts(values: Iterable[str]) -> str:
    return ", ".join(_text(v) for v in sorted(values))  # sorted: the same plan, the same SQL


def _number(value: float) -> str:
    number = float(value)
    if not math.isfinite(number):
        raise InvalidParameter(f"{value!r} is not a finite number")
    # repr round-trips the exact double; the CAST keeps engines from reading it as a DECIMAL.
    return f"CAST({number!r} AS DOUBLE)"


def _ids(column: str, ids: Iterable[int | str]) -> str:
    if column in INT_ID_FIELDS:
        try:
            return ", ".join(str(int(i)) for i in ids)
        except ValueError:
            raise InvalidParameter(f"{column} ids must be whole numbers") from None
    return ", ".join(_text(str(i)) for i in ids)


def _column(name: str) -> str:
    # Column names come from the plan's tables, never from a request; checked all the same,
    # because they are the one thing placed in the SQL unquoted.
    if not _IDENTIFIER.fullmatch(name):
        raise InvalidParameter(f"{name!r} is not an event column")
    return name
