"""Many rule plans evaluated at once, sharing one scan of the event log.

:func:`likewise.engine.rule_sql.evaluate` runs one query per plan, and each query reads its
advertiser's events again. Refreshing every rule audience (the daily refresh, a backfill) would
read the same Parquet files once per audience. Here they are read once for all of them:

1. Every rule of every plan gives its predicates (:func:`~likewise.engine.rule_sql.rule_predicate`,
   and :func:`~likewise.engine.rule_sql.install_predicate` for day-2 retention), grouped by the
   advertiser whose stored events they can match: a rule of advertiser A reads A's events, an
   organic rule (``Sources.organic``) advertiser 0's too (``docs/rules.md``: another
   advertiser's events never count).
2. One scan of the events keeps the rows for which some predicate holds, and only the columns
   the predicates and the rules' aggregates read, in a temporary table. Its filter is
   ``advertiser_id IN (...) AND event_time`` within the longest window (plain comparisons the
   engine pushes into the scan: partitions and row groups are pruned), then, per advertiser,
   ``advertiser_id = A AND (<A's predicates OR-ed>)``, so a row is tested against its own
   advertiser's rules only. Rules usually select a small part of the events (about 2% in the
   benchmark, ``bench/rules_batch.py``).
3. Each plan is evaluated by :func:`~likewise.engine.rule_sql.evaluate` itself, over that table.

Why this gives exactly ``evaluate``'s members: each rule's SQL reads only the rows that satisfy
its own predicate; the table holds every such row of the events relation, once (a row is stored
under one advertiser and selected once), and nothing else. The same SQL over it gives the same
result, so no part of a rule's meaning is written twice.

Many advertisers are split into several scans (:data:`ADVERTISERS_PER_SCAN`): each row is
tested against the advertisers of its scan one after the other, so one scan of thousands would
spend its time comparing advertiser ids.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import duckdb
from pyroaring import BitMap

from likewise.domain.rules import Plan, Rule
from likewise.engine.rule_sql import DAY_SECONDS, evaluate, install_predicate, rule_predicate

K = TypeVar("K", bound=Hashable)

ORGANIC_ADVERTISER = 0  # organic platform activity is stored under advertiser 0
ADVERTISERS_PER_SCAN = 64  # a guess: the benchmark's 21 need one scan; more was not measured
# Columns read besides those the predicates name: the person, the sums of min_value and
# top_share, and the coarse filter of the scan (event_time is in every predicate anyway).
ALWAYS_READ = ("uid", "advertiser_id", "event_time", "value")
_LITERAL = re.compile(r"'(?:[^']|'')*'")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def evaluate_many(
    con: duckdb.DuckDBPyConnection,
    plans: Mapping[K, tuple[Plan, int]],
    *,
    as_of: float,
    events: str,
    advertisers_per_scan: int = ADVERTISERS_PER_SCAN,
) -> dict[K, BitMap]:
    """The members of each plan (given with the id of its advertiser) as of ``as_of``, from
    the relation ``events`` (as for :func:`~likewise.engine.rule_sql.evaluate`): for each key,
    exactly ``evaluate(con, plan, advertiser_id=..., as_of=as_of, events=events)``.

    The events are read once per ``advertisers_per_scan`` advertisers whose events the rules
    read (once in all, up to that many); a temporary table is created on ``con`` and dropped
    before returning."""
    if not plans:
        return {}
    groups = _groups(plans.values(), as_of)
    columns = _columns(con, events, groups.values())
    table = f"likewise_batch_{uuid.uuid4().hex[:12]}"
    ids = sorted(groups)
    step = max(1, advertisers_per_scan)
    try:
        for i in range(0, len(ids), step):
            select = _scan([groups[a] for a in ids[i : i + step]], columns, events, as_of)
            if i == 0:
                con.execute(f"CREATE TEMP TABLE {table} AS {select}")
            else:
                con.execute(f"INSERT INTO {table} {select}")
        return {
            key: evaluate(con, plan, advertiser_id=advertiser_id, as_of=as_of, events=table)
            for key, (plan, advertiser_id) in plans.items()
        }
    finally:
        con.execute(f"DROP TABLE IF EXISTS {table}")


@dataclass
class _Group:
    """The predicates of every rule that can match one advertiser's stored events, and the
    longest window among those rules."""

    advertiser_id: int
    predicates: set[str] = field(default_factory=set)
    lookback_days: int = 0


def _groups(plans: Iterable[tuple[Plan, int]], as_of: float) -> dict[int, _Group]:
    groups: dict[int, _Group] = {}
    for plan, advertiser_id in plans:
        for rule in (*plan.inclusion, *plan.exclusion):
            predicates = [rule_predicate(rule, advertiser_id, as_of)]
            if rule.event.retained_on_day is not None:
                predicates.append(install_predicate(rule, advertiser_id, as_of))
            for read in _reads(rule, advertiser_id):
                group = groups.setdefault(read, _Group(read))
                group.predicates.update(predicates)
                group.lookback_days = max(group.lookback_days, rule.lookback_days)
    return groups


def _reads(rule: Rule, advertiser_id: int) -> tuple[int, ...]:
    """The advertisers whose stored events the rule can match. Must not miss one (its rows
    would be missing from the table); one too many only costs a little scanning."""
    if rule.sources.organic:
        return (advertiser_id, ORGANIC_ADVERTISER)
    return (advertiser_id,)


def _scan(groups: list[_Group], columns: list[str], events: str, as_of: float) -> str:
    """The rows of ``events`` of these advertisers for which one of their predicates holds."""
    # The same arithmetic as each rule's own window start, so the coarse window holds them all.
    start = min(as_of - g.lookback_days * DAY_SECONDS for g in groups)
    advertisers = ", ".join(str(int(g.advertiser_id)) for g in groups)
    per_advertiser = " OR ".join(
        # Sorted: the same plans, the same SQL.
        f"(advertiser_id = {int(g.advertiser_id)} AND ({' OR '.join(sorted(g.predicates))}))"
        for g in groups
    )
    return (
        f"SELECT {', '.join(columns)} FROM {events} "
        f"WHERE advertiser_id IN ({advertisers}) "
        f"AND event_time > {_number(start)} AND event_time <= {_number(as_of)} "
        f"AND ({per_advertiser})"
    )


def _columns(con: duckdb.DuckDBPyConnection, events: str, groups: Iterable[_Group]) -> list[str]:
    """The columns of ``events`` that a predicate names (outside string literals), and
    :data:`ALWAYS_READ`, in the relation's order."""
    described = con.execute(f"SELECT * FROM {events} LIMIT 0").description or []
    words = {w.lower() for w in ALWAYS_READ}
    for group in groups:
        for predicate in group.predicates:
            words.update(w.lower() for w in _WORD.findall(_LITERAL.sub(" ", predicate)))
    names = [str(d[0]) for d in described]
    return ['"' + n.replace('"', '""') + '"' for n in names if n.lower() in words]


def _number(value: float) -> str:
    # As rule_sql writes numbers: repr round-trips the double; the CAST keeps it a DOUBLE.
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return f"CAST({number!r} AS DOUBLE)"
