"""Mobile numbers for the synthetic platform: numbering plans, drawing, formatting.

Every number is drawn from a *prefix* that ``phonenumbers`` accepts as a mobile (or, for the US,
fixed-line-or-mobile) range of its country, followed by free digits; a prefix is only listed here
if every completion is valid, so validity holds by construction (``tests/unit/test_sim.py``
checks it against the installed ``phonenumbers`` metadata). Within one country all national
significant numbers (NSN) have the same length, which keeps formatting a fixed-width byte copy.

Platform users get numbers from :class:`NumberAllocator` (distinct by construction); customer
files draw extra random ones with :func:`draw_nsn`, avoiding the users' numbers.

Formatting uses templates where ``#`` takes the next NSN digit and every other character is
literal, so ``"(###) ###-####"`` renders ``4155552671`` as ``(415) 555-2671``. All work is numpy
over ``uint8`` matrices; no Python loop runs per number.

The module also holds two small Arrow helpers (:func:`fixed_width_strings`, :func:`scatter`)
shared by the other ``likewise.sim`` modules.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "COUNTRIES",
    "IDD_PREFIX",
    "PHONE_PLANS",
    "NumberAllocator",
    "PhonePlan",
    "affine_bijection",
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

    @property
    def all_prefixes(self) -> tuple[str, ...]:
        """Every prefix the plan uses, default and regional, sorted."""
        return tuple(sorted(set(self.prefixes).union(*self.region_prefixes.values())))


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
    if len(pieces) == 1 and type_ == pa.string() and pieces[0][1].type == pa.string():
        rows = np.asarray(pieces[0][0], dtype=np.int64)
        if len(rows) == 0 or (rows[0] >= 0 and rows[-1] < n and np.all(np.diff(rows) > 0)):
            return _expand_sorted(rows, pieces[0][1], n)
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


def _expand_sorted(rows: np.ndarray, values: pa.Array, n: int) -> pa.Array:
    """``scatter`` for one piece with increasing rows: new offsets and validity over the same
    character buffer, no copy of the strings."""
    m = len(values)
    if len(rows) != m:
        raise ValueError("scatter: rows and values differ in length")
    if m == 0:
        return pa.nulls(n, pa.string())
    voff = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + m + 1]
    lengths = np.zeros(n, dtype=np.int64)
    lengths[rows] = np.diff(voff)
    offsets = np.empty(n + 1, dtype=np.int32)
    offsets[0] = voff[0]
    np.cumsum(lengths, out=lengths)
    offsets[1:] = lengths + offsets[0]
    valid = np.zeros(n, dtype=bool)
    valid[rows] = values.is_valid().to_numpy(zero_copy_only=False)
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), values.buffers()[2], bitmap, null_count=int(n - valid.sum())
    )


# --------------------------------------------------------------------------- drawing


def _prefix_tables(prefixes: Sequence[str], nsn_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per prefix: its value shifted into place, and how many completions it has."""
    base = np.array([int(p) * 10 ** (nsn_length - len(p)) for p in prefixes], dtype=np.int64)
    span = np.array([10 ** (nsn_length - len(p)) for p in prefixes], dtype=np.int64)
    return base, span


def affine_bijection(space: int, rng: np.random.Generator) -> tuple[int, int]:
    """``(a, b)`` such that ``j -> (a * j + b) % space`` permutes ``range(space)``.

    ``a`` is coprime with ``space`` and far from 0 and ``space``, so consecutive ``j`` land far
    apart: distinct outputs for free, without remembering what was handed out.
    """
    if space <= 2:
        return 1, 0
    a = int(rng.integers(space // 3, 2 * space // 3)) | 1
    while math.gcd(a, space) != 1:
        a += 2
    return a, int(rng.integers(0, space))


class NumberAllocator:
    """Distinct numbers for platform users, handed out chunk after chunk.

    Each prefix group (a country's prefixes, or a region's area codes) spans
    ``len(prefixes) * 10**free_digits`` numbers; its j-th number is an affine bijection of j (see
    :func:`affine_bijection`), so users get distinct, scattered numbers without a global
    de-duplication pass over all of them.
    """

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._used: dict[tuple[str, tuple[str, ...]], int] = {}
        self._affine: dict[tuple[str, tuple[str, ...]], tuple[int, int]] = {}

    def allocate(
        self, plan: PhonePlan, region_codes: np.ndarray, region_names: Sequence[str]
    ) -> np.ndarray:
        """One new NSN per row; ``region_codes`` index ``region_names`` (area codes)."""
        codes = np.asarray(region_codes, dtype=np.int64)
        groups: list[tuple[str, ...]] = [plan.prefixes]
        lut = np.zeros(max(len(region_names), 1), dtype=np.int64)
        for code, name in enumerate(region_names):
            prefs = plan.region_prefixes.get(name)
            if prefs is not None:
                if prefs not in groups:
                    groups.append(prefs)
                lut[code] = groups.index(prefs)
        group = lut[codes] if len(codes) else codes
        nsn = np.empty(len(codes), dtype=np.int64)
        for g, prefs in enumerate(groups):
            rows = np.flatnonzero(group == g)
            if len(rows) == 0:
                continue
            free = plan.nsn_length - len(prefs[0])
            if any(len(p) != len(prefs[0]) for p in prefs):
                raise ValueError(f"{plan.country}: prefixes of one group must have one length")
            space = len(prefs) * 10**free
            key = (plan.country, prefs)
            if key not in self._affine:
                salt = zlib.crc32(",".join((plan.country, *prefs)).encode())
                self._affine[key] = affine_bijection(
                    space, np.random.default_rng([self._seed, salt])
                )
            a, b = self._affine[key]
            start = self._used.get(key, 0)
            if start + len(rows) > space or a * space >= 2**63:
                raise ValueError(f"{plan.country}: number space {prefs[:3]}... exhausted")
            j = np.arange(start, start + len(rows), dtype=np.int64)
            pos = (j * a + b) % space
            base, _ = _prefix_tables(prefs, plan.nsn_length)
            nsn[rows] = base[pos // 10**free] + pos % 10**free
            self._used[key] = start + len(rows)
        return nsn


def draw_nsn(
    rng: np.random.Generator,
    plan: PhonePlan,
    size: int,
    *,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``size`` distinct random valid NSNs (int64) of ``plan``'s country.

    ``exclude`` (int64 NSNs) are never returned: the customer-file generator uses it for numbers
    no platform user has. Duplicates are re-drawn (keeping the prefix) until none remain, which
    converges fast because every prefix has >= 10^6 completions.
    """
    prefixes = plan.all_prefixes
    prefix_idx = rng.integers(0, len(prefixes), size=size)
    base, span = _prefix_tables(prefixes, plan.nsn_length)
    row_base, row_span = base[prefix_idx], span[prefix_idx]
    nsn = row_base + rng.integers(0, row_span)
    excluded = np.zeros(0, dtype=np.int64)
    if exclude is not None and len(exclude):
        excluded = np.asarray(exclude, dtype=np.int64)
        if np.any(excluded[1:] < excluded[:-1]):
            excluded = np.sort(excluded)

    def taken(values: np.ndarray) -> np.ndarray:
        # Binary search in the sorted exclusions: no hash set over millions of numbers.
        if len(excluded) == 0:
            return np.zeros(len(values), dtype=bool)
        pos = np.minimum(np.searchsorted(excluded, values), len(excluded) - 1)
        return excluded[pos] == values

    bad = taken(nsn)
    for _ in range(64):
        _, first = np.unique(nsn, return_index=True)
        repeated = np.ones(size, dtype=bool)
        repeated[first] = False
        redo = np.flatnonzero(bad | repeated)
        if len(redo) == 0:
            return nsn
        nsn[redo] = row_base[redo] + rng.integers(0, row_span[redo])
        bad = np.zeros(size, dtype=bool)
        bad[redo] = taken(nsn[redo])  # only re-drawn numbers can newly hit an exclusion
    raise RuntimeError(f"draw_nsn: could not draw {size} distinct {plan.country} numbers")


# --------------------------------------------------------------------------- formatting


def _digits(nsn: np.ndarray, length: int) -> np.ndarray:
    """``(m, length)`` ASCII digit matrix of zero-padded numbers.

    Arrow's int-to-string cast plus left padding is several times faster than 64-bit integer
    division per digit in numpy, and the padded strings are exactly the rows of the matrix.
    """
    m = len(nsn)
    if m == 0:
        return np.zeros((0, length), dtype=np.uint8)
    if int(nsn.min()) < 0 or int(nsn.max()) >= 10**length:
        raise ValueError(f"numbers do not fit in {length} digits")
    text = pc.utf8_lpad(pc.cast(pa.array(nsn, pa.int64()), pa.string()), width=length, padding="0")
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset : text.offset + m + 1]
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(m, length)


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
