"""Seeded synthetic platform users, in the import format of ``likewise users import``.

Everything is built column-wise with numpy and ``pyarrow.compute``; the only Python loops run
over countries, formats or styles (a handful each), never over users. 10M users fit in a few GB.

Identifiers are dirty the way real platform data is (mixed case, ``+tags``, dots, surrounding
spaces, national phone formats), yet every user's canonical forms are known by construction and
are unique across users:

* e-mail: the local part always ends with a per-user unique number ``k`` (a permutation of
  ``1..n``) and name parts never contain digits, so the fully normalised e-mail (trim, lowercase,
  drop ``+tag``, drop dots in the local part) is unique, hence so is the basic form;
* phone: numbers are drawn without repetition per country (see :mod:`likewise.sim.phones`);
* device id: 64 of its bits are a bijective mix of the row number, so no two users share one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likewise.sim.phones import (
    COUNTRIES,
    PHONE_PLANS,
    draw_nsn,
    e164_strings,
    fixed_width_strings,
    format_nsn,
    render_phones,
    scatter,
)

__all__ = [
    "USER_COLUMNS",
    "SimPlatform",
    "dirty_emails",
    "generate_platform",
    "generate_users",
    "ground_truth_identifiers",
    "make_device_ids",
    "make_emails",
]

USER_COLUMNS: tuple[str, ...] = (
    "user_id",
    "email",
    "phone",
    "idfa",
    "gaid",
    "country",
    "region",
    "age",
    "gender",
    "language",
    "os",
    "personalized_ads",
)

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


def _name_pool(
    country_idx: np.ndarray, rng: np.random.Generator, pools: dict[str, str]
) -> pa.Array:
    """Uniform draw from the country's name pool, vectorised via per-country offsets."""
    lists = [pools[c].split() for c in COUNTRIES]
    offsets = np.cumsum([0] + [len(x) for x in lists[:-1]])
    sizes = np.array([len(x) for x in lists])
    ci = np.asarray(country_idx, dtype=np.int64)
    idx = offsets[ci] + (rng.random(len(ci)) * sizes[ci]).astype(np.int64)
    return pa.array([w for x in lists for w in x], pa.string()).take(pa.array(idx))


# --------------------------------------------------------------------------- e-mails


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
    style_w = np.array([s[4] for s in _STYLES], dtype=np.float64)
    style = rng.choice(len(_STYLES), size=m, p=style_w / style_w.sum())
    first = _name_pool(country_idx, rng, _FIRST_NAMES)
    last = _name_pool(country_idx, rng, _LAST_NAMES)
    empty = pa.repeat(pa.scalar("", pa.string()), m)
    parts = (first, pc.utf8_slice_codeunits(first, 0, 1), last, empty)
    style_pa = pa.array(style)
    a_kind = pa.array([s[0] for s in _STYLES], pa.int8()).take(style_pa)
    b_kind = pa.array([s[2] for s in _STYLES], pa.int8()).take(style_pa)
    part_a, part_b = pc.choose(a_kind, *parts), pc.choose(b_kind, *parts)
    sep = pa.array([s[1] for s in _STYLES], pa.string()).take(style_pa)
    sep_norm = pa.array([s[1].replace(".", "") for s in _STYLES], pa.string()).take(style_pa)
    sep_num = pa.array([s[3] for s in _STYLES], pa.string()).take(style_pa)
    num = pc.cast(pa.array(np.asarray(number, dtype=np.int64)), pa.string())
    has_tag = rng.random(m) < tag_rate
    tags = pa.array(["+" + t for t in _TAGS] + [""], pa.string())
    tag_idx = np.where(has_tag, rng.integers(0, len(_TAGS), size=m), len(_TAGS))
    tag = tags.take(pa.array(tag_idx))
    domain = _per_country_choice(rng, country_idx, _DOMAINS)
    local_basic = pc.binary_join_element_wise(part_a, sep, part_b, sep_num, num, tag, "")
    local_norm = pc.binary_join_element_wise(part_a, sep_norm, part_b, num, "")
    basic = pc.binary_join_element_wise(local_basic, domain, "@")
    norm = pc.binary_join_element_wise(local_norm, domain, "@")
    return basic, norm


def dirty_emails(
    rng: np.random.Generator, emails: pa.Array, *, space_rate: float = 0.03
) -> pa.Array:
    """Re-case and pad e-mails the way people type them; trim + lowercase undoes all of it."""
    m = len(emails)
    form = rng.choice(4, size=m, p=[0.72, 0.12, 0.10, 0.06])
    pieces: list[tuple[np.ndarray, pa.Array]] = []
    for f, fn in enumerate((None, pc.utf8_capitalize, pc.utf8_title, pc.utf8_upper)):
        rows = np.flatnonzero(form == f)
        sub = emails.take(pa.array(rows))
        pieces.append((rows, sub if fn is None else fn(sub)))
    out = scatter(pieces, m)
    pad = rng.choice(4, size=m, p=[1 - space_rate, space_rate / 3, space_rate / 3, space_rate / 3])
    before = pa.array(["", " ", "", "  "], pa.string()).take(pa.array(pad))
    after = pa.array(["", "", " ", " "], pa.string()).take(pa.array(pad))
    return pc.binary_join_element_wise(before, out, after, "")


# --------------------------------------------------------------------------- device ids

_HEX_LOWER = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Byte map that upper-cases a-f and leaves everything else alone.
_TO_UPPER = np.arange(256, dtype=np.uint8)
_TO_UPPER[ord("a") : ord("f") + 1] -= 32


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijection on uint64, so distinct inputs give distinct outputs."""
    z = x.astype(np.uint64, copy=True)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def make_device_ids(
    rng: np.random.Generator, unique_key: np.ndarray, upper: np.ndarray
) -> tuple[pa.StringArray, pa.StringArray]:
    """UUIDv4-shaped ids as ``(as_written, lowercase)``.

    ``unique_key`` (distinct uint64 per id) is mixed bijectively into 16 of the hex digits, so ids
    are unique by construction; the other digits are random. ``upper`` marks ids written in
    upper case (IDFA are usually upper case, GAID lower case).
    """
    m = len(unique_key)
    mixed = _splitmix64(np.asarray(unique_key, dtype=np.uint64))
    hex_pos = np.empty(32, dtype=np.int64)  # column of each of the 32 hex digits in the 36 chars
    hex_pos[:] = [i + (i >= 8) + (i >= 12) + (i >= 16) + (i >= 20) for i in range(32)]
    chars = np.empty((m, 36), dtype=np.uint8)
    chars[:, [8, 13, 18, 23]] = ord("-")
    unique_digits = [*range(12), 13, 14, 15, 17]  # 16 digits, skipping version and variant
    for j, digit in enumerate(unique_digits):
        shift = np.uint64(60 - 4 * j)
        chars[:, hex_pos[digit]] = _HEX_LOWER[((mixed >> shift) & np.uint64(0xF)).astype(np.intp)]
    chars[:, hex_pos[12]] = ord("4")  # version 4
    chars[:, hex_pos[16]] = _HEX_LOWER[8 + rng.integers(0, 4, size=m)]  # variant 10xx
    random_digits = rng.integers(0, 16, size=(m, 14), dtype=np.uint8)
    chars[:, hex_pos[18:]] = _HEX_LOWER[random_digits]
    lower = fixed_width_strings(chars)  # references ``chars``; copy before changing case
    written = chars.copy()
    rows = np.flatnonzero(upper)
    written[rows] = _TO_UPPER[written[rows]]
    return fixed_width_strings(written), lower


# --------------------------------------------------------------------------- users


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
    """Generate ``n`` users and their ground truth; same ``seed`` -> identical tables.

    Each column family draws from its own child of ``SeedSequence(seed)``, so tuning one family
    leaves the others unchanged.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    r_demo, r_email, r_phone, r_device, r_consent, r_perm = streams

    country_w = np.array(_COUNTRY_WEIGHTS)
    country_idx = r_demo.choice(len(COUNTRIES), size=n, p=country_w / country_w.sum())
    country = pa.array(list(COUNTRIES), pa.string()).take(pa.array(country_idx))
    region_codes, region_names = _per_country_codes(r_demo, country_idx, _REGIONS)
    region = pa.array(region_names, pa.string()).take(pa.array(region_codes))
    young = r_demo.random(n) < 0.65
    age_f = np.where(young, r_demo.normal(24.0, 6.0, n), r_demo.uniform(18.0, 81.0, n))
    age = np.clip(np.floor(age_f), 13, 80).astype(np.int32)
    gender = pa.array(["male", "female", "unknown"], pa.string()).take(
        pa.array(r_demo.choice(3, size=n, p=[0.47, 0.47, 0.06]))
    )
    language = _per_country_choice(r_demo, country_idx, _LANGUAGES)
    is_ios = r_demo.random(n) < np.asarray(_IOS_SHARE)[country_idx]
    os_col = pa.array(["android", "ios"], pa.string()).take(pa.array(is_ios.astype(np.int8)))
    personalized = r_consent.random(n) >= optout_rate
    width = max(8, len(str(n)))
    user_id = format_nsn(np.arange(1, n + 1, dtype=np.int64), width, "u" + "#" * width)

    # E-mails: number suffix = a permutation of 1..n, the uniqueness key.
    has_email = np.flatnonzero(r_email.random(n) >= email_null_rate)
    number = r_perm.permutation(n)[has_email] + 1
    basic, norm = make_emails(r_email, country_idx[has_email], number)
    raw = dirty_emails(r_email, basic)
    email = scatter([(has_email, raw)], n)
    email_basic = scatter([(has_email, basic)], n)
    email_norm = scatter([(has_email, norm)], n)

    # Phones: distinct per country, area code following the region where the plan has them.
    has_phone = r_phone.random(n) >= phone_null_rate
    nsn = np.full(n, -1, dtype=np.int64)
    e164_pieces: list[tuple[np.ndarray, pa.Array]] = []
    for c, code in enumerate(COUNTRIES):
        rows = np.flatnonzero((country_idx == c) & has_phone)
        plan = PHONE_PLANS[code]
        nsn[rows] = draw_nsn(
            r_phone, plan, len(rows), region_codes=region_codes[rows], region_names=region_names
        )
        e164_pieces.append((rows, e164_strings(nsn[rows], plan)))
    phone_country = np.where(has_phone, country_idx, -1)
    phone = render_phones(r_phone, phone_country, nsn, phone_international_rate)
    phone_e164 = scatter(e164_pieces, n)

    # Device ids: one per user of the OS's kind, unique via the row number.
    has_device = np.flatnonzero(r_device.random(n) >= device_null_rate)
    flip = r_device.random(len(has_device)) < 0.15  # the less usual case for the OS
    upper = is_ios[has_device] ^ flip
    key = has_device.astype(np.uint64) + np.uint64(r_device.integers(0, 2**63))
    written, lower = make_device_ids(r_device, key, upper)
    ios_pos = np.flatnonzero(is_ios[has_device])
    android_pos = np.flatnonzero(~is_ios[has_device])
    idfa = scatter([(has_device[ios_pos], written.take(pa.array(ios_pos)))], n)
    gaid = scatter([(has_device[android_pos], written.take(pa.array(android_pos)))], n)
    maid = scatter([(has_device, lower)], n)

    users = pa.table(
        {
            "user_id": user_id,
            "email": email,
            "phone": phone,
            "idfa": idfa,
            "gaid": gaid,
            "country": country,
            "region": region,
            "age": pa.array(age, pa.int32()),
            "gender": gender,
            "language": language,
            "os": os_col,
            "personalized_ads": pa.array(personalized, pa.bool_()),
        }
    )
    truth = pa.table(
        {
            "user_id": user_id,
            "email_norm": email_norm,
            "email_basic": email_basic,
            "phone_e164": phone_e164,
            "maid": maid,
        }
    )
    return SimPlatform(users=users, truth=truth)


def generate_users(n: int, *, seed: int = 0, optout_rate: float = 0.03) -> pa.Table:
    """``n`` platform users in the import format (columns :data:`USER_COLUMNS`).

    Use :func:`generate_platform` to also get the ground truth built alongside, or
    :func:`ground_truth_identifiers` to derive it from this table later.
    """
    return generate_platform(n, seed=seed, optout_rate=optout_rate).users


def ground_truth_identifiers(users: pa.Table) -> pa.Table:
    """Canonical identifiers of a table made by :func:`generate_users` (also after slicing,
    filtering or a CSV/Parquet round trip), row-aligned with it.

    Same columns as :attr:`SimPlatform.truth`. This relies on what the sim knows about its own
    output (every phone keeps the full NSN as its last digits, NSNs have one length per country)
    and is not a general normaliser: it is the sim's ground truth, kept independent of
    ``likewise.identity`` on purpose.
    """
    n = users.num_rows
    email = users.column("email").combine_chunks()
    basic = pc.utf8_lower(pc.utf8_trim_whitespace(email))
    parts = pc.extract_regex(basic, r"^(?P<local>[^@+]*)(?:\+[^@]*)?@(?P<domain>.*)$")
    local = pc.replace_substring(pc.struct_field(parts, [0]), ".", "")
    norm = pc.binary_join_element_wise(local, pc.struct_field(parts, [1]), "@")
    norm = pc.if_else(pc.is_valid(parts), norm, pa.scalar(None, pa.string()))

    phone = users.column("phone").combine_chunks()
    country = users.column("country").combine_chunks()
    digits = pc.replace_substring_regex(phone, r"[^0-9]", "")
    pieces: list[tuple[np.ndarray, pa.Array]] = []
    for code in COUNTRIES:
        plan = PHONE_PLANS[code]
        rows = np.flatnonzero(pc.fill_null(pc.equal(country, code), False).to_numpy(False))
        nsn = pc.utf8_slice_codeunits(digits.take(pa.array(rows)), -plan.nsn_length)
        pieces.append((rows, pc.binary_join_element_wise("+" + plan.calling_code, nsn, "")))
    e164 = scatter(pieces, n)

    idfa, gaid = (users.column(c).combine_chunks() for c in ("idfa", "gaid"))
    device = pc.coalesce(idfa, gaid)
    return pa.table(
        {
            "user_id": users.column("user_id").combine_chunks(),
            "email_norm": norm,
            "email_basic": basic,
            "phone_e164": e164,
            "maid": pc.utf8_lower(device),
        }
    )
