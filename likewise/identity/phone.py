"""Phone normalisation to E.164 (``+<country code><national number>``).

A small per-region rule table decides the common shapes (international ``+``/``00`` forms,
national forms with or without the trunk prefix, digits with the country code but no ``+``)
identically here and in the compiled fast path (``_fast.pyx``). Anything else goes to Google's
``phonenumbers``.

The platform keeps two hashes per phone, because TikTok documents both: the E.164 form with the
``+`` and the digits-only form without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from likewise.identity.text import trim


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
_INTERNATIONAL = re.compile(r"\+[1-9][0-9]{6,14}")
_DOUBLE_ZERO = re.compile(r"00[1-9][0-9]{6,14}")
_DIGITS = re.compile(r"[0-9]{6,17}")
# "+<cc><trunk>…" (``+44 020 …``, a common slip): the library knows to drop the trunk prefix.
INTL_TRUNK = tuple(sorted({"+" + r.calling_code + r.trunk for r in RULES.values() if r.trunk}))
# "+<cc>0…" where the country's trunk prefix is 0: the rule that drops it (see _international).
TRUNK_AFTER_CC = {"+" + r.calling_code + r.trunk: r for r in RULES.values() if r.trunk == "0"}


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
    # "+41 (0)44 …": the library drops a bracketed trunk prefix. Decided here only where the
    # rule table knows the country's trunk prefix (see _international).
    bracketed = "(0)" in text
    c = _SEPARATORS.sub("", text)
    if _INTERNATIONAL.fullmatch(c):
        return _international(c, bracketed)
    if _DOUBLE_ZERO.fullmatch(c):
        if bracketed or ("+" + c[2:]).startswith(INTL_TRUNK):
            return None
        return "+" + c[2:]
    rule = RULES.get((region or "").upper())
    if rule is None or not _DIGITS.fullmatch(c):
        return None
    if rule.idd != "00" and c.startswith(rule.idd):
        dialled = "+" + c[len(rule.idd) :]
        return _international(dialled, bracketed) if _INTERNATIONAL.fullmatch(dialled) else None
    if bracketed:
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


def _international(c: str, bracketed: bool) -> str | None:
    """An international number ``+<cc>…``. ``+44 (0)20 …`` and ``+44 020 …`` write the national
    trunk prefix after the country code; the library drops it, and so does this where the
    trunk is ``0`` and the rest has the rule's length. Other shapes with a trunk prefix there,
    or with ``(0)`` elsewhere, are left to the library."""
    for prefix, rule in TRUNK_AFTER_CC.items():
        if c.startswith(prefix):
            nsn = c[len(prefix) :]
            if rule.min_len <= len(nsn) <= rule.max_len and not nsn.startswith("0"):
                return "+" + rule.calling_code + nsn
            return None
    if bracketed or c.startswith(INTL_TRUNK):
        return None
    return c


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
    if not _INTERNATIONAL.fullmatch(e164) or e164.startswith(INTL_TRUNK):
        return None
    return e164


def phone_variants(e164: str) -> list[str]:
    """The forms an advertiser may have hashed: with and without the ``+``."""
    return [e164, e164[1:]]


# --- the compiled fast path (_fast.pyx) -------------------------------------------------------

KernelRule = tuple[bytes, bytes, int, int, bytes]  # cc, trunk, min_len, max_len, idd
KernelPrefix = tuple[bytes, bool, int, int]  # "+<cc><trunk>", dropped?, for lengths min..max


def kernel_rule(rule: RegionRule) -> KernelRule:
    """A region's rule as the compiled kernel takes it."""
    return (
        rule.calling_code.encode(),
        rule.trunk.encode(),
        rule.min_len,
        rule.max_len,
        rule.idd.encode(),
    )


def kernel_prefixes() -> list[KernelPrefix]:
    """:data:`INTL_TRUNK` for the kernel, each with whether :func:`_international` drops the
    trunk prefix and for which lengths of the rest."""
    out = []
    for prefix in INTL_TRUNK:
        strips = TRUNK_AFTER_CC.get(prefix)
        lengths = (strips.min_len, strips.max_len) if strips else (0, 0)
        out.append((prefix.encode(), strips is not None, *lengths))
    return out
