"""The synthetic platform: determinism, uniqueness, valid phones, and customer files whose answer
key agrees with an independent reference matcher written here (hashlib + phonenumbers + regexes,
nothing from ``likewise.identity``)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import phonenumbers
import pyarrow as pa
import pytest

from likewise.sim import (
    CALCULATE_TYPES,
    COUNTRIES,
    PHONE_PLANS,
    USER_COLUMNS,
    CustomerFile,
    SimPlatform,
    generate_customer_file,
    generate_platform,
    generate_users,
    ground_truth_identifiers,
)

N_USERS = 3000
N_ROWS = 1500

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EMAIL = re.compile(r"[a-z0-9][^@\s]*@[a-z0-9-]+(\.[a-z0-9-]+)+")
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX32 = re.compile(r"[0-9a-f]{32}")
HEXLIKE = re.compile(r"[0-9a-f]{16,}")
INVALID_PHONES = {"12", "n/a", "not-a-phone", "000", "+1", "12-3"}


@pytest.fixture(scope="module")
def platform() -> SimPlatform:
    return generate_platform(N_USERS, seed=7)


@pytest.fixture(scope="module")
def rows(platform: SimPlatform) -> list[dict]:
    return platform.users.to_pylist()


@pytest.fixture(scope="module")
def parsed(rows: list[dict]) -> list[phonenumbers.PhoneNumber | None]:
    """Each user's phone parsed by phonenumbers in the user's country (once per module)."""
    return [phonenumbers.parse(r["phone"], r["country"]) if r["phone"] else None for r in rows]


# --------------------------------------------------------------------------- independent forms


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def email_basic(raw: str) -> str:
    return raw.strip().lower()


def email_full(raw: str) -> str:
    local, _, domain = email_basic(raw).partition("@")
    return local.split("+", 1)[0].replace(".", "") + "@" + domain


def e164(raw: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --------------------------------------------------------------------------- users


def test_same_seed_same_tables_and_other_seed_differs() -> None:
    a, b = generate_platform(600, seed=3), generate_platform(600, seed=3)
    assert a.users.equals(b.users) and a.truth.equals(b.truth)
    assert generate_users(600, seed=3).equals(a.users)
    assert not generate_users(600, seed=4).equals(a.users)


def test_columns_types_and_value_ranges(platform: SimPlatform, rows: list[dict]) -> None:
    users = platform.users
    assert tuple(users.column_names) == USER_COLUMNS
    assert users.schema.field("age").type == pa.int32()
    assert users.schema.field("personalized_ads").type == pa.bool_()
    for name in set(USER_COLUMNS) - {"age", "personalized_ads"}:
        assert users.schema.field(name).type == pa.string(), name
    assert [r["user_id"] for r in rows[:2]] == ["u00000001", "u00000002"]
    for r in rows:
        assert r["country"] in COUNTRIES
        assert r["region"].startswith(r["country"] + "-")
        assert 13 <= r["age"] <= 80
        assert r["gender"] in {"male", "female", "unknown"}
        assert re.fullmatch(r"[a-z]{2}", r["language"])
        assert r["os"] in {"ios", "android"}
        # One device id, of the user's platform, written as a UUID in either case.
        assert r["gaid"] is None if r["os"] == "ios" else r["idfa"] is None
        device = r["idfa"] or r["gaid"]
        if device is not None:
            assert UUID.fullmatch(device.lower()) and device in (device.lower(), device.upper())
    counts = Counter(r["country"] for r in rows)
    assert counts.most_common(1)[0][0] == "US" and set(counts) == set(COUNTRIES)


@pytest.mark.parametrize(
    ("column", "rate"), [("email", 0.10), ("phone", 0.15), ("idfa|gaid", 0.20)]
)
def test_null_rates(rows: list[dict], column: str, rate: float) -> None:
    names = column.split("|")
    nulls = sum(all(r[c] is None for c in names) for r in rows) / len(rows)
    assert abs(nulls - rate) < 0.03


@pytest.mark.parametrize("optout_rate", [0.03, 0.25])
def test_optout_fraction_is_near_the_rate(optout_rate: float) -> None:
    users = generate_users(20000, seed=11, optout_rate=optout_rate)
    opted_out = 1 - np.mean(users.column("personalized_ads").to_numpy())
    assert abs(opted_out - optout_rate) < 0.01


def test_identifiers_are_dirty_like_real_data(rows: list[dict]) -> None:
    emails = [r["email"] for r in rows if r["email"] is not None]
    phones = [r["phone"] for r in rows if r["phone"] is not None]
    assert any(e != e.strip() for e in emails)
    assert any(e.strip() != e.strip().lower() for e in emails)
    assert any("+" in e.split("@")[0] for e in emails)
    assert any("." in e.split("@")[0] for e in emails)
    assert len({e.strip().lower().split("@")[1] for e in emails}) > 10
    assert any(p.startswith("+") for p in phones)
    assert sum(not p.startswith("+") for p in phones) > 0.8 * len(phones)  # mostly national
    devices = [r["idfa"] or r["gaid"] for r in rows if r["idfa"] or r["gaid"]]
    assert any(d.isupper() for d in devices) and any(d.islower() for d in devices)


def test_canonical_forms_are_unique(rows: list[dict], parsed: list) -> None:
    for values in (
        [email_full(r["email"]) for r in rows if r["email"]],
        [(p.country_code, p.national_number) for p in parsed if p is not None],
        [(r["idfa"] or r["gaid"]).lower() for r in rows if r["idfa"] or r["gaid"]],
    ):
        assert len(values) == len(set(values))


def test_every_phone_is_valid_and_parses_to_its_truth(
    platform: SimPlatform, rows: list[dict], parsed: list
) -> None:
    truth = platform.truth.column("phone_e164").to_pylist()
    for r, number, expected in zip(rows, parsed, truth, strict=True):
        if number is None:
            assert expected is None
            continue
        assert phonenumbers.is_valid_number(number), r["phone"]
        assert phonenumbers.region_code_for_number(number) == r["country"]
        assert phonenumbers.number_type(number) in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        )
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == expected


@pytest.mark.parametrize("country", COUNTRIES)
def test_every_listed_prefix_is_a_valid_mobile_range(country: str) -> None:
    plan = PHONE_PLANS[country]
    prefixes = set(plan.prefixes).union(*plan.region_prefixes.values())
    for prefix in sorted(prefixes):
        free = plan.nsn_length - len(prefix)
        for tail in ("0" * free, "9" * free):
            number = phonenumbers.parse("+" + plan.calling_code + prefix + tail)
            assert phonenumbers.is_valid_number(number), (country, prefix)
            assert phonenumbers.region_code_for_number(number) == country


def test_truth_agrees_with_independent_normalisation(
    platform: SimPlatform, rows: list[dict]
) -> None:
    for r, t in zip(rows, platform.truth.to_pylist(), strict=True):
        assert t["user_id"] == r["user_id"]
        if r["email"] is None:
            assert t["email_basic"] is None and t["email_norm"] is None
        else:
            assert t["email_basic"] == email_basic(r["email"])
            assert t["email_norm"] == email_full(r["email"])
        device = r["idfa"] or r["gaid"]
        assert t["maid"] == (device.lower() if device else None)


def test_truth_derived_from_the_table_equals_truth_by_construction(
    platform: SimPlatform,
) -> None:
    assert ground_truth_identifiers(platform.users).equals(platform.truth)
    part = platform.users.slice(1234, 500)
    assert ground_truth_identifiers(part).equals(platform.truth.slice(1234, 500))


def test_rejects_bad_arguments(platform: SimPlatform) -> None:
    with pytest.raises(ValueError):
        generate_platform(-1)
    with pytest.raises(ValueError):
        generate_users(10, optout_rate=1.5)
    with pytest.raises(ValueError):
        generate_customer_file(platform.users, n_rows=10, seed=1, kind="EMAIL_MD5")
    with pytest.raises(ValueError):
        generate_customer_file(
            platform.users, n_rows=10, seed=1, kind="MULTIPLE_TYPES", columns=["email", "x"]
        )


# --------------------------------------------------------------------------- reference matcher


@dataclass
class Reference:
    """Maps every accepted form of every user's identifiers to the user's row."""

    email: dict[str, int] = field(default_factory=dict)  # full normal form -> row
    hashed_email: dict[str, int] = field(default_factory=dict)
    phone: dict[str, int] = field(default_factory=dict)  # E.164 -> row
    hashed_phone: dict[str, int] = field(default_factory=dict)
    device: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> lower id -> row
    hashed_device: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def build(cls, rows: list[dict], parsed: list) -> Reference:
        ref = cls(device={"idfa": {}, "gaid": {}}, hashed_device={"idfa": {}, "gaid": {}})
        for i, (r, p) in enumerate(zip(rows, parsed, strict=True)):
            if r["email"]:
                ref.email[email_full(r["email"])] = i
                for form in (email_basic(r["email"]), email_full(r["email"])):
                    ref.hashed_email[sha256(form)] = i
            if p is not None:
                number = phonenumbers.format_number(p, phonenumbers.PhoneNumberFormat.E164)
                ref.phone[number] = i
                ref.hashed_phone[sha256(number)] = i
                ref.hashed_phone[sha256(number[1:])] = i
            for kind in ("idfa", "gaid"):
                if r[kind]:
                    lower = r[kind].lower()
                    ref.device[kind][lower] = i
                    for form in (lower, lower.upper()):
                        ref.hashed_device[kind][sha256(form)] = i
                        ref.hashed_device[kind][md5(form)] = i
        return ref

    def field(self, value: str, kind: str, region: str) -> tuple[bool, int | None]:
        """(valid, matched row) for one field of a file."""
        text = value.strip()
        low = text.lower()
        if HEX64.fullmatch(low) or (kind in ("idfa", "gaid", "maid") and HEX32.fullmatch(low)):
            if kind == "email":
                return True, self.hashed_email.get(low)
            if kind == "phone":
                return True, self.hashed_phone.get(low)
            return True, self._device(self.hashed_device, kind, low)
        if HEXLIKE.fullmatch(low):
            return False, None  # a hash of the wrong length
        if kind == "email":
            if not EMAIL.fullmatch(low):
                return False, None
            return True, self.email.get(email_full(text))
        if kind == "phone":
            number = e164(text, region)
            return (number is not None), self.phone.get(number or "")
        if not UUID.fullmatch(low):
            return False, None
        return True, self._device(self.device, kind, low)

    @staticmethod
    def _device(table: dict[str, dict[str, int]], kind: str, key: str) -> int | None:
        kinds = ("idfa", "gaid") if kind == "maid" else (kind,)
        for k in kinds:
            if key in table[k]:
                return table[k][key]
        return None


@dataclass
class Verdict:
    rejected: int
    matched: set[int]
    valid_unmatched: int
    per_user_rows: Counter


def judge(cf: CustomerFile, ref: Reference) -> Verdict:
    single = {"idfa", "gaid", "maid", "email", "phone"}
    id_kind = CALCULATE_TYPES[cf.calculate_type][0]
    if id_kind in single:
        kinds = [id_kind]
    else:
        assert cf.header is not None
        kinds = [h.lower().split("_")[0] for h in cf.header]
    rejected, unmatched = 0, 0
    matched: set[int] = set()
    per_user: Counter = Counter()
    for line in cf.text_lines():
        fields = line.split(",")
        assert len(fields) == len(kinds), line
        results = [
            ref.field(v, k, cf.advertiser_country)
            for v, k in zip(fields, kinds, strict=True)
            if v != ""
        ]
        assert results, f"row without any value: {line!r}"
        users = {row for ok, row in results if ok and row is not None}
        assert len(users) <= 1, f"one row names several users: {line!r}"
        if not any(ok for ok, _ in results):
            rejected += 1
        elif users:
            matched |= users
            per_user[next(iter(users))] += 1
        else:
            unmatched += 1
    return Verdict(rejected, matched, unmatched, per_user)


@pytest.fixture(scope="module")
def reference(rows: list[dict], parsed: list) -> Reference:
    return Reference.build(rows, parsed)


CASES = [
    ("EMAIL_SHA256", "US"),
    ("PHONE_SHA256", "US"),
    ("PHONE_SHA256", "GB"),
    ("PHONE_SHA256", "JP"),
    ("PHONE_SHA256", "BR"),
    ("IDFA_SHA256", "US"),
    ("IDFA_MD5", "US"),
    ("GAID_SHA256", "DE"),
    ("GAID_MD5", "DE"),
    ("FIRST_SHA256", "FR"),
    ("FIRST_MD5", "IN"),
    ("MAID_SHA256", "US"),
    ("MULTIPLE_TYPES", "US"),
    ("MULTIPLE_TYPES", "DE"),
]


@pytest.mark.parametrize(("kind", "country"), CASES)
def test_answer_key_matches_an_independent_reference(
    platform: SimPlatform, rows: list[dict], reference: Reference, kind: str, country: str
) -> None:
    cf = generate_customer_file(
        platform.users, n_rows=N_ROWS, seed=5, kind=kind, advertiser_country=country
    )
    verdict = judge(cf, reference)
    assert cf.n_rows == N_ROWS
    assert verdict.rejected == cf.expected_rejected > 0
    assert verdict.matched == set(cf.expected_users.tolist())
    assert list(cf.expected_users) == sorted(set(cf.expected_users.tolist()))
    assert cf.expected_cover_num == sum(rows[i]["personalized_ads"] for i in verdict.matched)
    # The dirt is there: customers unknown to the platform, and customers on several rows.
    assert verdict.valid_unmatched > 0
    assert max(verdict.per_user_rows.values()) > 1
    expected_match = round((N_ROWS - round(0.02 * N_ROWS) - round(0.05 * N_ROWS)) * 0.6)
    assert len(cf.expected_users) == expected_match


def test_truth_passed_in_gives_the_same_file(platform: SimPlatform) -> None:
    a = generate_customer_file(platform.users, n_rows=300, seed=9, kind="MULTIPLE_TYPES")
    b = generate_customer_file(
        platform.users, n_rows=300, seed=9, kind="MULTIPLE_TYPES", truth=platform.truth
    )
    assert a.lines.equals(b.lines) and a.header == b.header
    assert np.array_equal(a.expected_users, b.expected_users)


def test_files_are_deterministic_per_seed(platform: SimPlatform) -> None:
    def make(seed: int) -> CustomerFile:
        return generate_customer_file(platform.users, n_rows=400, seed=seed, kind="EMAIL_SHA256")

    a, b, c = make(1), make(1), make(2)
    assert a.lines.equals(b.lines) and a.md5() == b.md5()
    assert np.array_equal(a.expected_users, b.expected_users)
    assert not a.lines.equals(c.lines)


def test_file_mixes_raw_and_hashed_forms(platform: SimPlatform) -> None:
    lines = generate_customer_file(
        platform.users, n_rows=N_ROWS, seed=2, kind="EMAIL_SHA256"
    ).text_lines()
    assert any(HEX64.fullmatch(x) for x in lines)
    assert any("@" in x and x != x.strip() for x in lines)
    assert any("@" in x and x.strip() != x.strip().lower() for x in lines)
    assert any(len(x) == 63 and HEXLIKE.fullmatch(x) for x in lines)
    devices = generate_customer_file(
        platform.users, n_rows=N_ROWS, seed=2, kind="FIRST_MD5"
    ).text_lines()
    assert any(HEX32.fullmatch(x) for x in devices)
    assert any(UUID.fullmatch(x) for x in devices)
    assert any(UUID.fullmatch(x.lower()) and x.isupper() for x in devices)


@pytest.mark.parametrize("country", ["DE", "US"])
def test_national_phone_format_only_for_the_advertisers_country(
    platform: SimPlatform, country: str
) -> None:
    cf = generate_customer_file(
        platform.users, n_rows=N_ROWS, seed=4, kind="PHONE_SHA256", advertiser_country=country
    )
    code = PHONE_PLANS[country].calling_code
    national = 0
    for line in cf.text_lines():
        if HEXLIKE.fullmatch(line) or line in INVALID_PHONES:
            continue
        number = phonenumbers.parse(line, country)
        if not line.startswith(("+", "00", "011", "010")):
            national += 1
            assert str(number.country_code) == code, line
    assert national > 0


def test_multiple_types_header_and_fields(platform: SimPlatform) -> None:
    cf = generate_customer_file(
        platform.users,
        n_rows=500,
        seed=3,
        kind="MULTIPLE_TYPES",
        columns=["Email", "phone_sha256", "MAID"],
    )
    assert cf.header == ["Email", "phone_sha256", "MAID"]
    lines = cf.text_lines()
    assert all(line.count(",") == 2 for line in lines)
    assert any(",," in line or line.startswith(",") or line.endswith(",") for line in lines)
    # A ``*_sha256`` column holds hashes only (or an invalid value, or nothing).
    for phone in (line.split(",")[1] for line in lines):
        assert phone == "" or HEX64.fullmatch(phone) or phone in INVALID_PHONES or len(phone) == 63


def test_write_and_md5(platform: SimPlatform, tmp_path: Path) -> None:
    for kind, header in (("PHONE_SHA256", True), ("MULTIPLE_TYPES", True), ("GAID_MD5", False)):
        cf = generate_customer_file(platform.users, n_rows=700, seed=8, kind=kind, header=header)
        path = cf.write(tmp_path / f"{kind}.csv")
        data = path.read_bytes()
        expected = "".join(
            line + "\n" for line in ([",".join(cf.header)] if cf.header else []) + cf.text_lines()
        ).encode()
        assert data == expected == cf.to_bytes()
        assert cf.md5() == hashlib.md5(data).hexdigest()
        assert b"\r" not in data


def test_single_type_header_is_optional(platform: SimPlatform) -> None:
    plain = generate_customer_file(platform.users, n_rows=50, seed=1, kind="EMAIL_SHA256")
    headed = generate_customer_file(
        platform.users, n_rows=50, seed=1, kind="EMAIL_SHA256", header=True
    )
    assert plain.header is None
    assert headed.header is not None and headed.header[0].lower() == "email"


def test_match_rate_zero_and_one(platform: SimPlatform, reference: Reference) -> None:
    none = generate_customer_file(
        platform.users, n_rows=400, seed=6, kind="PHONE_SHA256", match_rate=0.0
    )
    assert len(none.expected_users) == 0 and judge(none, reference).matched == set()
    everyone = generate_customer_file(
        platform.users, n_rows=N_USERS * 2, seed=6, kind="IDFA_SHA256", match_rate=1.0
    )
    with_idfa = sum(1 for r in platform.users.column("idfa").to_pylist() if r)
    assert len(everyone.expected_users) == with_idfa  # capped by who has the identifier
    assert judge(everyone, reference).matched == set(everyone.expected_users.tolist())


@pytest.mark.parametrize("size", [10, 5000])
def test_hashing_paths_agree_with_hashlib(size: int) -> None:
    from likewise.sim.customer_file import _hash_hex

    values = [f"user{i}@example.com" if i % 7 else None for i in range(size)]
    for algo, fn in (("sha256", sha256), ("md5", md5)):
        got = _hash_hex(pa.array(values, pa.string()), algo).to_pylist()
        assert got == [None if v is None else fn(v) for v in values]
