"""Seeded synthetic platform users, in the import format of ``likewise users import``.

Everything is built column-wise with numpy and ``pyarrow.compute``; the only Python loops run
over countries, formats or styles (a handful each), never over users. 10M users fit in a few GB.

Identifiers are dirty the way real platform data is (mixed case, ``+tags``, dots, surrounding
spaces, national phone formats), yet every user's canonical forms are known by construction and
are unique across users:

* e-mail: the local part always ends with a per-user number ``k`` (an affine bijection of the
  row number onto ``1..n``) and name parts never contain digits, so the fully normalised e-mail
  (trim, lowercase, drop ``+tag``, drop dots in the local part) is unique, hence so is the
  basic form;
* phone: each prefix group hands out the images of 0, 1, 2, ... under an affine bijection of its
  number space (:class:`likewise.sim.phones.NumberAllocator`);
* device id: 64 of its bits are a bijective mix of the row number, so no two users share one.

Rows are made in chunks of 2^20, each from its own seed stream; only those bijections span
chunks. Temporaries therefore stay small, which matters on VMs where touching fresh memory is
slow: 10M users take about 20 s of CPU and under 3 GB at peak (users plus ground truth).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likewise.ingest.users import COLUMNS
from likewise.sim.phones import (
    COUNTRIES,
    PHONE_PLANS,
    NumberAllocator,
    affine_bijection,
    fixed_width_strings,
    format_nsn,
    render_phones,
    scatter,
)

__all__ = [
    "TRUTH_SCHEMA",
    "USER_COLUMNS",
    "USER_SCHEMA",
    "SimPlatform",
    "dirty_emails",
    "generate_platform",
    "generate_users",
    "ground_truth_identifiers",
    "make_device_ids",
    "make_emails",
]

# The import format of ``likewise users import``: the sim writes exactly what the import reads.
USER_COLUMNS: tuple[str, ...] = COLUMNS

# Same order as phones.COUNTRIES. TikTok's audience skews US; the rest are its big markets.
_COUNTRY_WEIGHTS = (0.40, 0.12, 0.10, 0.08, 0.12, 0.12, 0.06)
_IOS_SHARE = (0.57, 0.50, 0.35, 0.40, 0.15, 0.05, 0.68)

# ISO 3166-2 subdivision codes with rough population weights (normalised per country).
_REGIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "US": (
        ("US-CA", 18), ("US-NY", 10), ("US-TX", 13), ("US-FL", 10), ("US-IL", 6),
        ("US-WA", 4), ("US-PA", 6), ("US-GA", 5), ("US-MA", 4), ("US-NC", 5),
        ("US-OH", 5), ("US-AZ", 4), ("US-CO", 3), ("US-MI", 4), ("US-NJ", 3),
    ),
    "GB": (("GB-ENG", 84), ("GB-SCT", 8), ("GB-WLS", 5), ("GB-NIR", 3)),
    "DE": (
        ("DE-NW", 21), ("DE-BY", 16), ("DE-BW", 13), ("DE-NI", 10), ("DE-HE", 8),
        ("DE-BE", 7), ("DE-SN", 5), ("DE-HH", 4),
    ),
    "FR": (
        ("FR-IDF", 19), ("FR-ARA", 12), ("FR-NAQ", 9), ("FR-OCC", 9), ("FR-HDF", 9),
        ("FR-GES", 8), ("FR-PAC", 8), ("FR-PDL", 6), ("FR-BRE", 5), ("FR-NOR", 5),
    ),
    "BR": (
        ("BR-SP", 22), ("BR-RJ", 8), ("BR-MG", 10), ("BR-RS", 5), ("BR-BA", 7),
        ("BR-PR", 5), ("BR-PE", 5), ("BR-CE", 4), ("BR-DF", 3), ("BR-AM", 2),
    ),
    "IN": (
        ("IN-UP", 16), ("IN-MH", 11), ("IN-WB", 7), ("IN-KA", 6), ("IN-TN", 6),
        ("IN-RJ", 6), ("IN-DL", 5), ("IN-GJ", 5), ("IN-TG", 3), ("IN-KL", 3),
    ),
    "JP": (
        ("JP-13", 11), ("JP-27", 7), ("JP-14", 7), ("JP-23", 6), ("JP-11", 6),
        ("JP-12", 5), ("JP-01", 4), ("JP-40", 4), ("JP-28", 4),
    ),
}  # fmt: skip

_LANGUAGES: dict[str, tuple[tuple[str, float], ...]] = {
    "US": (("en", 85), ("es", 15)),
    "GB": (("en", 100),),
    "DE": (("de", 93), ("en", 4), ("tr", 3)),
    "FR": (("fr", 96), ("en", 4)),
    "BR": (("pt", 97), ("en", 3)),
    "IN": (("en", 55), ("hi", 35), ("ta", 5), ("bn", 5)),
    "JP": (("ja", 97), ("en", 3)),
}

# ASCII, lowercase, no digits: the uniqueness argument above needs names without digits.
_FIRST_NAMES: dict[str, str] = {
    "US": "james john robert michael william david richard joseph thomas chris daniel matthew"
    " emily emma olivia ava sophia isabella mia abigail madison ashley jessica sarah",
    "GB": "oliver george harry jack charlie jacob thomas oscar william james amelia olivia isla"
    " emily poppy ava lily jessica sophie grace",
    "DE": "lukas leon finn jonas paul felix maximilian elias noah ben anna lena lea hannah mia"
    " emma sophie marie laura julia",
    "FR": "lucas hugo louis jules gabriel arthur nathan leo raphael tom emma jade louise alice"
    " chloe lina lea manon camille ines",
    "BR": "joao pedro gabriel lucas matheus rafael gustavo felipe bruno thiago maria ana julia"
    " beatriz larissa camila fernanda amanda leticia mariana",
    "IN": "aarav vivaan aditya arjun rahul rohan amit vikram sanjay karan priya ananya diya isha"
    " pooja neha kavya sneha riya anjali",
    "JP": "haruto yuto sota yuki hiroshi takumi ren daiki kenta shota yui hina sakura aoi yuna mei"
    " rin miyu akari nanami",
}
_LAST_NAMES: dict[str, str] = {
    "US": "smith johnson williams brown jones garcia miller davis rodriguez martinez wilson"
    " anderson taylor moore jackson martin lee thompson white harris clark lewis walker young",
    "GB": "smith jones taylor brown williams wilson johnson davies robinson wright thompson evans"
    " walker white roberts green hall wood jackson clarke",
    "DE": "mueller schmidt schneider fischer weber meyer wagner becker schulz hoffmann schaefer"
    " koch bauer richter klein wolf schroeder neumann schwarz zimmermann",
    "FR": "martin bernard dubois thomas robert richard petit durand leroy moreau simon laurent"
    " lefebvre michel garcia david bertrand roux vincent fournier",
    "BR": "silva santos oliveira souza rodrigues ferreira alves pereira lima gomes costa ribeiro"
    " martins carvalho almeida lopes soares fernandes vieira barbosa",
    "IN": "sharma verma gupta singh kumar patel shah reddy iyer nair mehta joshi agarwal rao das"
    " bose chopra malhotra kapoor mishra",
    "JP": "sato suzuki takahashi tanaka watanabe ito yamamoto nakamura kobayashi kato yoshida"
    " yamada sasaki yamaguchi matsumoto inoue kimura hayashi shimizu mori",
}

# Webmail everywhere, local providers per country, and made-up company domains (work e-mails).
_COMPANY_DOMAINS = (
    ("acme-corp.com", 1.5), ("globex.io", 1.0), ("initech.com", 1.0),
    ("northwind-traders.com", 1.0), ("hooli.xyz", 0.5), ("umbrella-group.net", 0.5),
)  # fmt: skip
_DOMAINS: dict[str, tuple[tuple[str, float], ...]] = {
    "US": (
        ("gmail.com", 40), ("yahoo.com", 12), ("outlook.com", 8), ("hotmail.com", 7),
        ("icloud.com", 9), ("aol.com", 3), ("comcast.net", 2), *_COMPANY_DOMAINS,
    ),
    "GB": (
        ("gmail.com", 35), ("hotmail.co.uk", 12), ("yahoo.co.uk", 8), ("outlook.com", 8),
        ("btinternet.com", 5), ("icloud.com", 7), ("sky.com", 3), *_COMPANY_DOMAINS,
    ),
    "DE": (
        ("gmail.com", 25), ("gmx.de", 20), ("web.de", 18), ("t-online.de", 8),
        ("outlook.de", 5), ("yahoo.de", 4), *_COMPANY_DOMAINS,
    ),
    "FR": (
        ("gmail.com", 35), ("orange.fr", 14), ("free.fr", 9), ("hotmail.fr", 10),
        ("laposte.net", 6), ("sfr.fr", 5), ("yahoo.fr", 5), *_COMPANY_DOMAINS,
    ),
    "BR": (
        ("gmail.com", 55), ("hotmail.com", 15), ("outlook.com", 6), ("yahoo.com.br", 7),
        ("uol.com.br", 5), ("bol.com.br", 3), *_COMPANY_DOMAINS,
    ),
    "IN": (
        ("gmail.com", 65), ("yahoo.co.in", 10), ("rediffmail.com", 6), ("outlook.com", 6),
        ("hotmail.com", 4), *_COMPANY_DOMAINS,
    ),
    "JP": (
        ("gmail.com", 35), ("yahoo.co.jp", 20), ("docomo.ne.jp", 10), ("ezweb.ne.jp", 6),
        ("icloud.com", 12), ("outlook.jp", 4), *_COMPANY_DOMAINS,
    ),
}  # fmt: skip
_TAGS = ("news", "shop", "tiktok", "promo", "work", "ads", "deals", "2024")

# Local-part styles: (part A, separator, part B, separator before the number, weight).
# A/B: 0 = first name, 1 = first initial, 2 = last name, 3 = nothing.
_STYLES: tuple[tuple[int, str, int, str, float], ...] = (
    (0, ".", 2, "", 22),  # john.smith12
    (0, "", 2, "", 20),  # johnsmith12
    (1, ".", 2, "", 10),  # j.smith12
    (0, "_", 2, "", 8),  # john_smith12
    (0, "", 3, "", 12),  # john12
    (2, ".", 0, "", 8),  # smith.john12
    (0, ".", 2, ".", 8),  # john.smith.12
    (1, "", 2, "", 12),  # jsmith12
)


@dataclass(frozen=True)
class SimPlatform:
    """A generated platform: ``users`` (import format) and ``truth`` (row-aligned canonical forms).

    ``truth`` columns: ``user_id``, ``email_norm`` (trim, lowercase, ``+tag`` and local-part dots
    removed), ``email_basic`` (trim + lowercase), ``phone_e164`` (``+<cc><nsn>``), ``maid``
    (lowercase IDFA or GAID). Null where the user has no such identifier.
    """

    users: pa.Table
    truth: pa.Table


# --------------------------------------------------------------------------- small helpers


def _weights(pairs: Sequence[tuple[str, float]]) -> tuple[list[str], np.ndarray]:
    names = [p[0] for p in pairs]
    w = np.array([p[1] for p in pairs], dtype=np.float64)
    return names, w / w.sum()


def _per_country_codes(
    rng: np.random.Generator,
    country_idx: np.ndarray,
    table: dict[str, tuple[tuple[str, float], ...]],
) -> tuple[np.ndarray, list[str]]:
    """For each row draw a value from its country's weighted list, one vectorised draw per
    country; returns codes into the returned vocabulary."""
    vocab: list[str] = []
    codes = np.empty(len(country_idx), dtype=np.int32)
    for c, code in enumerate(COUNTRIES):
        rows = np.flatnonzero(country_idx == c)
        names, p = _weights(table[code])
        codes[rows] = len(vocab) + rng.choice(len(names), size=len(rows), p=p)
        vocab.extend(names)
    return codes, vocab


def _per_country_choice(
    rng: np.random.Generator,
    country_idx: np.ndarray,
    table: dict[str, tuple[tuple[str, float], ...]],
) -> pa.Array:
    """Like :func:`_per_country_codes`, as a string array."""
    codes, vocab = _per_country_codes(rng, country_idx, table)
    return pa.array(vocab, pa.string()).take(pa.array(codes))


# --------------------------------------------------------------------------- e-mails


@functools.cache
def _local_parts() -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """Every (country, first name, last name, style) local part before the number, as typed and
    normalised, plus per-country offsets and pool sizes to index them without a per-row loop.

    A few tens of thousands of strings, built once; rows then pick theirs with one ``take``.
    """
    typed: list[str] = []
    normal: list[str] = []
    offsets, n_first, n_last = [], [], []
    for code in COUNTRIES:
        firsts, lasts = _FIRST_NAMES[code].split(), _LAST_NAMES[code].split()
        offsets.append(len(typed))
        n_first.append(len(firsts))
        n_last.append(len(lasts))
        for first in firsts:
            for last in lasts:
                for a, sep, b, sep_num, _ in _STYLES:
                    part = {0: first, 1: first[0], 2: last, 3: ""}
                    typed.append(part[a] + sep + part[b] + sep_num)
                    normal.append(part[a] + sep.replace(".", "") + part[b])
    return (
        pa.array(typed, pa.string()),
        pa.array(normal, pa.string()),
        np.array(offsets, dtype=np.int64),
        np.array(n_first, dtype=np.int64),
        np.array(n_last, dtype=np.int64),
    )


def make_emails(
    rng: np.random.Generator,
    country_idx: np.ndarray,
    number: np.ndarray,
    *,
    tag_rate: float = 0.06,
) -> tuple[pa.Array, pa.Array]:
    """Build ``(email_basic, email_norm)`` for people of the given countries.

    ``number`` is the digit suffix of the local part; distinct positive numbers give distinct
    normalised e-mails whatever the names (names contain no digits). Basic forms are lowercase
    with the dots and ``+tag`` a person would type; see :func:`dirty_emails` for the casing.
    """
    m = len(country_idx)
    typed, normal, offsets, n_first, n_last = _local_parts()
    ci = np.asarray(country_idx, dtype=np.int64)
    style_w = np.array([s[4] for s in _STYLES], dtype=np.float64)
    style = rng.choice(len(_STYLES), size=m, p=style_w / style_w.sum())
    first = (rng.random(m) * n_first[ci]).astype(np.int64)
    last = (rng.random(m) * n_last[ci]).astype(np.int64)
    combo = pa.array(offsets[ci] + (first * n_last[ci] + last) * len(_STYLES) + style)
    num = pc.cast(pa.array(np.asarray(number, dtype=np.int64)), pa.string())
    has_tag = rng.random(m) < tag_rate
    tags = pa.array(["+" + t for t in _TAGS] + [""], pa.string())
    tag = tags.take(pa.array(np.where(has_tag, rng.integers(0, len(_TAGS), size=m), len(_TAGS))))
    domain = _per_country_choice(rng, country_idx, _DOMAINS)
    # One join per form: each join is a full pass over the strings.
    basic = pc.binary_join_element_wise(typed.take(combo), num, tag, "@", domain, "")
    norm = pc.binary_join_element_wise(normal.take(combo), num, "@", domain, "")
    return basic, norm


def dirty_emails(
    rng: np.random.Generator, emails: pa.Array, *, space_rate: float = 0.03
) -> pa.Array:
    """Re-case and pad e-mails the way people type them; trim + lowercase undoes all of it."""
    m = len(emails)
    form = rng.choice(4, size=m, p=[0.72, 0.12, 0.10, 0.06])
    pad = rng.choice(4, size=m, p=[1 - space_rate, space_rate / 3, space_rate / 3, space_rate / 3])
    changed = (form > 0) | (pad > 0)
    if not changed.any():
        return emails
    # Work on the ~30% of rows that change, then patch them in with one linear pass.
    sub = emails.filter(pa.array(changed))
    sub_form = form[changed]
    for f, fn in ((1, pc.utf8_capitalize), (2, pc.utf8_title), (3, pc.utf8_upper)):
        mask = sub_form == f
        if mask.any():
            sub = pc.replace_with_mask(sub, pa.array(mask), fn(sub.filter(pa.array(mask))))
    sub_pad = pa.array(pad[changed])
    before = pa.array(["", " ", "", "  "], pa.string()).take(sub_pad)
    after = pa.array(["", "", " ", " "], pa.string()).take(sub_pad)
    sub = pc.binary_join_element_wise(before, sub, after, "")
    return pc.replace_with_mask(emails, pa.array(changed), sub)


# --------------------------------------------------------------------------- device ids

_HEX_LOWER = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Byte map that upper-cases a-f and leaves everything else alone.
_TO_UPPER = np.arange(256, dtype=np.uint8)
_TO_UPPER[ord("a") : ord("f") + 1] -= 32
# Two hex digits per byte value as one uint16, for byte-wise hex formatting (a 2-byte gather
# is several times faster than indexing a (256, 2) table).
_HEX_PAIRS = (
    np.stack([_HEX_LOWER[np.arange(256) >> 4], _HEX_LOWER[np.arange(256) & 15]], axis=1)
    .view(np.uint16)
    .ravel()
)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 output step: a bijection on uint64, so distinct inputs give distinct outputs
    (the added constant keeps 0 from mapping to 0)."""
    z = x.astype(np.uint64, copy=True)
    z += np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def _hex(values: np.ndarray) -> np.ndarray:
    """``(m, 16)`` lowercase hex digits of uint64 values, most significant first."""
    as_bytes = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    return _HEX_PAIRS[as_bytes].view(np.uint8).reshape(-1, 16)


def make_device_ids(
    rng: np.random.Generator, unique_key: np.ndarray, upper: np.ndarray
) -> tuple[pa.StringArray, pa.StringArray]:
    """UUIDv4-shaped ids as ``(as_written, lowercase)``.

    ``unique_key`` (distinct uint64 per id) is mixed bijectively into 16 of the hex digits, so ids
    are unique by construction; the other digits are random. ``upper`` marks ids written in
    upper case (IDFA are usually upper case, GAID lower case).
    """
    m = len(unique_key)
    u = _hex(_splitmix64(np.asarray(unique_key, dtype=np.uint64)))
    r = _hex(rng.integers(0, 2**63, size=m, dtype=np.int64).astype(np.uint64))
    chars = np.empty((m, 36), dtype=np.uint8)
    # 8-4-4-4-12: version "4" at 14, variant 8/9/a/b at 19; u's 16 digits keep ids unique.
    chars[:, 0:8] = u[:, 0:8]
    chars[:, 9:13] = u[:, 8:12]
    chars[:, 14] = ord("4")
    chars[:, 15:18] = u[:, 12:15]
    chars[:, 19] = _HEX_LOWER[8 + (r[:, 15] & 3)]
    chars[:, 20] = u[:, 15]
    chars[:, 21:23] = r[:, 0:2]
    chars[:, 24:36] = r[:, 2:14]
    chars[:, [8, 13, 18, 23]] = ord("-")
    lower = fixed_width_strings(chars)  # references ``chars``; copy before changing case
    written = chars.copy()
    rows = np.flatnonzero(upper)
    written[rows] = _TO_UPPER[written[rows]]
    return fixed_width_strings(written), lower


# --------------------------------------------------------------------------- users

# Rows per generation chunk. Chunking keeps temporaries small and re-used, which matters on VMs
# where touching fresh memory is slow; it is part of the seeded output, so do not change lightly.
_CHUNK_ROWS = 1 << 20

USER_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("email", pa.string()),
        ("phone", pa.string()),
        ("idfa", pa.string()),
        ("gaid", pa.string()),
        ("country", pa.string()),
        ("region", pa.string()),
        ("age", pa.int32()),
        ("gender", pa.string()),
        ("language", pa.string()),
        ("os", pa.string()),
        ("personalized_ads", pa.bool_()),
    ]
)
TRUTH_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("email_norm", pa.string()),
        ("email_basic", pa.string()),
        ("phone_e164", pa.string()),
        ("maid", pa.string()),
    ]
)


@dataclass(frozen=True)
class _Rates:
    optout: float
    email_null: float
    phone_null: float
    device_null: float
    phone_international: float


@dataclass
class _Globals:
    """What must hold across chunks: the bijections that make identifiers unique."""

    n: int
    seed: int
    numbers: NumberAllocator
    email_affine: tuple[int, int]
    device_offset: int
    id_width: int


def generate_platform(
    n: int,
    *,
    seed: int = 0,
    optout_rate: float = 0.03,
    email_null_rate: float = 0.10,
    phone_null_rate: float = 0.15,
    device_null_rate: float = 0.20,
    phone_international_rate: float = 0.10,
) -> SimPlatform:
    """Generate ``n`` users and their ground truth; same arguments -> identical tables.

    Rows are built in chunks of 2^20, each from its own ``SeedSequence(seed, spawn_key=(i,))``;
    only the identifier bijections span chunks. The tables' columns are chunked accordingly.
    """
    rates = _Rates(
        optout_rate, email_null_rate, phone_null_rate, device_null_rate, phone_international_rate
    )
    users, truth = _generate(n, seed, rates, with_truth=True)
    assert truth is not None
    return SimPlatform(users=users, truth=truth)


def generate_users(n: int, *, seed: int = 0, optout_rate: float = 0.03) -> pa.Table:
    """``n`` platform users in the import format (columns :data:`USER_COLUMNS`).

    Identical to ``generate_platform(n, seed=seed, optout_rate=optout_rate).users`` but skips the
    ground truth; get it later with :func:`ground_truth_identifiers`.
    """
    rates = _Rates(optout_rate, 0.10, 0.15, 0.20, 0.10)
    return _generate(n, seed, rates, with_truth=False)[0]


def _generate(
    n: int, seed: int, rates: _Rates, *, with_truth: bool
) -> tuple[pa.Table, pa.Table | None]:
    if not 0 <= n < 10**9:
        # Customer files rely on user e-mail numbers being < 10^9 (see customer_file.py).
        raise ValueError("n must be within [0, 10^9)")
    for name, rate in vars(rates).items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} rate must be within [0, 1]")
    setup = np.random.default_rng([seed, 0x5EED])
    g = _Globals(
        n=n,
        seed=seed,
        numbers=NumberAllocator(seed),
        email_affine=affine_bijection(max(n, 1), setup),
        device_offset=int(setup.integers(0, 2**62)),
        id_width=max(8, len(str(n))),
    )
    user_batches: list[pa.RecordBatch] = []
    truth_batches: list[pa.RecordBatch] = []
    for chunk, start in enumerate(range(0, n, _CHUNK_ROWS)):
        stop = min(start + _CHUNK_ROWS, n)
        u, t = _generate_chunk(g, rates, chunk, start, stop, with_truth=with_truth)
        user_batches.append(u)
        if t is not None:
            truth_batches.append(t)
    users = pa.Table.from_batches(user_batches, schema=USER_SCHEMA)
    truth = pa.Table.from_batches(truth_batches, schema=TRUTH_SCHEMA) if with_truth else None
    return users, truth


def _generate_chunk(
    g: _Globals, rates: _Rates, chunk: int, start: int, stop: int, *, with_truth: bool
) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    m = stop - start
    # One stream per column family: changing how one family is drawn leaves the others alone.
    seq = np.random.SeedSequence(g.seed, spawn_key=(chunk,))
    r_demo, r_email, r_phone, r_device, r_consent = (np.random.default_rng(s) for s in seq.spawn(5))
    row = np.arange(start, stop, dtype=np.int64)

    country_w = np.array(_COUNTRY_WEIGHTS)
    country_idx = r_demo.choice(len(COUNTRIES), size=m, p=country_w / country_w.sum())
    country = pa.array(list(COUNTRIES), pa.string()).take(pa.array(country_idx))
    region_codes, region_names = _per_country_codes(r_demo, country_idx, _REGIONS)
    region = pa.array(region_names, pa.string()).take(pa.array(region_codes))
    young = r_demo.random(m) < 0.65
    age_f = np.where(young, r_demo.normal(24.0, 6.0, m), r_demo.uniform(18.0, 81.0, m))
    age = np.clip(np.floor(age_f), 13, 80).astype(np.int32)
    gender = pa.array(["male", "female", "unknown"], pa.string()).take(
        pa.array(r_demo.choice(3, size=m, p=[0.47, 0.47, 0.06]))
    )
    language = _per_country_choice(r_demo, country_idx, _LANGUAGES)
    is_ios = r_demo.random(m) < np.asarray(_IOS_SHARE)[country_idx]
    os_col = pa.array(["android", "ios"], pa.string()).take(pa.array(is_ios.astype(np.int8)))
    personalized = r_consent.random(m) >= rates.optout
    user_id = format_nsn(row + 1, g.id_width, "u" + "#" * g.id_width)

    # E-mails: the number suffix is a bijection of the row number, the uniqueness key.
    has_email = np.flatnonzero(r_email.random(m) >= rates.email_null)
    a, b = g.email_affine
    number = (row[has_email] * a + b) % max(g.n, 1) + 1
    basic, norm = make_emails(r_email, country_idx[has_email], number)
    email = scatter([(has_email, dirty_emails(r_email, basic))], m)

    # Phones: distinct per country, area code following the region where the plan has them.
    has_phone = r_phone.random(m) >= rates.phone_null
    nsn = np.zeros(m, dtype=np.int64)
    for c, code in enumerate(COUNTRIES):
        rows = np.flatnonzero((country_idx == c) & has_phone)
        nsn[rows] = g.numbers.allocate(PHONE_PLANS[code], region_codes[rows], region_names)
    phone_country = np.where(has_phone, country_idx, -1)
    phone = render_phones(r_phone, phone_country, nsn, rates.phone_international)

    # Device ids: one per user of the OS's kind, unique via the row number.
    has_device = np.flatnonzero(r_device.random(m) >= rates.device_null)
    flip = r_device.random(len(has_device)) < 0.15  # the less usual case for the OS
    upper = is_ios[has_device] ^ flip
    key = (row[has_device] + g.device_offset).astype(np.uint64)
    written, lower = make_device_ids(r_device, key, upper)
    ios_pos = np.flatnonzero(is_ios[has_device])
    android_pos = np.flatnonzero(~is_ios[has_device])
    idfa = scatter([(has_device[ios_pos], written.take(pa.array(ios_pos)))], m)
    gaid = scatter([(has_device[android_pos], written.take(pa.array(android_pos)))], m)

    users = pa.RecordBatch.from_arrays(
        [
            user_id,
            email,
            phone,
            idfa,
            gaid,
            country,
            region,
            pa.array(age, pa.int32()),
            gender,
            language,
            os_col,
            pa.array(personalized, pa.bool_()),
        ],
        schema=USER_SCHEMA,
    )
    if not with_truth:
        return users, None
    truth = pa.RecordBatch.from_arrays(
        [
            user_id,
            scatter([(has_email, norm)], m),
            scatter([(has_email, basic)], m),
            _e164_column(country_idx, nsn, has_phone),
            scatter([(has_device, lower)], m),
        ],
        schema=TRUTH_SCHEMA,
    )
    return users, truth


def _e164_column(country_idx: np.ndarray, nsn: np.ndarray, has_phone: np.ndarray) -> pa.Array:
    """``+<cc><nsn>`` per row, null without a phone. NSNs never start with 0 (no prefix does),
    so the plain integer-to-string cast writes every digit."""
    cc = pa.array(["+" + PHONE_PLANS[c].calling_code for c in COUNTRIES], pa.string())
    digits = pc.cast(pa.array(nsn, mask=~has_phone), pa.string())
    return pc.binary_join_element_wise(cc.take(pa.array(country_idx)), digits, "")


def ground_truth_identifiers(users: pa.Table) -> pa.Table:
    """Canonical identifiers of a table made by :func:`generate_users` (also after slicing,
    filtering or a CSV/Parquet round trip), row-aligned with it.

    Same columns as :attr:`SimPlatform.truth`. This relies on what the sim knows about its own
    output (every phone keeps the full NSN as its last digits, NSNs have one length per country)
    and is not a general normaliser: it is the sim's ground truth, kept independent of
    ``likewise.identity`` on purpose.
    """
    batches = [_truth_of(b) for b in users.select(list(USER_COLUMNS)).to_batches()]
    return pa.Table.from_batches(batches, schema=TRUTH_SCHEMA)


def _truth_of(users: pa.RecordBatch) -> pa.RecordBatch:
    n = users.num_rows
    email = users.column("email")
    basic = pc.utf8_lower(pc.utf8_trim_whitespace(email))
    parts = pc.extract_regex(basic, r"^(?P<local>[^@+]*)(?:\+[^@]*)?@(?P<domain>.*)$")
    local = pc.replace_substring(pc.struct_field(parts, [0]), ".", "")
    norm = pc.binary_join_element_wise(local, pc.struct_field(parts, [1]), "@")
    norm = pc.if_else(pc.is_valid(parts), norm, pa.scalar(None, pa.string()))

    country = users.column("country")
    digits = pc.replace_substring_regex(users.column("phone"), r"[^0-9]", "")
    pieces: list[tuple[np.ndarray, pa.Array]] = []
    for code in COUNTRIES:
        plan = PHONE_PLANS[code]
        rows = np.flatnonzero(pc.fill_null(pc.equal(country, code), False).to_numpy(False))
        nsn = pc.utf8_slice_codeunits(digits.take(pa.array(rows)), -plan.nsn_length)
        pieces.append((rows, pc.binary_join_element_wise("+" + plan.calling_code, nsn, "")))
    e164 = scatter(pieces, n)

    device = pc.coalesce(users.column("idfa"), users.column("gaid"))
    return pa.RecordBatch.from_arrays(
        [users.column("user_id"), norm, basic, e164, pc.utf8_lower(device)],
        schema=TRUTH_SCHEMA,
    )
