"""Phone normalisation to E.164 (``+<country code><national number>``).

A small per-region rule table decides the common shapes (international ``+``/``00`` forms,
national forms with or without the trunk prefix, digits with the country code but no ``+``)
identically in Python and in DuckDB SQL. Anything else goes to Google's ``phonenumbers``.

The platform keeps two hashes per phone, because TikTok documents both: the E.164 form with the
``+`` and the digits-only form without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from likewise.identity.text import sql_trim, trim


@dataclass(frozen=True, slots=True)
class RegionRule:
    calling_code: str
    trunk: str  # national trunk prefix dropped before the national number ("" if none)
    min_len: int  # national significant number lengths this rule decides
    max_len: int
    idd: str = "00"  # international dialling prefix, as in "011 44 20 …" dialled from the US


# Regions whose national numbers follow "optional trunk prefix + fixed-length number" closely
# enough to decide without the library. Others (Italy keeps its leading 0, …) use phonenumbers.
RULES: dict[str, RegionRule] = {
    "US": RegionRule("1", "1", 10, 10, "011"),
    "CA": RegionRule("1", "1", 10, 10, "011"),
    "GB": RegionRule("44", "0", 10, 10),
    "DE": RegionRule("49", "0", 10, 11),
    "FR": RegionRule("33", "0", 9, 9),
    "BR": RegionRule("55", "0", 10, 11),
    "IN": RegionRule("91", "0", 10, 10),
    "JP": RegionRule("81", "0", 9, 10, "010"),
    "AU": RegionRule("61", "0", 9, 9, "0011"),
    "ES": RegionRule("34", "", 9, 9),
    "NL": RegionRule("31", "0", 9, 9),
    "MX": RegionRule("52", "", 10, 10),
}

_SEPARATORS = re.compile(r"[ \t().\-/]")
SQL_SEPARATORS = "[ \t().\\-/]"
_INTERNATIONAL = re.compile(r"\+[1-9][0-9]{6,14}")
_DOUBLE_ZERO = re.compile(r"00[1-9][0-9]{6,14}")
_DIGITS = re.compile(r"[0-9]{6,17}")
# "+<cc><trunk>…" (``+44 020 …``, a common slip): the library knows to drop the trunk prefix.
_INTL_TRUNK = tuple(sorted({"+" + r.calling_code + r.trunk for r in RULES.values() if r.trunk}))
SQL_INTL_TRUNK = "^\\+(" + "|".join(p[1:] for p in _INTL_TRUNK) + ")"


def normalize_phone(raw: str, region: str | None) -> str | None:
    """E.164 with ``+``, or None when the value is not a possible phone number.

    ``region`` (ISO alpha-2) is the default for national numbers.
    """
    text = trim(raw)
    if not text:
        return None
    fast = fast_phone(text, region)
    if fast is not None:
        return fast
    return library_phone(text, region)


def fast_phone(text: str, region: str | None) -> str | None:
    """The rule-table path; None means "not decided here" (the caller falls back)."""
    if "(0)" in text:
        return None  # "+44 (0)20 …": the library knows to drop the bracketed trunk prefix
    c = _SEPARATORS.sub("", text)
    if _INTERNATIONAL.fullmatch(c):
        return None if c.startswith(_INTL_TRUNK) else c
    if _DOUBLE_ZERO.fullmatch(c):
        return None if ("+" + c[2:]).startswith(_INTL_TRUNK) else "+" + c[2:]
    rule = RULES.get((region or "").upper())
    if rule is None or not _DIGITS.fullmatch(c):
        return None
    if rule.idd != "00" and c.startswith(rule.idd):
        dialled = "+" + c[len(rule.idd) :]
        if _INTERNATIONAL.fullmatch(dialled) and not dialled.startswith(_INTL_TRUNK):
            return dialled
        return None
    if rule.trunk and c.startswith(rule.trunk):
        nsn = c[len(rule.trunk) :]
        if rule.min_len <= len(nsn) <= rule.max_len and not nsn.startswith("0"):
            return "+" + rule.calling_code + nsn
    has_trunk = bool(rule.trunk) and c.startswith(rule.trunk)
    if rule.min_len <= len(c) <= rule.max_len and not c.startswith("0") and not has_trunk:
        if c.startswith(rule.calling_code):
            return None  # national length but starting with the country code: ambiguous
        return "+" + rule.calling_code + c
    if c.startswith(rule.calling_code):
        nsn = c[len(rule.calling_code) :]
        if rule.min_len <= len(nsn) <= rule.max_len and not nsn.startswith("0"):
            return "+" + c
    return None


def library_phone(text: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(text, (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # At most 15 digits (E.164), and no national number starting with its trunk prefix (no valid
    # one does; the library strips one trunk digit per pass, so keeping it breaks idempotence).
    if not _INTERNATIONAL.fullmatch(e164) or e164.startswith(_INTL_TRUNK):
        return None
    return e164


def phone_variants(e164: str) -> list[str]:
    """The forms an advertiser may have hashed: with and without the ``+``."""
    return [e164, e164[1:]]


# --- SQL (DuckDB) fast path -------------------------------------------------------------------


def sql_rules_cte() -> str:
    """A ``phone_rules(region, cc, trunk, min_len, max_len)`` CTE body with :data:`RULES`."""
    rows = ", ".join(
        f"('{region}', '{r.calling_code}', '{r.trunk}', {r.min_len}, {r.max_len}, '{r.idd}')"
        for region, r in RULES.items()
    )
    return f"SELECT * FROM (VALUES {rows}) AS t(region, cc, trunk, min_len, max_len, idd)"


def sql_fast_phone(text_expr: str, rule: str = "r.", cleaned: str | None = None) -> str:
    """DuckDB expression equal to :func:`fast_phone`, given the rule columns (``cc``, ``trunk``,
    ``min_len``, ``max_len``, ``idd`` of :func:`sql_rules_cte`) named with the prefix ``rule``.

    ``text_expr`` must already be trimmed. NULL means "not decided here". ``cleaned`` names a
    column already holding :func:`sql_cleaned` of it, so the regex runs once per row, not ten.
    """
    c = cleaned or sql_cleaned(text_expr)
    nsn_ok = (
        "({n} IS NOT NULL AND length({n}) BETWEEN {r}min_len AND {r}max_len"
        " AND NOT starts_with({n}, '0'))"
    )
    has_trunk = f"({rule}trunk <> '' AND starts_with({c}, {rule}trunk))"
    after_trunk = f"substr({c}, length({rule}trunk) + 1)"
    after_cc = f"substr({c}, length({rule}cc) + 1)"
    dialled = f"('+' || substr({c}, length({rule}idd) + 1))"
    return f"""CASE
      WHEN contains({text_expr}, '(0)') THEN NULL
      WHEN regexp_full_match({c}, '\\+[1-9][0-9]{{6,14}}')
           THEN CASE WHEN regexp_matches({c}, '{SQL_INTL_TRUNK}') THEN NULL ELSE {c} END
      WHEN regexp_full_match({c}, '00[1-9][0-9]{{6,14}}')
           THEN CASE WHEN regexp_matches('+' || substr({c}, 3), '{SQL_INTL_TRUNK}') THEN NULL
                ELSE '+' || substr({c}, 3) END
      WHEN {rule}cc IS NULL OR NOT regexp_full_match({c}, '[0-9]{{6,17}}') THEN NULL
      WHEN {rule}idd <> '00' AND starts_with({c}, {rule}idd)
           THEN CASE WHEN regexp_full_match({dialled}, '\\+[1-9][0-9]{{6,14}}')
                      AND NOT regexp_matches({dialled}, '{SQL_INTL_TRUNK}')
                     THEN {dialled} END
      WHEN {rule}trunk <> '' AND starts_with({c}, {rule}trunk)
           AND {nsn_ok.format(n=after_trunk, r=rule)} THEN '+' || {rule}cc || {after_trunk}
      WHEN length({c}) BETWEEN {rule}min_len AND {rule}max_len AND NOT starts_with({c}, '0')
           AND NOT {has_trunk}
           THEN CASE WHEN starts_with({c}, {rule}cc) THEN NULL ELSE '+' || {rule}cc || {c} END
      WHEN starts_with({c}, {rule}cc) AND {nsn_ok.format(n=after_cc, r=rule)} THEN '+' || {c}
      ELSE NULL END"""


def sql_cleaned(text_expr: str) -> str:
    """The number without separators (spaces, brackets, dots, dashes, slashes)."""
    return f"regexp_replace({text_expr}, '{SQL_SEPARATORS}', '', 'g')"


def sql_trimmed(expr: str) -> str:
    return sql_trim(expr)
