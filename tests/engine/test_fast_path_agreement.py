"""The compiled fast path (``_fast.pyx``) and the Python reference normalisers agree.

Every identifier type has one Python normaliser (the reference) and one compiled fast path used
for customer files and users imports. Here both run on the same messy values and must give the
same keys value by value; a parsed customer file must hold exactly the reference's keys and
report each line as the reference would; an imported user must hold the keys of every form.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import phonenumbers
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat as F

from likewise.errors import FileInvalid
from likewise.identity import (
    hash_key,
    md5_hex,
    normalize_device_id,
    normalize_email_file,
    normalize_phone,
    sha256_hex,
)
from likewise.identity.customer_file import KIND_MASK, MAX_LINE, ParseResult, parse_customer_file
from likewise.identity.device import ZERO_ID, device_variants
from likewise.identity.email import email_variants
from likewise.identity.kinds import IdKind
from likewise.identity.phone import RULES, phone_variants
from likewise.identity.text import WHITESPACE
from likewise.identity.user_keys import column_keys
from likewise.ingest.users import import_users
from likewise.store.graph import PlatformGraph

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
FILE_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

# --- strategies -------------------------------------------------------------------------------

# Pieces that exercise every branch: ASCII atoms, dots and tags, quotes, whitespace (ASCII and
# not), letters whose lower/upper case differs between Python and DuckDB, and digits.
EMAIL_PIECES = [
    *"abcXYZ019",
    ".",
    "..",
    "+",
    "+tag",
    "-",
    "_",
    "'",
    '"',
    " ",
    "\t",
    "\n",
    "\u00a0",
    "@",
    "@gmail.com",
    "@Example.COM",
    "@bücher.de",
    "@x",
    "é",
    "É",
    "İ",
    "ı",
    "\u212a",  # Kelvin sign: Python lowers it to ASCII "k"
    "ß",
    "ẞ",
    "ſ",
    "Σ",
    "Ａ",
    "!#$%&*/=?^`{|}~",
    "(",
    ",",
]
messy_text = st.lists(st.sampled_from(EMAIL_PIECES), max_size=12).map("".join)
messy_email = st.one_of(
    messy_text,
    st.emails(),
    st.emails().map(str.upper),
    st.builds(lambda a, b: f" {a}+{b}@Gmail.com ", messy_text, messy_text),
    st.text(max_size=20),
)

PHONE_PIECES = [*"0123456789", "+", "00", "(0)", " ", "-", ".", "(", ")", "/", "\t", "x", "٣", "０"]
digits_with_separators = st.lists(st.sampled_from(PHONE_PIECES), max_size=20).map("".join)


@st.composite
def real_numbers(draw: st.DrawFn) -> str:
    """Valid numbers of several regions, written nationally or internationally."""
    region = draw(st.sampled_from([*RULES, "IT", "RU", "CN", "CH"]))
    number = phonenumbers.example_number(region)
    fmt = draw(st.sampled_from([F.E164, F.INTERNATIONAL, F.NATIONAL, F.RFC3966, "bracket"]))
    if fmt == "bracket":
        # "+44 (0)20 7183 8750": the trunk prefix after the country code, bracketed or not,
        # possibly dialled with the US international prefix.
        cc = str(number.country_code)
        nsn = phonenumbers.national_significant_number(number)
        trunk = draw(st.sampled_from(["(0)", "0", " (0) ", "(1)"]))
        return draw(st.sampled_from(["+", "011 ", "00"])) + cc + " " + trunk + nsn
    return phonenumbers.format_number(number, fmt)


messy_phone = st.one_of(
    digits_with_separators,
    st.text(alphabet="0123456789", min_size=6, max_size=17),
    real_numbers(),
    st.text(max_size=12),
)
regions = st.one_of(
    st.none(),
    st.sampled_from([*RULES, *(r.lower() for r in RULES), "Gb", "IT", "RU", "ZZ", "", "ß", "ın"]),
)

HEX = "0123456789abcdefABCDEF"
messy_device = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: f" {str(u).upper()}\t"),
    st.just(ZERO_ID),
    st.just(ZERO_ID.upper()),
    st.text(alphabet=HEX + "- \t", max_size=40),
    st.text(max_size=10),
)


def nullable(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), strategy)


# --- helpers ----------------------------------------------------------------------------------


def value_keys(
    kind: str, raws: list[str | None], regions: list[str | None] | None = None
) -> dict[int, list[int]]:
    """The compiled users-import path: each row's keys, by row."""
    with ThreadPoolExecutor(2) as pool:
        keys = column_keys(
            kind,
            pa.array(raws, pa.string()),
            None if regions is None else pa.array(regions, pa.string()),
            pool,
            2,
        )
    out: dict[int, list[int]] = {}
    for row, hi, lo in zip(keys.row.tolist(), keys.k_hi.tolist(), keys.k_lo.tolist(), strict=True):
        out.setdefault(row, []).append((hi << 64) | lo)
    counted = sum(1 for raw in raws if raw is not None and raw.strip(WHITESPACE))
    assert keys.valid + keys.invalid == counted, "every non-empty value is counted once"
    assert keys.valid == len(out)
    assert int(keys.first.sum()) == len(out), "one first form per identifier"
    return out


def form_keys(forms: list[str]) -> list[int]:
    return [hash_key(sha256_hex(f)) for f in forms]


# --- the three normalisers: compiled path against the Python reference ------------------------


@SETTINGS
@given(st.lists(nullable(messy_email), min_size=1, max_size=25))
@example(["İ@gmail.com", "\u212aate@x.com", "ſam@x.com", "Σ@x.com"])
@example([" a.b+c@x.com", "+tag@x.com", "a.+b@x.com", ".a@x.com", None, "   "])
def test_emails_agree(raws: list[str | None]) -> None:
    got = value_keys("email", raws)
    for i, raw in enumerate(raws):
        expected = [] if raw is None else form_keys(email_variants(raw))
        assert got.get(i, []) == expected, (raw, got.get(i))


@SETTINGS
@given(st.lists(st.tuples(nullable(messy_phone), regions), min_size=1, max_size=25))
@example([("+44 020 7183 8750", "GB"), ("4930124643", "DE"), ("000000000", "ß")])
@example([("(657)777-0000", "us"), ("447400123456", "GB"), ("+310000000", None)])
@example([("+44 (0)7400 123456", None), ("011 49 (0)30 1234567", "US"), ("+41 (0)44 123", "")])
def test_phones_agree(rows: list[tuple[str | None, str | None]]) -> None:
    got = value_keys("phone", [r for r, _ in rows], [g for _, g in rows])
    for i, (raw, region) in enumerate(rows):
        e164 = None if raw is None else normalize_phone(raw, region)
        expected = [] if e164 is None else form_keys(phone_variants(e164))
        assert got.get(i, []) == expected, (raw, region, got.get(i))


@SETTINGS
@given(st.lists(nullable(messy_device), min_size=1, max_size=25), st.sampled_from(["idfa", "gaid"]))
def test_devices_agree(raws: list[str | None], kind: str) -> None:
    got = value_keys(kind, raws)
    for i, raw in enumerate(raws):
        maid = None if raw is None else normalize_device_id(raw)
        expected = []
        if maid is not None:
            forms = device_variants(maid)
            expected = form_keys(forms) + [hash_key(md5_hex(f)) for f in forms]
        assert sorted(got.get(i, [])) == sorted(expected), (raw, got.get(i))


# --- customer files ---------------------------------------------------------------------------

FIELD_WHITESPACE = " \t"


def clean_field(value: str) -> str:
    """What the file parser does to a field before normalising (spaces, tabs, quotes)."""
    return value.strip(FIELD_WHITESPACE + '"')


def reference_key(value: str, kind: str, region: str | None) -> int | None:
    """The key the reference gives one field, or None when it yields none."""
    v = clean_field(value)
    vl = v.lower()
    if re.fullmatch(r"[0-9a-f]{64}", vl):
        return hash_key(vl)
    if kind == "phone" and re.fullmatch(r"[0-9]+", vl):
        pass  # a long run of digits in a phone column is a number, not a hash
    elif re.fullmatch(r"[0-9a-f]{32}", vl):
        return hash_key(vl) if kind in ("idfa", "gaid", "maid") else None
    elif re.fullmatch(r"[0-9a-f]{16,}", vl):
        return None
    if kind == "email":
        norm = normalize_email_file(v)
    elif kind == "phone":
        norm = normalize_phone(v, region)
    else:
        norm = normalize_device_id(v)
    return None if norm is None else hash_key(sha256_hex(norm))


def line_safe(s: str) -> str:
    """Keep a value on one line (the parser reads lines; \\x01 is its column delimiter)."""
    return re.sub(r"[\r\n\x00-\x08\x0b-\x1f\x7f\u2028\u2029\x85]", "", s)


def hashed(kind: str) -> st.SearchStrategy[str]:
    base = st.text(max_size=10).map(sha256_hex)
    if kind in ("idfa", "gaid", "maid"):
        base = st.one_of(base, st.text(max_size=10).map(md5_hex))
    return st.one_of(base, base.map(str.upper), base.map(lambda h: f' "{h}" '))


FIELD = {
    "email": st.one_of(messy_email, hashed("email"), st.text(max_size=10).map(md5_hex)),
    "phone": st.one_of(messy_phone, hashed("phone")),
    "maid": st.one_of(messy_device, hashed("maid")),
}


def parse_raw(
    lines: list[str], calculate_type: str, region: str | None
) -> tuple[pa.DataType, list[tuple[int, int, int]]]:
    """Parse a file; the key halves' Parquet type and its ``(row_no, k, kmask)`` rows."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "customers.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out = Path(tmp) / "keys.parquet"
        parse_customer_file(path, calculate_type, out, region=region)
        table = pq.read_table(out)
    rows = zip(
        table.column("row_no").to_pylist(),
        table.column("k_hi").to_pylist(),
        table.column("k_lo").to_pylist(),
        table.column("kmask").to_pylist(),
        strict=True,
    )
    keys = [(int(r), (int(hi) << 64) | int(lo), int(m)) for r, hi, lo, m in rows]
    return table.schema.field("k_hi").type, keys


def parse(lines: list[str], calculate_type: str, region: str | None) -> set[tuple[int, int, int]]:
    """The keys of a parsed file, exactly as the key file stores them (all 128 bits)."""
    return set(parse_raw(lines, calculate_type, region)[1])


def stored(key: int) -> int:
    """A key as the key file holds it."""
    return key


@FILE_SETTINGS
@given(
    st.sampled_from(
        [("EMAIL_SHA256", "email"), ("PHONE_SHA256", "phone"), ("MAID_SHA256", "maid")]
    ),
    st.data(),
    regions,
)
def test_single_type_file_yields_reference_keys(
    ctype: tuple[str, str], data: st.DataObject, region: str | None
) -> None:
    calculate_type, kind = ctype
    values = data.draw(st.lists(FIELD[kind].map(line_safe), min_size=1, max_size=15))
    lines = [kind.capitalize(), *values]  # the optional header line
    expected = set()
    for i, v in enumerate(values):
        if not v.strip(FIELD_WHITESPACE):
            continue  # a blank line is not a row
        key = reference_key(v, kind, region)
        if key is not None:
            expected.add((i + 2, stored(key), KIND_MASK[kind]))
    if not any(v.strip(FIELD_WHITESPACE) for v in values):
        return  # a file with no data rows is refused (tested elsewhere)
    assert parse(lines, calculate_type, region) == expected


@FILE_SETTINGS
@given(st.data(), regions)
def test_multi_type_file_yields_reference_keys(data: st.DataObject, region: str | None) -> None:
    header = ["email", "phone", "maid"]
    rows = data.draw(
        st.lists(
            st.tuples(*(FIELD[k].map(line_safe).map(lambda s: s.replace(",", "")) for k in header)),
            min_size=1,
            max_size=12,
        )
    )
    lines = ["Email,Phone_SHA256,MAID"] + [",".join(r) for r in rows]
    expected = set()
    for i, row in enumerate(rows):
        if not ",".join(row).strip(FIELD_WHITESPACE):
            continue
        for kind, v in zip(header, row, strict=True):
            if not clean_field(v):
                continue
            key = reference_key(v, kind, region)
            if key is not None:
                expected.add((i + 2, stored(key), KIND_MASK[kind]))
    if not any(",".join(r).strip(FIELD_WHITESPACE) for r in rows):
        return
    assert parse(lines, "MULTIPLE_TYPES", region) == expected


def test_customer_file_examples() -> None:
    sha = sha256_hex("someone@example.com")
    lines = [
        "email",
        "Local.Part+x@Domain.com",
        f"  {sha.upper()}  ",
        '"quoted@example.com"',
        "not-an-email",
        "",
        md5_hex("x@y.com"),  # MD5 is not accepted for e-mails
        "İ@gmail.com",
    ]
    expected = {
        (2, stored(hash_key(sha256_hex("localpart@domain.com"))), IdKind.EMAIL.bit),
        (3, stored(hash_key(sha)), IdKind.EMAIL.bit),
        (4, stored(hash_key(sha256_hex("quoted@example.com"))), IdKind.EMAIL.bit),
    }
    ref = normalize_email_file("İ@gmail.com")
    if ref is not None:
        expected.add((8, stored(hash_key(sha256_hex(ref))), IdKind.EMAIL.bit))
    assert parse(lines, "EMAIL_SHA256", None) == expected


def test_customer_file_keeps_128_bit_keys() -> None:
    key_type, rows = parse_raw(["email", "someone@example.com"], "EMAIL_SHA256", None)
    assert pa.types.is_uint64(key_type), key_type
    assert [int(k) for _, k, _ in rows] == [hash_key(sha256_hex("someone@example.com"))]


FIELD_STRIP = ' "\t\n\x0b\x0c\r'


def reference_field(value: str, kind: str, region: str | None) -> int | str | None:
    """One field as the reference decides it: its key, the reason it is refused, or None when
    it is empty. (TikTok's hash rule first, then the normaliser of its kind.)"""
    v = value.strip(FIELD_STRIP)
    if not v:
        return None
    is_hex = re.fullmatch(r"[0-9a-fA-F]+", v) is not None
    if is_hex and len(v) == 64:
        return hash_key(v.lower())
    digits = kind == "phone" and re.fullmatch(r"[0-9]+", v) is not None
    if is_hex and len(v) >= 16 and not digits:
        if len(v) != 32:
            return "invalid_hash_length"
        if kind in ("email", "phone"):
            return f"md5_not_supported_for_{kind}"
        return hash_key(v.lower())
    if kind == "email":
        norm, reason = normalize_email_file(v), "invalid_email"
    elif kind == "phone":
        norm, reason = normalize_phone(v, region), "invalid_phone"
    else:
        norm, reason = normalize_device_id(v), "invalid_device_id"
    return reason if norm is None else hash_key(sha256_hex(norm))


def reference_line(line: str, kinds: list[str], region: str | None) -> tuple[int, str | None]:
    """A data line as the reference reports it: its keys, and the reason it is rejected (None:
    valid). The first reason of its fields by name wins, as in the audience history."""
    if "\x02" in line:
        return 0, "control_character"
    if len(line) > MAX_LINE:
        return 0, "line_too_long"
    if len(kinds) > 1 and line.count(",") != len(kinds) - 1:
        return 0, "wrong_field_count"
    fields = line.split(",") if len(kinds) > 1 else [line]
    outcomes = [reference_field(v, k, region) for v, k in zip(fields, kinds, strict=True)]
    keys = sum(isinstance(o, int) for o in outcomes)
    reasons = sorted(o for o in outcomes if isinstance(o, str))
    if keys:
        return keys, None
    return 0, reasons[0] if reasons else "no_identifier"


def parse_result(lines: list[str], calculate_type: str, region: str | None) -> ParseResult:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "customers.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return parse_customer_file(path, calculate_type, Path(tmp) / "keys.parquet", region=region)


# Lines the file parser must refuse or skip as a whole, beside ordinary ones.
odd_line = st.one_of(
    st.just(""),
    st.just(" \t "),
    st.just('""'),
    st.just(","),
    st.just("a@b.co\x02"),
    st.sampled_from(["é" * 2100, "a" * 4097, "é" * 4096, "a@b.co," * 700]),
)


@FILE_SETTINGS
@given(st.data(), regions, st.sampled_from([["email"], ["phone"], ["email", "phone", "maid"]]))
def test_customer_file_reports_lines_as_the_reference(
    data: st.DataObject, region: str | None, kinds: list[str]
) -> None:
    """Valid lines, keys, and rejected lines by reason with their first line numbers."""
    field = st.one_of(*(FIELD[k].map(line_safe) for k in kinds))
    line = st.lists(field, min_size=len(kinds), max_size=len(kinds)).map(",".join)
    if len(kinds) == 1:
        line = FIELD[kinds[0]].map(line_safe)
    body = data.draw(st.lists(st.one_of(line, odd_line), min_size=1, max_size=20))
    header = ",".join(kinds) if len(kinds) > 1 else "EMAIL_SHA256"
    calculate_type = {"email": "EMAIL_SHA256", "phone": "PHONE_SHA256"}.get(kinds[0])
    if len(kinds) > 1:
        calculate_type = "MULTIPLE_TYPES"
    rows = [(n, text) for n, text in enumerate(body, start=2) if text.strip(" \t")]
    if not rows:
        return  # a file with no data rows is refused (tested elsewhere)
    keys, valid, rejects, samples = 0, 0, Counter(), {}
    for n, text in rows:
        got, reason = reference_line(text, kinds, region)
        keys += got
        if reason is None:
            valid += 1
        else:
            rejects[reason] += 1
            samples.setdefault(reason, []).append(n)
    if valid == 0 and rejects["control_character"] * 2 >= len(rows):
        with pytest.raises(FileInvalid, match="not a UTF-8 text file"):
            parse_result([header, *body], calculate_type, region)
        return
    result = parse_result([header, *body], calculate_type, region)
    assert (result.rows_total, result.rows_valid, result.keys) == (len(rows), valid, keys)
    assert result.rejects == dict(rejects)
    assert result.reject_lines == {r: lines[:5] for r, lines in samples.items()}


# --- users import: the platform keeps a hash of every documented form ----------------------


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(
            nullable(messy_email),
            nullable(messy_phone),
            nullable(messy_device),
            st.sampled_from([None, "US", "gb", "DE", "IT"]),
        ),
        min_size=1,
        max_size=8,
    )
)
@example([("Local.Part+x@Domain.com", "+44 020 7183 8750", ZERO_ID, "GB")])
def test_users_import_keys_match_reference(
    users: list[tuple[str | None, str | None, str | None, str | None]],
) -> None:
    assert platform_keys(users) == reference_keys(users)


def test_users_import_tag_only_address() -> None:
    users = [("+tag@example.com", None, None, None)]
    assert platform_keys(users) == reference_keys(users)


Users = list[tuple[str | None, str | None, str | None, str | None]]


def platform_keys(users: Users) -> set[tuple[int, int, str]]:
    """``(k, kind, user_id)`` rows the users import writes to the identity graph."""
    table = pa.table(
        {
            "user_id": [f"u{i}" for i in range(len(users))],
            "email": pa.array([u[0] for u in users], pa.string()),
            "phone": pa.array([u[1] for u in users], pa.string()),
            "idfa": pa.array([u[2] for u in users], pa.string()),
            "gaid": pa.array([u[2] for u in users], pa.string()),
            "country": pa.array([u[3] for u in users], pa.string()),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        graph = PlatformGraph(Path(tmp) / "platform.duckdb", threads=1, memory_limit="500MB")
        import_users(graph, table)
        with graph.connect() as con:
            rows = con.execute(
                "SELECT i.k, i.kind, u.ext_id FROM ident i JOIN users u USING (uid)"
            ).fetchall()
    return {(int(k), int(kind), ext) for k, kind, ext in rows}


def reference_keys(users: Users) -> set[tuple[int, int, str]]:
    """The same from the Python reference: a hash of every documented form of each id."""
    expected = set()
    for i, (email, phone, device, country) in enumerate(users):
        user = f"u{i}"
        region = country.upper() if country else None
        for v in email_variants(email) if email is not None else []:
            expected.add((hash_key(sha256_hex(v)), int(IdKind.EMAIL), user))
        e164 = normalize_phone(phone, region) if phone is not None else None
        if e164 is not None:
            for v in (e164, e164[1:]):
                expected.add((hash_key(sha256_hex(v)), int(IdKind.PHONE), user))
        maid = normalize_device_id(device) if device is not None else None
        if maid is not None:
            for kind in (IdKind.IDFA, IdKind.GAID):
                for fn in (sha256_hex, md5_hex):
                    for v in (maid, maid.upper()):
                        expected.add((hash_key(fn(v)), int(kind), user))
    return expected
