"""Property tests of the identifier normalisers (reference sections 2.2, 2.3 and 11.11)."""

from __future__ import annotations

import hashlib
import re
import uuid

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from likewise.identity import (
    hash_key,
    is_md5_hex,
    is_sha256_hex,
    md5_hex,
    normalize_device_id,
    normalize_email_basic,
    normalize_email_file,
    normalize_phone,
    sha256_hex,
)
from likewise.identity.device import ZERO_ID, device_variants
from likewise.identity.email import email_variants
from likewise.identity.phone import RULES, fast_phone, library_phone, phone_variants
from likewise.identity.text import WHITESPACE

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies -------------------------------------------------------------------------------

whitespace = st.text(alphabet=WHITESPACE, max_size=3)
LOCAL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-'!#$%&*/=?^`{|}~"
messy_email = st.one_of(
    st.emails(),
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.text(alphabet=LOCAL_CHARS + 'é\u0130 @"', min_size=1, max_size=20),
        st.sampled_from(["gmail.com", "Example.COM", "domain.com", "bücher.de", "a.b-c.io", "x"]),
    ),
    st.text(max_size=30),
)


def swap_ascii_case(value: str, flips: list[bool]) -> str:
    """Change the case of some ASCII letters (only ASCII: ``"ß".upper().lower()`` is "ss")."""
    out = []
    for i, ch in enumerate(value):
        if ch.isascii() and ch.isalpha() and flips[i % len(flips)]:
            ch = ch.swapcase()
        out.append(ch)
    return "".join(out)


# --- e-mail -----------------------------------------------------------------------------------


def test_email_tiktok_examples() -> None:
    assert normalize_email_file("local-part.123+suffix@domain.com") == "local-part123@domain.com"
    assert normalize_email_basic(" ALICE_abc@gmail.com ") == "alice_abc@gmail.com"
    # The Events API rule keeps dots and tags; the file rule drops them for every domain.
    assert normalize_email_basic("Local.Part+X@Domain.com") == "local.part+x@domain.com"
    assert normalize_email_file("Local.Part+X@Domain.com") == "localpart@domain.com"
    assert normalize_email_file("a.b.c@yahoo.co.uk") == "abc@yahoo.co.uk"
    assert normalize_email_file("first+one+two@x.io") == "first@x.io"


@pytest.mark.parametrize(
    "raw", ["", "   ", "no-at-sign", "a@b", "@domain.com", ".a@x.com", "a..b@x.com", "a@x..com"]
)
def test_email_rejects(raw: str) -> None:
    assert normalize_email_basic(raw) is None
    assert normalize_email_file(raw) is None
    assert email_variants(raw) == []


def test_email_file_form_needs_a_local_part() -> None:
    # Valid address whose local part is only a tag: no customer-file form.
    assert normalize_email_basic("+tag@example.com") == "+tag@example.com"
    assert normalize_email_file("+tag@example.com") is None
    assert email_variants("+tag@example.com") == ["+tag@example.com"]


@SETTINGS
@given(messy_email)
@example("İ@gmail.com")
@example("\u212aelvin@x.com")
def test_email_idempotent(raw: str) -> None:
    basic = normalize_email_basic(raw)
    if basic is not None:
        assert normalize_email_basic(basic) == basic
    full = normalize_email_file(raw)
    if full is not None:
        assert basic is not None
        assert normalize_email_file(full) == full
        assert normalize_email_basic(full) == full
        assert "+" not in full.split("@")[0] and "." not in full.rpartition("@")[0]


@SETTINGS
@given(messy_email, whitespace, whitespace, st.lists(st.booleans(), min_size=1, max_size=7))
def test_email_case_and_whitespace_insensitive(
    raw: str, before: str, after: str, flips: list[bool]
) -> None:
    variant = before + swap_ascii_case(raw, flips) + after
    assert normalize_email_basic(variant) == normalize_email_basic(raw)
    assert normalize_email_file(variant) == normalize_email_file(raw)
    assert email_variants(variant) == email_variants(raw)


def test_email_variants_three_forms() -> None:
    assert email_variants(" Local.Part+X@Domain.com") == [
        "local.part+x@domain.com",
        "local.part@domain.com",
        "localpart@domain.com",
    ]
    assert email_variants("plain@x.com") == ["plain@x.com"]
    assert email_variants("a.b@x.com") == ["a.b@x.com", "ab@x.com"]
    assert email_variants("ab+c@x.com") == ["ab+c@x.com", "ab@x.com"]


@SETTINGS
@given(messy_email)
def test_email_variants_properties(raw: str) -> None:
    variants = email_variants(raw)
    assert len(variants) == len(set(variants)) <= 3
    basic = normalize_email_basic(raw)
    if basic is None:
        assert variants == []
        return
    assert variants[0] == basic
    full = normalize_email_file(raw)
    if full is not None:
        assert variants[-1] == full
    assert all(not v.startswith("@") for v in variants)


# --- phone ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(657)777-0000", "US", "+16577770000"),
        ("657-777-0000", "us", "+16577770000"),
        ("1 (657) 777-0000", "US", "+16577770000"),
        ("16577770000", "US", "+16577770000"),
        ("+1 657 777 0000", None, "+16577770000"),
        ("+442071838750", None, "+442071838750"),
        ("+442071838750", "FR", "+442071838750"),
        ("0044 20 7183 8750", "GB", "+442071838750"),
        ("+44 (0)20 7183 8750", None, "+442071838750"),
        ("+44 020 7183 8750", None, "+442071838750"),
        ("020 7183 8750", "GB", "+442071838750"),
        ("447400123456", "GB", "+447400123456"),
        ("07400 123456", "GB", "+447400123456"),
        ("7400123456", "GB", "+447400123456"),
        ("4930124643", "DE", "+4930124643"),  # cc + an 8-digit Berlin number, not national
    ],
)
def test_phone_examples(raw: str, region: str | None, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [("", "US"), ("   ", None), ("abc", "US"), ("12", "US"), ("7400123456", None), ("+", None)],
)
def test_phone_rejects(raw: str, region: str | None) -> None:
    assert normalize_phone(raw, region) is None


def test_phone_variants_with_and_without_plus() -> None:
    assert phone_variants("+16577770000") == ["+16577770000", "16577770000"]


PHONE_CHARS = "0123456789+ -.()/\t"
messy_phone = st.one_of(
    st.text(alphabet=PHONE_CHARS, max_size=20),
    st.text(alphabet="0123456789", min_size=6, max_size=16),
    st.builds(lambda d: "+" + d, st.text(alphabet="0123456789", min_size=6, max_size=16)),
)
any_region = st.one_of(st.none(), st.sampled_from([*RULES, "IT", "RU", "CN", "ZZ", ""]).map(str))


@SETTINGS
@given(messy_phone, any_region)
def test_phone_idempotent_and_possible(raw: str, region: str | None) -> None:
    e164 = normalize_phone(raw, region)
    if e164 is None:
        return
    assert re.fullmatch(r"\+[1-9][0-9]{6,14}", e164), e164
    # The E.164 form is its own normalisation, whatever the default region.
    for other in (region, None, "US", "GB"):
        assert normalize_phone(e164, other) == e164
    assert phone_variants(e164) == [e164, e164[1:]]


@SETTINGS
@given(messy_phone, any_region, whitespace, whitespace, st.booleans())
def test_phone_whitespace_and_region_case_insensitive(
    raw: str, region: str | None, before: str, after: str, lower: bool
) -> None:
    other = None if region is None else (region.lower() if lower else region.upper())
    assert normalize_phone(before + raw + after, other) == normalize_phone(raw, region)


PHONE_TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.UAN,
]
EXAMPLES = [
    (region, phonenumbers.national_significant_number(ex), ex.country_code)
    for region in RULES
    for t in PHONE_TYPES
    if (ex := phonenumbers.example_number_for_type(region, t)) is not None
]


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    """A valid number of a region in RULES: an example number with its last digits changed."""
    region, nsn, cc = draw(st.sampled_from(EXAMPLES))
    k = draw(st.integers(1, min(5, len(nsn) - 1)))
    tail = draw(st.text(alphabet="0123456789", min_size=k, max_size=k))
    number = phonenumbers.parse(f"+{cc}{nsn[:-k]}{tail}")
    assume(phonenumbers.is_valid_number(number))
    assume(phonenumbers.region_code_for_number(number) == region)
    return region, number


def with_separators(digits: str, draw: st.DrawFn) -> str:
    """Insert separators between digits (never inside a leading ``+``/``00``)."""
    seps = draw(st.lists(st.sampled_from(["", "", " ", "-", ".", "/"]), min_size=1))
    out = []
    for i, ch in enumerate(digits):
        out.append(ch)
        if i and i < len(digits) - 1:
            out.append(seps[i % len(seps)])
    return "".join(out)


@st.composite
def formatted_numbers(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """``(text, region, form, e164)``: one valid number written one of the ways people do."""
    region, number = draw(valid_numbers())
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    nsn = phonenumbers.national_significant_number(number)
    cc = str(number.country_code)
    trunk = RULES[region].trunk
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    forms = {
        "e164": e164,
        "international": phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL),
        "national": national,
        "national_digits": re.sub(r"\D", "", national),
        "without_trunk": nsn,
        "with_trunk": trunk + nsn,
        "international_with_trunk": f"+{cc} {trunk} {nsn}" if trunk else e164,
        "international_bracket_trunk": f"+{cc} ({trunk}){nsn}" if trunk else e164,
        "e164_without_plus": cc + nsn,
        "double_zero": "00" + cc + nsn,
        "separated_national": with_separators(trunk + nsn, draw),
        "separated_international": "+" + with_separators(cc + nsn, draw),
    }
    form = draw(st.sampled_from(sorted(forms)))
    return forms[form], region, form, e164


# The library's own formats, which it always reads back. Hand-written forms it may misread or
# refuse: DE "4915123456703" as a 13-digit national number, "00" where the IDD is 011, 010 or
# 0011, "+1 (1)310 1230" (a Canadian 7-digit number)…; there the fast path must defer or agree.
STANDARD_FORMS = {"e164", "international", "national"}


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(formatted_numbers(), whitespace, whitespace)
def test_phone_fast_path_agrees_with_phonenumbers(
    case: tuple[str, str, str, str], before: str, after: str
) -> None:
    text, region, form, e164 = case
    lib = library_phone(text, region)
    fast = fast_phone(text, region)
    got = normalize_phone(before + text + after, region)
    if form in STANDARD_FORMS:
        assert lib == e164, (text, region, form)
    if lib == e164:
        # Where Google's library reads the number, the fast path reads the same or defers.
        assert fast in (None, e164), (text, region, form, fast)
        assert got == e164, (text, region, form, got)
    elif form == "double_zero":
        assert got == e164  # "00" is read as "+" everywhere (documented fast-path rule)
    else:
        # A form the library misreads: the fast path reads it right or leaves it to the library.
        assert got in (e164, lib), (text, region, form, got)
        assert fast in (None, e164), (text, region, form, fast)


@pytest.mark.parametrize("region", sorted(RULES))
def test_phone_fast_path_decides_common_shapes(region: str) -> None:
    """The fast path is not vacuous: it decides every region's example mobile number."""
    number = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    for text in (e164, international, national, e164[1:]):
        assert fast_phone(text, region) == e164, (text, region)
    trunk, cc = RULES[region].trunk, RULES[region].calling_code
    if trunk == "0":
        # "+44 (0)7400 123456": the trunk prefix after the country code, as UK and German
        # lists often write it; dialled from the US with its international prefix too.
        nsn = e164[1 + len(cc) :]
        for text in (f"+{cc} (0){nsn}", f"+{cc} 0{nsn}", f"011 {cc} (0){nsn}"):
            assert fast_phone(text, "US") == e164 == library_phone(text, "US"), text


# --- device ids -------------------------------------------------------------------------------


def test_device_examples() -> None:
    idfa = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
    assert normalize_device_id(idfa) == idfa.lower()
    assert normalize_device_id(" " + idfa.lower() + "\n") == idfa.lower()
    assert device_variants(idfa.lower()) == [idfa.lower(), idfa]
    for zero in (ZERO_ID, ZERO_ID.upper(), f"  {ZERO_ID}\t"):
        assert normalize_device_id(zero) is None
    for bad in ("", "not-a-uuid", idfa.replace("-", ""), "{" + idfa + "}", idfa + "0"):
        assert normalize_device_id(bad) is None


@SETTINGS
@given(st.uuids(), whitespace, whitespace, st.lists(st.booleans(), min_size=1, max_size=7))
def test_device_case_whitespace_idempotent(
    u: uuid.UUID, before: str, after: str, flips: list[bool]
) -> None:
    text = str(u)
    got = normalize_device_id(before + swap_ascii_case(text, flips) + after)
    assert got == text
    assert normalize_device_id(got) == got
    assert normalize_device_id(text.upper()) == got


@SETTINGS
@given(st.text(alphabet="0123456789abcdefABCDEF-xyz \t", max_size=40))
def test_device_output_is_lower_uuid(raw: str) -> None:
    got = normalize_device_id(raw)
    if got is not None:
        assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", got)
        assert got != ZERO_ID
        assert normalize_device_id(got) == got


# --- hashes -----------------------------------------------------------------------------------


@SETTINGS
@given(st.text(max_size=50))
def test_hashes_and_keys(value: str) -> None:
    sha = sha256_hex(value)
    md5 = md5_hex(value)
    assert sha == hashlib.sha256(value.encode()).hexdigest() and is_sha256_hex(sha)
    assert md5 == hashlib.md5(value.encode()).hexdigest() and is_md5_hex(md5)
    assert not is_md5_hex(sha) and not is_sha256_hex(md5)
    # A key is the first 128 bits of the digest.
    assert hash_key(sha) == int.from_bytes(hashlib.sha256(value.encode()).digest()[:16], "big")
    assert hash_key(md5) == int.from_bytes(hashlib.md5(value.encode()).digest(), "big")
    assert 0 <= hash_key(sha) < 1 << 128


@SETTINGS
@given(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32), st.booleans())
def test_hex_digests_pass_through_as_keys(digest32: str, long: bool) -> None:
    """An id that is already 64 (SHA-256) or 32 (MD5) hex characters is used as is."""
    digest = digest32 * 2 if long else digest32
    assert (is_sha256_hex if long else is_md5_hex)(digest)
    assert hash_key(digest) == int(digest32 if not long else digest[:32], 16)
    assert hash_key(digest) != hash_key(sha256_hex(digest))  # not hashed again


def test_hex_detection_is_strict() -> None:
    sha = sha256_hex("x")
    assert not is_sha256_hex(sha.upper())  # callers lowercase first
    assert not is_sha256_hex(sha[:-1]) and not is_sha256_hex(sha + "0")
    assert not is_sha256_hex(" " + sha)
    assert not is_md5_hex("g" * 32)
