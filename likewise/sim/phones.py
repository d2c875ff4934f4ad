"""Mobile numbers for the synthetic platform: numbering plans, drawing, formatting.

Every number is drawn from a *prefix* that ``phonenumbers`` accepts as a mobile (or, for the US,
fixed-line-or-mobile) range of its country, followed by free digits; a prefix is only listed here
if every completion is valid, so validity holds by construction (``tests/unit/test_sim.py``
checks it against the installed ``phonenumbers`` metadata). Within one country all national
significant numbers (NSN) have the same length, which keeps formatting a fixed-width byte copy.

Formatting uses templates where ``#`` takes the next NSN digit and every other character is
literal, so ``"(###) ###-####"`` renders ``4155552671`` as ``(415) 555-2671``. All work is numpy
over ``uint8`` matrices; no Python loop runs per number.

The module also holds two small Arrow helpers (:func:`fixed_width_strings`, :func:`scatter`)
shared by the other ``likewise.sim`` modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

__all__ = [
    "COUNTRIES",
    "IDD_PREFIX",
    "PHONE_PLANS",
    "PhonePlan",
    "draw_nsn",
    "e164_strings",
    "fixed_width_strings",
    "format_nsn",
    "render_phones",
    "scatter",
]

# Country order is part of the seeded output: indices into this tuple are stored per user.
COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "FR", "BR", "IN", "JP")

# International call prefix as dialled *from* a country; phonenumbers strips it when parsing with
# that country as default region. BR is absent: its IDD embeds a carrier code ("0021", ...).
IDD_PREFIX: dict[str, str] = {
    "US": "011",
    "GB": "00",
    "DE": "00",
    "FR": "00",
    "IN": "00",
    "JP": "010",
}


@dataclass(frozen=True)
class PhonePlan:
    """Numbering facts the sim needs for one country.

    ``prefixes`` are used for users whose region has no entry in ``region_prefixes`` (area codes
    tie US and BR numbers to the user's state). Templates carry a weight; international ones start
    with ``+<calling_code>``.
    """

    country: str
    calling_code: str
    nsn_length: int
    prefixes: tuple[str, ...]
    national_formats: tuple[tuple[str, float], ...]
    international_formats: tuple[tuple[str, float], ...]
    region_prefixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated prefixes: long lists stay readable and formatter-stable."""
    return tuple(text.split())


def _expand(heads: Sequence[str], tails: str) -> tuple[str, ...]:
    """Every head followed by each single digit of ``tails`` ("415", "29" -> "4152", "4159")."""
    return tuple(h + t for h in heads for t in tails)


# US: area code + first exchange digit 2-9 (exchanges never start with 0 or 1). Area codes are
# real geographic ones of each state, all inside phonenumbers' US pattern.
_US_AREAS: dict[str, tuple[str, ...]] = {
    "US-CA": ("213", "310", "408", "415", "510", "619", "714", "818", "916", "949"),
    "US-NY": ("212", "315", "347", "516", "518", "585", "646", "718", "917"),
    "US-TX": ("210", "214", "281", "512", "713", "817", "832", "915", "972"),
    "US-FL": ("305", "407", "561", "727", "786", "813", "904", "954"),
    "US-IL": ("217", "309", "312", "630", "708", "773", "847"),
    "US-WA": ("206", "253", "360", "425", "509"),
    "US-PA": ("215", "267", "412", "484", "610", "717"),
    "US-GA": ("404", "470", "678", "706", "770", "912"),
    "US-MA": ("413", "508", "617", "781", "857", "978"),
    "US-NC": ("252", "336", "704", "828", "910", "919", "980"),
    "US-OH": ("216", "330", "419", "513", "614", "740", "937"),
    "US-AZ": ("480", "520", "602", "623", "928"),
    "US-CO": ("303", "719", "720", "970"),
    "US-MI": ("248", "313", "517", "586", "616", "734", "810"),
    "US-NJ": ("201", "609", "732", "856", "908", "973"),
}
# BR: two-digit DDD area code of the state, then the mobile "9" and a first digit 6-9.
_BR_DDD: dict[str, tuple[str, ...]] = {
    "BR-SP": ("11", "12", "13", "14", "15", "16", "17", "18", "19"),
    "BR-RJ": ("21", "22", "24"),
    "BR-MG": ("31", "32", "33", "34", "35", "37", "38"),
    "BR-RS": ("51", "53", "54", "55"),
    "BR-BA": ("71", "73", "74", "75", "77"),
    "BR-PR": ("41", "42", "43", "44", "45", "46"),
    "BR-PE": ("81", "87"),
    "BR-CE": ("85", "88"),
    "BR-DF": ("61",),
    "BR-AM": ("92", "97"),
}

PHONE_PLANS: dict[str, PhonePlan] = {
    "US": PhonePlan(
        country="US",
        calling_code="1",
        nsn_length=10,
        prefixes=_expand(_US_AREAS["US-CA"], "23456789"),
        region_prefixes={r: _expand(a, "23456789") for r, a in _US_AREAS.items()},
        national_formats=(
            ("(###) ###-####", 0.36),
            ("###-###-####", 0.30),
            ("###.###.####", 0.06),
            ("##########", 0.14),
            ("1-###-###-####", 0.06),
            ("(###)###-####", 0.08),
        ),
        international_formats=(
            ("+1 ###-###-####", 0.4),
            ("+1 (###) ###-####", 0.3),
            ("+1##########", 0.3),
        ),
    ),
    "GB": PhonePlan(
        country="GB",
        calling_code="44",
        nsn_length=10,
        # 7[4579]xx and 77x/78x ranges; 7624 (Isle of Man) and Jersey/Guernsey ranges are avoided
        # so the number's region is GB itself.
        prefixes=_words(
            "740 741 742 743 744 747 748 749 751 753 754 755 756 757 758 759 771 772 773 774 775"
            " 776 777 780 781 784 785 786 787 788 789 790 792 794 795 796 797 798 799"
        ),
        national_formats=(
            ("0#### ######", 0.55),
            ("0##########", 0.25),
            ("0#### ### ###", 0.20),
        ),
        international_formats=(
            ("+44 #### ######", 0.5),
            ("+44##########", 0.3),
            ("+44 (0)#### ######", 0.2),
        ),
    ),
    "DE": PhonePlan(
        country="DE",
        calling_code="49",
        nsn_length=11,
        prefixes=_words("151 152 157 159 160 162 163 170 171 172 173 174 175 176 177 178 179"),
        national_formats=(
            ("0### ########", 0.45),
            ("0###/########", 0.2),
            ("0###-########", 0.1),
            ("0###########", 0.25),
        ),
        international_formats=(
            ("+49 ### ########", 0.6),
            ("+49###########", 0.4),
        ),
    ),
    "FR": PhonePlan(
        country="FR",
        calling_code="33",
        nsn_length=9,
        prefixes=_words("60 61 62 64 65 66 67 68 73 74 75 76 77"),
        national_formats=(
            ("0# ## ## ## ##", 0.6),
            ("0#########", 0.25),
            ("0#.##.##.##.##", 0.15),
        ),
        international_formats=(
            ("+33 # ## ## ## ##", 0.6),
            ("+33#########", 0.4),
        ),
    ),
    "BR": PhonePlan(
        country="BR",
        calling_code="55",
        nsn_length=11,
        prefixes=_expand(_expand(_BR_DDD["BR-SP"], "9"), "6789"),
        region_prefixes={r: _expand(_expand(d, "9"), "6789") for r, d in _BR_DDD.items()},
        national_formats=(
            ("(##) #####-####", 0.5),
            ("## #####-####", 0.2),
            ("###########", 0.2),
            ("(##)#####-####", 0.1),
        ),
        international_formats=(
            ("+55 ## #####-####", 0.5),
            ("+55 (##) #####-####", 0.2),
            ("+55###########", 0.3),
        ),
    ),
    "IN": PhonePlan(
        country="IN",
        calling_code="91",
        nsn_length=10,
        prefixes=_words("90 91 92 93 94 95 96 97 98 99 60 69 70 72 74 84 85"),
        national_formats=(
            ("##### #####", 0.5),
            ("##########", 0.35),
            ("0##########", 0.15),
        ),
        international_formats=(
            ("+91 ##### #####", 0.5),
            ("+91-##########", 0.2),
            ("+91##########", 0.3),
        ),
    ),
    "JP": PhonePlan(
        country="JP",
        calling_code="81",
        nsn_length=10,
        prefixes=_expand(("70", "80", "90"), "123456789"),
        national_formats=(
            ("0##-####-####", 0.6),
            ("0##########", 0.25),
            ("0## #### ####", 0.15),
        ),
        international_formats=(
            ("+81 ##-####-####", 0.6),
            ("+81##########", 0.4),
        ),
    ),
}


# --------------------------------------------------------------------------- Arrow helpers


def fixed_width_strings(chars: np.ndarray) -> pa.StringArray:
    """Turn an ``(m, w)`` uint8 matrix of ASCII into ``m`` strings of length ``w``, zero-copy."""
    m, w = chars.shape
    if m * w >= 2**31:
        raise ValueError("fixed_width_strings: more than 2 GiB of characters; pass smaller chunks")
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    offsets = np.arange(0, (m + 1) * w, w, dtype=np.int32) if w else np.zeros(m + 1, np.int32)
    return pa.StringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(data))


def scatter(
    pieces: Sequence[tuple[np.ndarray, pa.Array]], n: int, type_: pa.DataType = pa.string()
) -> pa.Array:
    """Assemble ``n`` values from disjoint ``(row_indices, values)`` pieces; other rows are null.

    Lets a column be computed group by group (per country, per format) and put back in row order
    with one ``take`` instead of per-row writes.
    """
    idx_parts = [np.asarray(i, dtype=np.int64) for i, _ in pieces]
    val_parts = [v.cast(type_) if v.type != type_ else v for _, v in pieces]
    covered = sum(len(i) for i in idx_parts)
    if covered < n:
        seen = np.zeros(n, dtype=bool)
        for i in idx_parts:
            seen[i] = True
        missing = np.flatnonzero(~seen)
        idx_parts.append(missing)
        val_parts.append(pa.nulls(len(missing), type_))
    order = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
    if len(order) != n:
        raise ValueError("scatter: pieces overlap or exceed n")
    values = pa.concat_arrays(val_parts) if val_parts else pa.array([], type_)
    # ``order[j]`` is the destination of value j; invert it so ``take`` gathers in row order.
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n, dtype=np.int64)
    return values.take(pa.array(position))


# --------------------------------------------------------------------------- drawing


def _prefix_tables(prefixes: Sequence[str], nsn_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per prefix: its value shifted into place, and how many completions it has."""
    base = np.array([int(p) * 10 ** (nsn_length - len(p)) for p in prefixes], dtype=np.int64)
    span = np.array([10 ** (nsn_length - len(p)) for p in prefixes], dtype=np.int64)
    return base, span


def draw_nsn(
    rng: np.random.Generator,
    plan: PhonePlan,
    size: int,
    *,
    region_codes: np.ndarray | None = None,
    region_names: Sequence[str] = (),
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``size`` distinct valid NSNs (int64) of ``plan``'s country.

    ``region_codes`` (ints indexing ``region_names``, one per number) pick area codes where the
    plan has them. ``exclude`` (int64 NSNs) are never returned: the customer-file generator uses it
    for numbers no platform user has. Duplicates are re-drawn (keeping the prefix) until none
    remain, which converges fast because every prefix has >= 10^6 completions.
    """
    prefix_idx = rng.integers(0, len(plan.prefixes), size=size)
    all_prefixes: list[str] = list(plan.prefixes)
    if region_codes is not None and plan.region_prefixes:
        codes = np.asarray(region_codes)
        for code, name in enumerate(region_names):
            prefs = plan.region_prefixes.get(name)
            rows = np.flatnonzero(codes == code) if prefs else np.zeros(0, np.int64)
            if len(rows) == 0 or prefs is None:
                continue
            prefix_idx[rows] = len(all_prefixes) + rng.integers(0, len(prefs), size=len(rows))
            all_prefixes.extend(prefs)
    base, span = _prefix_tables(all_prefixes, plan.nsn_length)
    row_base, row_span = base[prefix_idx], span[prefix_idx]
    nsn = row_base + rng.integers(0, row_span)
    excluded = np.unique(exclude) if exclude is not None and len(exclude) else None
    for _ in range(64):
        bad = np.ones(size, dtype=bool)
        _, first = np.unique(nsn, return_index=True)
        bad[first] = False
        if excluded is not None:
            bad |= np.isin(nsn, excluded, assume_unique=False)
        redo = np.flatnonzero(bad)
        if len(redo) == 0:
            return nsn
        nsn[redo] = row_base[redo] + rng.integers(0, row_span[redo])
    raise RuntimeError(f"draw_nsn: could not draw {size} distinct {plan.country} numbers")


# --------------------------------------------------------------------------- formatting


def _digits(nsn: np.ndarray, length: int) -> np.ndarray:
    """``(m, length)`` ASCII digit matrix of zero-padded numbers."""
    powers = 10 ** np.arange(length - 1, -1, -1, dtype=np.int64)
    return ((nsn[:, None] // powers[None, :]) % 10 + ord("0")).astype(np.uint8)


def format_nsn(nsn: np.ndarray, nsn_length: int, template: str) -> pa.StringArray:
    """Render NSNs through a ``#`` template (one ``#`` per NSN digit)."""
    tpl = np.frombuffer(template.encode("ascii"), dtype=np.uint8)
    slots = np.flatnonzero(tpl == ord("#"))
    if len(slots) != nsn_length:
        raise ValueError(f"template {template!r} has {len(slots)} digit slots, not {nsn_length}")
    out = np.empty((len(nsn), len(tpl)), dtype=np.uint8)
    out[:] = tpl
    out[:, slots] = _digits(np.asarray(nsn, dtype=np.int64), nsn_length)
    return fixed_width_strings(out)


def e164_strings(nsn: np.ndarray, plan: PhonePlan) -> pa.StringArray:
    """``+<cc><nsn>`` for every number."""
    return format_nsn(nsn, plan.nsn_length, "+" + plan.calling_code + "#" * plan.nsn_length)


def _pick(rng: np.random.Generator, weighted: Sequence[tuple[str, float]], size: int) -> np.ndarray:
    w = np.array([x for _, x in weighted], dtype=np.float64)
    return rng.choice(len(weighted), size=size, p=w / w.sum())


def render_phones(
    rng: np.random.Generator,
    country_idx: np.ndarray,
    nsn: np.ndarray,
    international_prob: np.ndarray | float,
    *,
    dial_from: str | None = None,
    idd_share: float = 0.25,
) -> pa.StringArray:
    """Format each number as a person would type it.

    Row ``i`` (country ``COUNTRIES[country_idx[i]]``) is international with probability
    ``international_prob`` (scalar or per row), else national. With ``dial_from`` set, that share
    ``idd_share`` of international numbers is written with the dialling country's IDD instead of
    ``+`` ("0044 7400 123456" from GB, "011 44 ..." from the US), which phonenumbers parses with
    ``dial_from`` as the default region. Rows with ``country_idx < 0`` are null.
    """
    n = len(country_idx)
    country_idx = np.asarray(country_idx)
    nsn = np.asarray(nsn, dtype=np.int64)
    intl = rng.random(n) < np.broadcast_to(np.asarray(international_prob, dtype=float), (n,))
    idd = IDD_PREFIX.get(dial_from or "")
    use_idd = (rng.random(n) < idd_share) if idd is not None else np.zeros(n, dtype=bool)
    if dial_from in COUNTRIES:
        # Nobody dials out of the country to call home: same-country numbers keep "+".
        use_idd &= country_idx != COUNTRIES.index(dial_from)
    pieces: list[tuple[np.ndarray, pa.Array]] = []
    for c, code in enumerate(COUNTRIES):
        plan = PHONE_PLANS[code]
        in_country = country_idx == c
        kinds = ((False, plan.national_formats), (True, plan.international_formats))
        for is_intl, formats in kinds:
            rows = np.flatnonzero(in_country & (intl == is_intl))
            if len(rows) == 0:
                continue
            choice = _pick(rng, formats, len(rows))
            for f, (template, _) in enumerate(formats):
                sub = rows[choice == f]
                if len(sub) == 0:
                    continue
                if is_intl and idd is not None:
                    # The IDD replaces the "+"; a space after it is how people write it.
                    with_idd = use_idd[sub]
                    plus_rows, idd_rows = sub[~with_idd], sub[with_idd]
                    idd_template = idd + " " + template[1:]
                    idd_text = format_nsn(nsn[idd_rows], plan.nsn_length, idd_template)
                    pieces.append((idd_rows, idd_text))
                    sub = plus_rows
                pieces.append((sub, format_nsn(nsn[sub], plan.nsn_length, template)))
    return scatter(pieces, n)
