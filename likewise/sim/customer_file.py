"""Seeded advertiser customer files with the answer key attached.

A file mixes four kinds of rows, shuffled together:

* **matched** customers: distinct platform users, each written in one of the documented forms
  (raw and dirty, or hashed over a documented normalisation);
* **fresh** customers nobody on the platform has (phones are checked against the users' numbers;
  e-mails and device ids cannot collide by construction, see :func:`_fresh_emails`);
* **duplicates**: an earlier customer again, as an exact copy of the line or in another form;
* **invalid** rows no server may accept ("not-an-email", "12", a 63-hex-digit "hash", ...).

``expected_users`` are the matched users (row indices into ``users``), ``expected_cover_num`` those
of them who allow personalised ads, and ``expected_rejected`` the number of invalid rows. Hashes
are computed here (DuckDB for large batches, hashlib for small ones), never by the package's own
normalisers, and the answer key comes from the sim's ground truth, not from matching.

Rows are generated in chunks of 2^20 (each shuffled on its own), so memory stays bounded and a
10M-row file takes seconds.

What counts as valid is the TikTok customer-file rule set (``shared/reference/TIKTOK_API.md``
2.1-2.3): e-mail matches after trim + lowercase, ``+tag`` and local-part dots removed, or its
SHA-256 over the trim + lowercase form or over the full form; phones are raw (national format only
for the advertiser's own country, parsed with it as the default region) or SHA-256 of the E.164
with and without ``+``; device ids are raw in either case or MD5/SHA-256 over either case.
MULTIPLE_TYPES rows match when any field does; invalid rows there have no valid field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likewise.sim.phones import (
    COUNTRIES,
    PHONE_PLANS,
    draw_nsn,
    fixed_width_strings,
    render_phones,
    scatter,
)
from likewise.sim.users import dirty_emails, ground_truth_identifiers, make_device_ids, make_emails

__all__ = ["CALCULATE_TYPES", "MULTI_HEADERS", "CustomerFile", "generate_customer_file"]

# calculate_type -> (identifier kind, hash algorithm of the hashed rows).
CALCULATE_TYPES: dict[str, tuple[str, str]] = {
    "EMAIL_SHA256": ("email", "sha256"),
    "PHONE_SHA256": ("phone", "sha256"),
    "IDFA_SHA256": ("idfa", "sha256"),
    "IDFA_MD5": ("idfa", "md5"),
    "GAID_SHA256": ("gaid", "sha256"),
    "GAID_MD5": ("gaid", "md5"),
    "FIRST_SHA256": ("maid", "sha256"),
    "FIRST_MD5": ("maid", "md5"),
    "MAID_SHA256": ("maid", "sha256"),
    "MAID_MD5": ("maid", "md5"),
    "MULTIPLE_TYPES": ("multiple", ""),
}

# MULTIPLE_TYPES header (case-insensitive) -> (identifier kind, which forms the column holds).
# Plain columns mix raw and hashed values; ``*_sha256`` / ``*_md5`` columns hold only hashes.
MULTI_HEADERS: dict[str, tuple[str, str]] = {
    "email": ("email", "mixed"),
    "email_sha256": ("email", "sha256"),
    "phone": ("phone", "mixed"),
    "phone_sha256": ("phone", "sha256"),
    "maid": ("maid", "mixed"),
    "maid_sha256": ("maid", "sha256"),
    "maid_md5": ("maid", "md5"),
}

# Header spellings the generator picks from when ``columns`` is not given.
_HEADER_CHOICES: dict[str, tuple[str, ...]] = {
    "email": ("email", "Email", "EMAIL", "email_sha256", "Email_SHA256"),
    "phone": ("phone", "Phone", "PHONE", "phone_sha256", "Phone_SHA256"),
    "maid": ("maid", "MAID", "Maid", "maid_sha256", "MAID_SHA256", "maid_md5", "MAID_MD5"),
}
_SINGLE_HEADERS: dict[str, tuple[str, ...]] = {
    "email": ("email", "Email", "EMAIL"),
    "phone": ("phone", "Phone", "PHONE"),
    "idfa": ("idfa", "IDFA", "maid", "MAID"),
    "gaid": ("gaid", "GAID", "maid", "MAID"),
    "maid": ("maid", "MAID", "Maid"),
}

# Unusable values per identifier kind, under any reasonable validator: no phone token is even a
# *possible* number in any region ("123-45" would be: five digits are a local number in GB/DE).
# ``<hex63>`` becomes random hex one digit short of SHA-256, ``<uuid35>`` a device id missing
# its last digit.
_INVALID: dict[str, tuple[str, ...]] = {
    "email": ("not-an-email", "12", "n/a", "john.doe@", "@gmail.com", "a@b@c.com", "<hex63>"),
    "phone": ("12", "n/a", "not-a-phone", "000", "+1", "12-3", "<hex63>"),
    "maid": ("12", "n/a", "not-a-maid", "ABCD-1234", "<uuid35>", "<hex63>"),
}
_TAGS = ("news", "shop", "promo", "ads")
_FRESH_COUNTRY_SHARE = 0.8  # fresh phones: this share in the advertiser's country


@dataclass(frozen=True, eq=False)
class CustomerFile:
    """One generated upload and what a compatible server must make of it.

    ``lines`` are the data rows without line ends, as a chunked string array (cheap at 10M rows;
    ``text_lines()`` gives Python strings); ``header`` is the header row's fields, if the file has
    one. ``expected_users`` are sorted, distinct row indices into the ``users`` table the file was
    made from; ``expected_cover_num`` counts those with ``personalized_ads``;
    ``expected_rejected`` is the number of rows without a single usable identifier.
    """

    calculate_type: str
    header: list[str] | None
    lines: pa.ChunkedArray
    expected_users: np.ndarray
    expected_cover_num: int
    expected_rejected: int
    advertiser_country: str

    @property
    def n_rows(self) -> int:
        """Data rows, header excluded."""
        return len(self.lines)

    def text_lines(self) -> list[str]:
        """The data rows as Python strings (for small files and tests)."""
        return [str(x) for x in self.lines.to_pylist()]

    def iter_bytes(self, chunk_rows: int = 1 << 20) -> Iterator[pa.Buffer | bytes]:
        """The file's bytes in chunks: UTF-8, ``\\n`` after every line, header first."""
        if self.header is not None:
            yield (",".join(self.header) + "\n").encode("utf-8")
        for part in self.lines.chunks:
            for start in range(0, len(part), chunk_rows):
                chunk = part.slice(start, chunk_rows)
                # line + "\n" + "": the values buffer between the first and last offsets is then
                # the exact text of the chunk, written without building Python strings.
                joined = pc.binary_join_element_wise(chunk, pa.scalar(""), "\n")
                offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)
                first, last = offsets[joined.offset], offsets[joined.offset + len(joined)]
                yield joined.buffers()[2].slice(int(first), int(last - first))

    def to_bytes(self) -> bytes:
        return b"".join(bytes(b) for b in self.iter_bytes())

    def write(self, path: str | Path) -> Path:
        """Write the CSV to ``path`` and return it."""
        out = Path(path)
        with out.open("wb") as fh:
            for chunk in self.iter_bytes():
                fh.write(chunk)
        return out

    def md5(self) -> str:
        """Hex MD5 of the file's bytes: the upload's ``file_signature``."""
        digest = hashlib.md5()
        for chunk in self.iter_bytes():
            digest.update(chunk)
        return digest.hexdigest()


# --------------------------------------------------------------------------- helpers


# Below this many values hashlib beats DuckDB's per-query overhead.
_HASHLIB_MAX = 2048
_duckdb: duckdb.DuckDBPyConnection | None = None


def _hash_hex(values: pa.Array, algo: str) -> pa.Array:
    """Lowercase hex SHA-256 / MD5 of each string (nulls stay null).

    Large inputs go through DuckDB (vectorised, multi-threaded, keeps row order); small ones
    through hashlib, which is faster than a query at that size.
    """
    global _duckdb
    if algo not in ("sha256", "md5"):
        raise ValueError(f"unknown hash {algo!r}")
    if len(values) <= _HASHLIB_MAX:
        fn = hashlib.sha256 if algo == "sha256" else hashlib.md5
        out = [None if v is None else fn(v.encode()).hexdigest() for v in values.to_pylist()]
        return pa.array(out, pa.string())
    if _duckdb is None:
        _duckdb = duckdb.connect()  # one in-memory database; a cursor per call is cheap
    cur = _duckdb.cursor()
    try:
        cur.register("sim_values", pa.table({"s": values}))
        result = cur.sql(f"SELECT {algo}(s) AS h FROM sim_values").to_arrow_table()
    finally:
        cur.close()
    return result.column("h").combine_chunks().cast(pa.string())


def _take(arr: pa.Array, rows: np.ndarray) -> pa.Array:
    return arr.take(pa.array(np.asarray(rows, dtype=np.int64)))


def _forms(rng: np.random.Generator, m: int, weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(w), size=m, p=w / w.sum())


def _hex_strings(rng: np.random.Generator, m: int, width: int) -> pa.StringArray:
    lut = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    return fixed_width_strings(lut[rng.integers(0, 16, size=(m, width))])


@dataclass
class _People:
    """Customers to write: canonical forms (null where absent) and the platform row, -1 if none."""

    user: np.ndarray
    email_basic: pa.Array
    email_norm: pa.Array
    phone_country: np.ndarray  # index into COUNTRIES, -1 = no phone
    phone_nsn: np.ndarray
    maid: pa.Array

    def take(self, rows: np.ndarray) -> _People:
        return _People(
            user=self.user[rows],
            email_basic=_take(self.email_basic, rows),
            email_norm=_take(self.email_norm, rows),
            phone_country=self.phone_country[rows],
            phone_nsn=self.phone_nsn[rows],
            maid=_take(self.maid, rows),
        )

    @staticmethod
    def concat(a: _People, b: _People) -> _People:
        return _People(
            user=np.concatenate([a.user, b.user]),
            email_basic=pa.concat_arrays([a.email_basic, b.email_basic]),
            email_norm=pa.concat_arrays([a.email_norm, b.email_norm]),
            phone_country=np.concatenate([a.phone_country, b.phone_country]),
            phone_nsn=np.concatenate([a.phone_nsn, b.phone_nsn]),
            maid=pa.concat_arrays([a.maid, b.maid]),
        )


def _phone_parts(e164: pa.Array, country: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Country index and NSN of each canonical phone (the sim's NSNs have one length per
    country, so the NSN is the tail of the E.164)."""
    m = len(e164)
    c_idx = np.full(m, -1, dtype=np.int64)
    nsn = np.zeros(m, dtype=np.int64)
    valid = e164.is_valid().to_numpy(zero_copy_only=False)
    for c, code in enumerate(COUNTRIES):
        eq = pc.fill_null(pc.equal(country, code), False).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(eq & valid)
        if len(rows) == 0:
            continue
        tail = pc.utf8_slice_codeunits(_take(e164, rows), -PHONE_PLANS[code].nsn_length)
        c_idx[rows] = c
        nsn[rows] = pc.cast(tail, pa.int64()).to_numpy()
    return c_idx, nsn


def _sorted_phone_keys(e164: pa.Array) -> np.ndarray:
    """Users' E.164 numbers as sorted ints, for fast "is this number taken" look-ups."""
    valid = pc.drop_null(e164)
    return np.sort(pc.cast(pc.utf8_slice_codeunits(valid, 1), pa.int64()).to_numpy())


# --------------------------------------------------------------------------- fresh customers


def _fresh_emails(rng: np.random.Generator, m: int) -> tuple[pa.Array, pa.Array]:
    """``m`` e-mails no platform user has.

    Sim users' e-mails end in a number <= the number of users (< 10^9, enforced by the users
    generator) and the number is what makes a normalised e-mail unique; fresh ones end in a
    10-digit number, so they can never equal a user's, whatever the names and domain.
    """
    country = rng.choice(len(COUNTRIES), size=m)
    return make_emails(rng, country, rng.integers(10**9, 10**10, size=m))


def _fresh_phones(
    rng: np.random.Generator, m: int, advertiser: int, taken: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``m`` distinct valid phones no user has, mostly in the advertiser's country."""
    country = np.where(
        rng.random(m) < _FRESH_COUNTRY_SHARE, advertiser, rng.choice(len(COUNTRIES), size=m)
    )
    nsn = np.zeros(m, dtype=np.int64)
    for c, code in enumerate(COUNTRIES):
        plan = PHONE_PLANS[code]
        rows = np.flatnonzero(country == c)
        if len(rows) == 0:
            continue
        cc = int(plan.calling_code) * 10**plan.nsn_length
        # Users' numbers of this country, as NSNs, to exclude while drawing.
        lo, hi = np.searchsorted(taken, [cc, cc + 10**plan.nsn_length])
        nsn[rows] = draw_nsn(rng, plan, len(rows), exclude=taken[lo:hi] - cc)
    return country, nsn


def _fresh_maids(rng: np.random.Generator, m: int) -> pa.Array:
    """Random v4-shaped ids (122 random bits). Not checked against the users: the chance that
    10M fresh ids hit one of 10M users' is about 10^14 / 2^122, i.e. 2e-23."""
    key = rng.integers(0, 2**63, size=m, dtype=np.int64).astype(np.uint64)
    _, lower = make_device_ids(rng, key, np.zeros(m, dtype=bool))
    return lower


# --------------------------------------------------------------------------- rendering


def _patch(base: pa.Array, mask: np.ndarray, values: pa.Array) -> pa.Array:
    """``base`` with the rows in ``mask`` replaced, in order, by ``values`` (one linear pass)."""
    return pc.replace_with_mask(base, pa.array(mask), values) if mask.any() else base


def _render_email(
    rng: np.random.Generator, basic: pa.Array, norm: pa.Array, mode: str, hashed_rate: float
) -> pa.Array:
    """One written form per row (null rows stay null)."""
    m = len(basic)
    raw = 0.0 if mode == "sha256" else 1.0 - hashed_rate
    hashed = 1.0 - raw
    # raw basic, raw full form, raw full form + new tag, sha256(basic), sha256(full form)
    form = _forms(rng, m, [0.6 * raw, 0.25 * raw, 0.15 * raw, 0.5 * hashed, 0.5 * hashed])
    # Masks and filters rather than gathers: every step is a sequential pass.
    source = pc.if_else(pa.array((form == 0) | (form == 3)), basic, norm)
    tagged = form == 2
    if tagged.any():
        sub = source.filter(pa.array(tagged))
        tag = rng.integers(0, len(_TAGS), size=len(sub))
        for t, word in enumerate(_TAGS):
            # Only one "@" exists; the tag goes right before it.
            with_tag = pc.replace_substring(sub, "@", f"+{word}@", max_replacements=1)
            sub = pc.if_else(pa.array(tag == t), with_tag, sub)
        source = _patch(source, tagged, sub)
    written = form <= 2
    out = _patch(source, written, dirty_emails(rng, source.filter(pa.array(written))))
    hashed_rows = ~written
    return _patch(out, hashed_rows, _hash_hex(source.filter(pa.array(hashed_rows)), "sha256"))


def _render_phone(
    rng: np.random.Generator,
    country: np.ndarray,
    nsn: np.ndarray,
    advertiser: int,
    mode: str,
    hashed_rate: float,
) -> pa.Array:
    m = len(country)
    raw = 0.0 if mode == "sha256" else 1.0 - hashed_rate
    hashed = 1.0 - raw
    form = _forms(rng, m, [raw, 0.6 * hashed, 0.4 * hashed])  # raw, sha256(+cc..), sha256(cc..)
    form[country < 0] = -1
    rows = np.flatnonzero(form == 0)
    # National format only for the advertiser's own country; the rest need the "+cc"/IDD form.
    intl = np.where(country[rows] == advertiser, 0.15, 1.0)
    text = render_phones(
        rng, country[rows], nsn[rows], intl, dial_from=COUNTRIES[advertiser], idd_share=0.2
    )
    out = scatter([(rows, text)], m)
    hashed_rows = form > 0
    # "+<cc>" or "<cc>" per row, then the NSN's digits (NSNs never start with 0).
    codes = [PHONE_PLANS[c].calling_code for c in COUNTRIES]
    prefixes = pa.array([p for cc in codes for p in (cc, "+" + cc)], pa.string())
    pick = country[hashed_rows] * 2 + (form[hashed_rows] == 1)
    digits = pc.cast(pa.array(nsn[hashed_rows]), pa.string())
    plain = pc.binary_join_element_wise(prefixes.take(pa.array(pick)), digits, "")
    return _patch(out, hashed_rows, _hash_hex(plain, "sha256"))


def _render_maid(
    rng: np.random.Generator, maid: pa.Array, mode: str, hashed_rate: float
) -> pa.Array:
    """``mode``: "mixed" (raw, SHA-256 or MD5), or "sha256"/"md5" (raw or that hash), or
    "only-sha256"/"only-md5" (hashes only, for ``MAID_SHA256``-style columns)."""
    m = len(maid)
    only = mode.startswith("only-")
    raw = 0.0 if only else 1.0 - hashed_rate
    hashed = 1.0 - raw
    algos = ("sha256", "md5") if mode == "mixed" else (mode.removeprefix("only-"),)
    # Written in upper or lower case; then raw, or hashed with one of ``algos``.
    upper = rng.random(m) < 0.45
    how = _forms(rng, m, [raw] + [hashed / len(algos)] * len(algos))
    source = pc.if_else(pa.array(upper), pc.utf8_upper(maid), maid)
    out = source
    for i, algo in enumerate(algos, start=1):
        rows = how == i
        out = _patch(out, rows, _hash_hex(source.filter(pa.array(rows)), algo))
    return out


def _invalid_values(rng: np.random.Generator, kind: str, m: int) -> pa.Array:
    options = _INVALID["maid" if kind in ("idfa", "gaid") else kind]
    pick = rng.integers(0, len(options), size=m)
    pieces: list[tuple[np.ndarray, pa.Array]] = []
    for i, option in enumerate(options):
        rows = np.flatnonzero(pick == i)
        if option == "<hex63>":
            values: pa.Array = _hex_strings(rng, len(rows), 63)
        elif option == "<uuid35>":
            key = rng.integers(0, 2**63, size=len(rows), dtype=np.int64).astype(np.uint64)
            written, _ = make_device_ids(rng, key, rng.random(len(rows)) < 0.5)
            values = pc.utf8_slice_codeunits(written, 0, 35)
        else:
            values = pa.repeat(pa.scalar(option, pa.string()), len(rows))
        pieces.append((rows, values))
    return scatter(pieces, m)


# --------------------------------------------------------------------------- the file


def generate_customer_file(
    users: pa.Table,
    *,
    n_rows: int,
    seed: int,
    kind: str,
    advertiser_country: str = "US",
    match_rate: float = 0.6,
    duplicate_rate: float = 0.05,
    invalid_rate: float = 0.02,
    hashed_rate: float = 0.5,
    header: bool = False,
    columns: Sequence[str] | None = None,
    truth: pa.Table | None = None,
) -> CustomerFile:
    """A customer file of ``n_rows`` data rows for ``users`` (a :func:`generate_users` table).

    ``kind`` is a TikTok ``calculate_type`` (:data:`CALCULATE_TYPES`). Of the rows,
    ``invalid_rate`` are invalid and ``duplicate_rate`` repeat an earlier customer; of the other
    (distinct) customers, ``match_rate`` are platform users that have the identifier (capped by
    how many do) and the rest are unknown to the platform. ``hashed_rate`` of the written values
    are hashes. Single-type files get a header row if ``header``; MULTIPLE_TYPES files always do,
    with ``columns`` (names from :data:`MULTI_HEADERS`, any case, one per identifier kind) or a
    seeded choice of spellings. ``truth`` (from :func:`generate_platform`) saves re-deriving the
    canonical forms. Same arguments -> identical file.
    """
    if kind not in CALCULATE_TYPES:
        raise ValueError(f"unknown calculate_type {kind!r}; known: {', '.join(CALCULATE_TYPES)}")
    if advertiser_country not in COUNTRIES:
        raise ValueError(f"advertiser_country must be one of {', '.join(COUNTRIES)}")
    if n_rows < 0:
        raise ValueError("n_rows must be >= 0")
    for name, rate in (
        ("match_rate", match_rate),
        ("duplicate_rate", duplicate_rate),
        ("invalid_rate", invalid_rate),
        ("hashed_rate", hashed_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1]")
    r_pick = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**32,)))
    truth = truth if truth is not None else ground_truth_identifiers(users)
    id_kind, algo = CALCULATE_TYPES[kind]
    advertiser = COUNTRIES.index(advertiser_country)

    # Which kinds the file carries, in column order, and how each column is written.
    if id_kind == "multiple":
        names = list(columns) if columns is not None else _default_columns(r_pick)
        specs = _multi_specs(names)
        header_row: list[str] | None = names
    else:
        mode = "mixed" if id_kind in ("email", "phone") else algo
        specs = [(id_kind, mode)]
        header_row = [str(r_pick.choice(_SINGLE_HEADERS[id_kind]))] if header else None
    kinds = [k for k, _ in specs]

    # Row budget.
    n_invalid = round(n_rows * invalid_rate)
    n_dup = round(n_rows * duplicate_rate)
    n_distinct = n_rows - n_invalid - n_dup
    if n_distinct <= 0:
        n_dup, n_distinct = 0, n_rows - n_invalid
    has = _has_identifier(users, truth)
    candidate = np.zeros(users.num_rows, dtype=bool)
    for k in kinds:
        candidate |= has[k]
    candidates = np.flatnonzero(candidate)
    n_match = min(round(n_distinct * match_rate), len(candidates))
    matched = r_pick.choice(candidates, size=n_match, replace=False)

    # Rows are made in chunks, each with its share of every kind of row, shuffled within the
    # chunk: memory stays bounded and duplicates stay near their originals.
    n_chunks = max(1, -(-n_rows // _FILE_CHUNK_ROWS))
    match_c = _split(n_match, n_chunks)
    fresh_c = _split(n_distinct - n_match, n_chunks)
    dup_c = _split(n_dup, n_chunks, weights=match_c + fresh_c)
    invalid_c = _split(n_invalid, n_chunks)
    ctx = _FileContext(
        users=users,
        truth=truth,
        specs=specs,
        advertiser=advertiser,
        hashed_rate=hashed_rate,
        multi=id_kind == "multiple",
    )
    chunks: list[pa.Array] = []
    start = 0
    for c in range(n_chunks):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(c,)))
        # Sorted, so gathering their identifiers reads the tables in order (rows are shuffled
        # at the end of the chunk anyway).
        part = np.sort(matched[start : start + match_c[c]])
        start += match_c[c]
        chunks.append(_file_chunk(ctx, rng, part, fresh_c[c], dup_c[c], invalid_c[c]))

    expected = np.sort(matched).astype(np.int64)  # distinct already (drawn without replacement)
    consent = users.column("personalized_ads").combine_chunks()
    cover = int(pc.sum(_take(consent, expected)).as_py() or 0) if len(expected) else 0
    return CustomerFile(
        calculate_type=kind,
        header=header_row,
        lines=pa.chunked_array(chunks, pa.string()),
        expected_users=expected,
        expected_cover_num=cover,
        expected_rejected=n_invalid,
        advertiser_country=advertiser_country,
    )


_FILE_CHUNK_ROWS = 1 << 20  # part of the seeded output, like the users' chunk size


def _split(total: int, parts: int, *, weights: np.ndarray | None = None) -> np.ndarray:
    """``total`` as ``parts`` integer shares, even or proportional to ``weights``."""
    w = np.ones(parts) if weights is None else np.asarray(weights, dtype=np.float64)
    if total == 0 or w.sum() == 0:
        return np.zeros(parts, dtype=np.int64)
    share = np.floor(total * w / w.sum()).astype(np.int64)
    # Hand out the remainder one by one to the parts that may take rows.
    eligible = np.flatnonzero(w > 0)
    share[eligible[: total - int(share.sum())]] += 1
    return share


@dataclass
class _FileContext:
    users: pa.Table
    truth: pa.Table
    specs: list[tuple[str, str]]
    advertiser: int
    hashed_rate: float
    multi: bool
    _taken_phones: np.ndarray | None = None

    @property
    def kinds(self) -> list[str]:
        return [k for k, _ in self.specs]

    def taken_phones(self) -> np.ndarray:
        """Users' phone numbers as sorted ints (computed once per file)."""
        if self._taken_phones is None:
            phones = self.truth.column("phone_e164").combine_chunks()
            self._taken_phones = _sorted_phone_keys(phones)
        return self._taken_phones


def _file_chunk(
    ctx: _FileContext,
    rng: np.random.Generator,
    matched: np.ndarray,
    n_fresh: int,
    n_dup: int,
    n_invalid: int,
) -> pa.Array:
    people = _People.concat(
        _platform_people(ctx.users, ctx.truth, matched, ctx.kinds),
        _fresh_people(rng, n_fresh, ctx),
    )
    # Which fields each customer row fills (MULTIPLE_TYPES leaves some empty, never all).
    present = np.stack([_present(people, k) for k in ctx.kinds], axis=1)
    base = _render_rows(rng, people, ctx, _fill_mask(rng, present, multi=ctx.multi))

    # Duplicates: half exact copies of a line, half the same customer written anew.
    dup_of = rng.integers(0, max(len(people.user), 1), size=n_dup)
    exact = rng.random(n_dup) < 0.5
    copies = _take(base, dup_of[exact])
    again_of = dup_of[~exact]
    again_fill = _fill_mask(rng, present[again_of], multi=ctx.multi)
    again = _render_rows(rng, people.take(again_of), ctx, again_fill)

    invalid = _invalid_rows(rng, ctx.kinds, n_invalid)
    lines = pa.concat_arrays([base, copies, again, invalid]).cast(pa.string())
    return _take(lines, rng.permutation(len(lines)))


def _default_columns(rng: np.random.Generator) -> list[str]:
    names = [str(rng.choice(_HEADER_CHOICES[k])) for k in ("email", "phone", "maid")]
    return [names[i] for i in rng.permutation(len(names))]


def _multi_specs(names: Sequence[str]) -> list[tuple[str, str]]:
    specs: list[tuple[str, str]] = []
    for name in names:
        key = name.strip().lower()
        if key not in MULTI_HEADERS:
            raise ValueError(
                f"unknown MULTIPLE_TYPES column {name!r}; known: {list(MULTI_HEADERS)}"
            )
        k, mode = MULTI_HEADERS[key]
        if any(k == seen for seen, _ in specs):
            raise ValueError(f"more than one {k} column")
        if k == "maid":
            mode = {"mixed": "mixed", "sha256": "only-sha256", "md5": "only-md5"}[mode]
        specs.append((k, mode))
    if not specs:
        raise ValueError("MULTIPLE_TYPES needs at least one column")
    return specs


def _has_identifier(users: pa.Table, truth: pa.Table) -> dict[str, np.ndarray]:
    def valid(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
        return arr.is_valid().to_numpy(zero_copy_only=False)

    return {
        "email": valid(truth.column("email_norm")),
        "phone": valid(truth.column("phone_e164")),
        "maid": valid(truth.column("maid")),
        "idfa": valid(users.column("idfa")),
        "gaid": valid(users.column("gaid")),
    }


def _present(people: _People, kind: str) -> np.ndarray:
    if kind == "email":
        return people.email_norm.is_valid().to_numpy(zero_copy_only=False)
    if kind == "phone":
        return people.phone_country >= 0
    return people.maid.is_valid().to_numpy(zero_copy_only=False)


def _platform_people(
    users: pa.Table, truth: pa.Table, rows: np.ndarray, kinds: Sequence[str]
) -> _People:
    m = len(rows)
    null = pa.nulls(m, pa.string())
    wanted = ["email_basic", "email_norm"] if "email" in kinds else []
    wanted += ["phone_e164"] if "phone" in kinds else []
    wanted += ["maid"] if any(k in ("maid", "idfa", "gaid") for k in kinds) else []
    t = truth.select(wanted).take(pa.array(rows, pa.int64()))
    email = "email" in kinds
    if "phone" in kinds:
        country = _take(users.column("country").combine_chunks(), rows)
        phone_country, nsn = _phone_parts(t.column("phone_e164").combine_chunks(), country)
    else:
        phone_country, nsn = np.full(m, -1, dtype=np.int64), np.zeros(m, dtype=np.int64)
    maid = null
    device = [k for k in kinds if k in ("maid", "idfa", "gaid")]
    if device:
        maid = t.column("maid").combine_chunks()
        if device[0] in ("idfa", "gaid"):
            # A platform-specific file only carries that platform's ids.
            mask = users.column(device[0]).combine_chunks().is_valid()
            maid = pc.if_else(_take(mask, rows), maid, pa.scalar(None, pa.string()))
    return _People(
        user=np.asarray(rows, dtype=np.int64),
        email_basic=t.column("email_basic").combine_chunks() if email else null,
        email_norm=t.column("email_norm").combine_chunks() if email else null,
        phone_country=phone_country,
        phone_nsn=nsn,
        maid=maid,
    )


def _fresh_people(rng: np.random.Generator, m: int, ctx: _FileContext) -> _People:
    kinds = ctx.kinds
    null = pa.nulls(m, pa.string())
    # Each fresh customer has every kind of the file with some probability, and at least one.
    present = {k: rng.random(m) < (0.85 if len(kinds) > 1 else 1.0) for k in kinds}
    if kinds:
        none = ~np.any(np.stack(list(present.values())), axis=0)
        present[kinds[0]] |= none
    basic, norm = null, null
    phone_country, nsn = np.full(m, -1, dtype=np.int64), np.zeros(m, dtype=np.int64)
    maid = null
    if "email" in kinds:
        rows = np.flatnonzero(present["email"])
        b, n = _fresh_emails(rng, len(rows))
        basic, norm = scatter([(rows, b)], m), scatter([(rows, n)], m)
    if "phone" in kinds:
        rows = np.flatnonzero(present["phone"])
        c, s = _fresh_phones(rng, len(rows), ctx.advertiser, ctx.taken_phones())
        phone_country[rows], nsn[rows] = c, s
    device = [k for k in kinds if k in ("maid", "idfa", "gaid")]
    if device:
        rows = np.flatnonzero(present[device[0]])
        maid = scatter([(rows, _fresh_maids(rng, len(rows)))], m)
    return _People(np.full(m, -1, dtype=np.int64), basic, norm, phone_country, nsn, maid)


def _fill_mask(rng: np.random.Generator, present: np.ndarray, *, multi: bool) -> np.ndarray:
    """Fields written per row: all present ones for single-type files; for MULTIPLE_TYPES each
    present field with probability 0.8, and at least one."""
    if not multi:
        return present.copy()
    fill = present & (rng.random(present.shape) < 0.8)
    empty = np.flatnonzero(~fill.any(axis=1))
    if len(empty):
        # Keep one present field, chosen at random among the present ones.
        score = rng.random((len(empty), present.shape[1])) * present[empty]
        fill[empty, np.argmax(score, axis=1)] = True
    return fill


def _render_rows(
    rng: np.random.Generator, people: _People, ctx: _FileContext, fill: np.ndarray
) -> pa.Array:
    fields: list[pa.Array] = []
    for j, (k, mode) in enumerate(ctx.specs):
        rows = np.flatnonzero(fill[:, j])
        # Only this column's fields are gathered: takes over strings are the expensive part.
        if k == "email":
            basic, norm = _take(people.email_basic, rows), _take(people.email_norm, rows)
            text = _render_email(rng, basic, norm, mode, ctx.hashed_rate)
        elif k == "phone":
            country, nsn = people.phone_country[rows], people.phone_nsn[rows]
            text = _render_phone(rng, country, nsn, ctx.advertiser, mode, ctx.hashed_rate)
        else:
            text = _render_maid(rng, _take(people.maid, rows), mode, ctx.hashed_rate)
        fields.append(pc.fill_null(scatter([(rows, text)], len(fill)), ""))
    if len(fields) == 1:
        return fields[0]
    return pc.binary_join_element_wise(*fields, ",")


def _invalid_rows(rng: np.random.Generator, kinds: Sequence[str], m: int) -> pa.Array:
    """Rows without a single usable field (MULTIPLE_TYPES: the rest of the fields empty)."""
    if len(kinds) == 1:
        return _invalid_values(rng, kinds[0], m)
    fill = rng.random((m, len(kinds))) < 0.5
    none = np.flatnonzero(~fill.any(axis=1))
    fill[none, rng.integers(0, len(kinds), size=len(none))] = True
    fields = []
    for j, k in enumerate(kinds):
        rows = np.flatnonzero(fill[:, j])
        fields.append(pc.fill_null(scatter([(rows, _invalid_values(rng, k, len(rows)))], m), ""))
    return pc.binary_join_element_wise(*fields, ",")
