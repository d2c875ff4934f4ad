"""Customer files: parse, normalise and hash in one vectorised pass.

Input: the advertiser's ``.csv``/``.txt`` as uploaded. Output: a Parquet file of 128-bit keys
``(row_no, k, kmask)`` plus per-row statistics. Nothing raw is written: the caller deletes the
uploaded file afterwards.

Every field may be raw or already hashed: 64 hex characters pass through as SHA-256 and, for
device ids, 32 as MD5 (TikTok's rule); raw values are normalised with the customer-file rules and
hashed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from likewise.errors import CalculateTypeUnsupported, FileInvalid, FileSpecInvalid
from likewise.identity.hashing import sql_hash_key
from likewise.identity.kinds import MAID_MASK, IdKind
from likewise.identity.text import sql_strip
from likewise.identity.vectorized import normalize_devices, normalize_emails, normalize_phones

MAX_LINE = 4096  # longer lines are rejected (a 100 KB line is not an identifier)
MAX_HEADER_REPEAT = 3
FIELDS_PER_ROW = 64  # field id = row_no * 64 + position

# Field kind -> match mask.
KIND_MASK = {
    "email": IdKind.EMAIL.bit,
    "phone": IdKind.PHONE.bit,
    "idfa": IdKind.IDFA.bit,
    "gaid": IdKind.GAID.bit,
    "maid": MAID_MASK,
}

CALCULATE_TYPES: dict[str, str | None] = {
    "EMAIL_SHA256": "email",
    "PHONE_SHA256": "phone",
    "IDFA_SHA256": "idfa",
    "IDFA_MD5": "idfa",
    "GAID_SHA256": "gaid",
    "GAID_MD5": "gaid",
    "FIRST_SHA256": "maid",
    "FIRST_MD5": "maid",
    "MAID_SHA256": "maid",
    "MAID_MD5": "maid",
    "MULTIPLE_TYPES": None,
}

# Header names (case-insensitive) -> field kind.
HEADERS = {
    "email": "email",
    "email_sha256": "email",
    "phone": "phone",
    "phone_sha256": "phone",
    "maid": "maid",
    "maid_sha256": "maid",
    "maid_md5": "maid",
    "idfa": "idfa",
    "idfa_sha256": "idfa",
    "idfa_md5": "idfa",
    "gaid": "gaid",
    "gaid_sha256": "gaid",
    "gaid_md5": "gaid",
    "aaid": "gaid",
    "aaid_sha256": "gaid",
    "aaid_md5": "gaid",
}


@dataclass
class ParseResult:
    rows_total: int = 0
    rows_valid: int = 0
    rows_rejected: int = 0
    keys: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    reject_lines: dict[str, list[int]] = field(default_factory=dict)

    def message(self) -> str:
        """A one-line account of the file for the audience history (no raw values)."""
        text = f"{self.rows_total} rows, {self.rows_valid} valid"
        if self.rows_rejected:
            parts = []
            for reason, n in sorted(self.rejects.items(), key=lambda kv: -kv[1]):
                lines = self.reject_lines.get(reason, [])
                sample = f" (lines {', '.join(map(str, lines))})" if lines else ""
                parts.append(f"{n} {reason}{sample}")
            text += f", {self.rows_rejected} rejected: " + "; ".join(parts)
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_total": self.rows_total,
            "rows_valid": self.rows_valid,
            "rows_rejected": self.rows_rejected,
            "rejects": self.rejects,
            "reject_lines": self.reject_lines,
        }


def parse_customer_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    calculate_type: str,
    out: Path,
    *,
    region: str | None = None,
) -> ParseResult:
    """Parse ``path`` into keys at ``out`` (Parquet). Raises a domain error for unusable files."""
    if calculate_type not in CALCULATE_TYPES:
        raise CalculateTypeUnsupported(
            f"calculate_type {calculate_type!r} is not supported", field="calculate_type"
        )
    src = str(path).replace("'", "''")
    con.execute("DROP TABLE IF EXISTS rj_errors; DROP TABLE IF EXISTS rj_scans")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE raw_lines AS
        SELECT row_number() OVER () AS row_no, line FROM read_csv('{src}',
          auto_detect = false, header = false, columns = {{'line': 'VARCHAR'}}, delim = '\x01',
          quote = '', escape = '', max_line_size = {max(path.stat().st_size + 16, 1 << 21)},
          strict_mode = false, ignore_errors = true, store_rejects = true,
          rejects_table = 'rj_errors', rejects_scan = 'rj_scans')"""
    )
    bad_encoding = con.execute("SELECT DISTINCT line FROM rj_errors ORDER BY line").fetchall()
    if bad_encoding:
        _renumber(con)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE lines AS SELECT row_no, line FROM raw_lines
        WHERE line IS NOT NULL AND line <> ''
          AND (NOT contains(' ' || chr(9), left(line, 1)) OR trim(line, ' ' || chr(9)) <> '')"""
    )
    con.execute("DROP TABLE raw_lines")
    kinds = _columns(con, calculate_type)
    result = ParseResult()
    total = con.execute("SELECT count(*) FROM lines").fetchone()
    result.rows_total = (int(total[0]) if total else 0) + len(bad_encoding)
    if result.rows_total == 0:
        raise FileInvalid("the file has no data rows (only blank lines or a header)", field="file")

    _fields(con, kinds)
    _classify(con, kinds, region)
    _write_keys(con, out)
    _row_stats(con, result, [int(r[0]) for r in bad_encoding], single=len(kinds) == 1)
    if result.rows_valid == 0 and _looks_binary(con, len(bad_encoding), result.rows_total):
        raise FileInvalid(
            "the file is not a UTF-8 text file of identifiers (binary data or another encoding)",
            field="file",
        )
    con.execute(
        "DROP TABLE IF EXISTS lines; DROP TABLE IF EXISTS raw_lines; "
        "DROP TABLE IF EXISTS fields; DROP TABLE IF EXISTS keyed"
    )
    return result


def _renumber(con: duckdb.DuckDBPyConnection) -> None:
    """Make ``raw_lines.row_no`` the line number in the file: DuckDB numbers only the lines it
    could read, so every line after one it rejected (``rj_errors``) would be reported too early."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE raw_lines AS
        WITH bad AS (SELECT line, row_number() OVER (ORDER BY line) AS n
                     FROM (SELECT DISTINCT line FROM rj_errors)),
             steps AS (SELECT line - n AS readable_before, max(n) AS skipped
                       FROM bad GROUP BY readable_before)
        SELECT r.row_no + coalesce(s.skipped, 0) AS row_no, r.line
        FROM raw_lines r ASOF LEFT JOIN steps s ON r.row_no > s.readable_before"""
    )


def _columns(con: duckdb.DuckDBPyConnection, calculate_type: str) -> list[str]:
    """Field kinds by position; removes the header line if there is one."""
    first = con.execute("SELECT row_no, line FROM lines ORDER BY row_no LIMIT 1").fetchone()
    single = CALCULATE_TYPES[calculate_type]
    if first is None:
        return [single] if single else []
    row_no, line = first
    names = [_header_name(p) for p in line.split(",")]
    if single is not None:
        if len(names) == 1 and names[0] in HEADERS:
            con.execute("DELETE FROM lines WHERE row_no = ?", [row_no])
        return [single]
    unknown = [n for n in names if n not in HEADERS]
    if unknown:
        # A data row where the header should be: say so without echoing an identifier back.
        looks_like_data = "@" in unknown[0] or sum(c.isdigit() for c in unknown[0]) >= 6
        what = (
            f"the first line looks like data, not a header (column {names.index(unknown[0]) + 1})"
            if looks_like_data
            else f"unknown header {unknown[0]!r}"
        )
        raise FileSpecInvalid(
            f"MULTIPLE_TYPES files need a header row naming each column; {what} "
            f"(accepted: {', '.join(sorted(HEADERS))})",
            field="file",
        )
    for name in set(names):
        if names.count(name) > MAX_HEADER_REPEAT:
            raise FileSpecInvalid(
                f"header {name!r} appears {names.count(name)} times; at most "
                f"{MAX_HEADER_REPEAT} allowed",
                field="file",
            )
    con.execute("DELETE FROM lines WHERE row_no = ?", [row_no])
    return [HEADERS[n] for n in names]


def _header_name(part: str) -> str:
    return part.strip().strip('"').strip().lower().lstrip("\ufeff")


def _fields(con: duckdb.DuckDBPyConnection, kinds: list[str]) -> None:
    """``fields(fid, row_no, pos, v)``: one row per non-empty field of a well-formed line;
    ``line_checks(row_no, reject)``: the (few) malformed lines."""
    n = len(kinds)
    # Spaces, tabs and double quotes around a value go (quoted CSV exports).
    clean = sql_strip("{x}", "(' \"' || chr(9))")
    well_formed = f"length(line) <= {MAX_LINE}"
    if n > 1:
        well_formed += f" AND len(string_split(line, ',')) = {n}"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE line_checks AS
        SELECT row_no, CASE WHEN length(line) > {MAX_LINE} THEN 'line_too_long'
                            ELSE 'wrong_field_count' END AS reject
        FROM lines WHERE NOT ({well_formed})"""
    )
    if n == 1:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE fields AS
              SELECT row_no * {FIELDS_PER_ROW} AS fid, row_no, 0 AS pos,
                     {clean.format(x="line")} AS v
              FROM lines WHERE {well_formed}"""
        )
    else:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE fields AS
            SELECT row_no * {FIELDS_PER_ROW} + pos AS fid, row_no, pos, v FROM (
              SELECT row_no, {clean.format(x="part")} AS v, pos FROM (
                SELECT row_no, unnest(string_split(line, ',')) AS part,
                       generate_subscripts(string_split(line, ','), 1) - 1 AS pos
                FROM lines WHERE {well_formed}))"""
        )
    # A separate pass: filtering in the same query would compute every cleaned value twice.
    con.execute("DELETE FROM fields WHERE v = ''")


def _classify(con: duckdb.DuckDBPyConnection, kinds: list[str], region: str | None) -> None:
    """``keyed(fid, row_no, k, kmask, reason)``: a key, or the reason the field was refused."""
    case_kind = "CASE pos " + " ".join(f"WHEN {i} THEN '{k}'" for i, k in enumerate(kinds))
    case_kind += " END"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE typed AS SELECT *, CASE
          WHEN regexp_full_match(vl, '[0-9a-f]{{64}}') THEN 'sha256'
          -- a long run of digits in a phone column is a number (international prefix), not a hash
          WHEN kind = 'phone' AND regexp_full_match(vl, '[0-9]+') THEN 'raw'
          WHEN regexp_full_match(vl, '[0-9a-f]{{32}}') THEN 'md5'
          WHEN regexp_full_match(vl, '[0-9a-f]{{16,}}') THEN 'bad_hash'
          ELSE 'raw' END AS form
        FROM (SELECT fid, row_no, {case_kind} AS kind, v, lower(v) AS vl FROM fields)"""
    )
    mask = "CASE kind " + " ".join(f"WHEN '{k}' THEN {m}" for k, m in KIND_MASK.items()) + " END"
    parts = [
        f"""SELECT fid, row_no, {sql_hash_key("vl")} AS k, ({mask})::UTINYINT AS kmask,
                   NULL AS reason FROM typed
            WHERE form = 'sha256' OR (form = 'md5' AND kind IN ('idfa', 'gaid', 'maid'))""",
        """SELECT fid, row_no, NULL, NULL, 'md5_not_supported_for_' || kind FROM typed
            WHERE form = 'md5' AND kind IN ('email', 'phone')""",
        """SELECT fid, row_no, NULL, NULL, 'invalid_hash_length' FROM typed
            WHERE form = 'bad_hash'""",
    ]
    present = set(kinds)
    if "email" in present:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW raw_email AS "
            "SELECT fid AS id, v AS raw FROM typed WHERE form = 'raw' AND kind = 'email'"
        )
        normalize_emails(con, "raw_email", "n_email")
        parts.append(
            f"""SELECT e.id, e.id // {FIELDS_PER_ROW},
                CASE WHEN e.norm IS NOT NULL THEN {sql_hash_key("sha256(e.norm)")} END,
                {IdKind.EMAIL.bit}::UTINYINT,
                CASE WHEN e.norm IS NULL THEN 'invalid_email' END FROM n_email e"""
        )
    if "phone" in present:
        reg = "NULL" if region is None else "'" + region.replace("'", "") + "'"
        con.execute(
            "CREATE OR REPLACE TEMP VIEW raw_phone AS SELECT fid AS id, v AS raw, "
            f"{reg}::VARCHAR AS region FROM typed WHERE form = 'raw' AND kind = 'phone'"
        )
        normalize_phones(con, "raw_phone", "n_phone")
        parts.append(
            f"""SELECT p.id, p.id // {FIELDS_PER_ROW},
                CASE WHEN p.e164 IS NOT NULL THEN {sql_hash_key("sha256(p.e164)")} END,
                {IdKind.PHONE.bit}::UTINYINT,
                CASE WHEN p.e164 IS NULL THEN 'invalid_phone' END FROM n_phone p"""
        )
    device_kinds = present & {"idfa", "gaid", "maid"}
    if device_kinds:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW raw_device AS SELECT fid AS id, v AS raw FROM typed "
            "WHERE form = 'raw' AND kind IN ('idfa', 'gaid', 'maid')"
        )
        normalize_devices(con, "raw_device", "n_device")
        parts.append(
            f"""SELECT d.id, d.id // {FIELDS_PER_ROW},
                CASE WHEN d.maid IS NOT NULL THEN {sql_hash_key("sha256(d.maid)")} END,
                ({mask})::UTINYINT,
                CASE WHEN d.maid IS NULL THEN 'invalid_device_id' END
                FROM n_device d JOIN typed t ON t.fid = d.id"""
        )
    con.execute("CREATE OR REPLACE TEMP TABLE keyed AS " + " UNION ALL ".join(parts))
    con.execute("DROP TABLE typed")


def _write_keys(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    target = str(out).replace("'", "''")
    con.execute(
        # Parquet has no 128-bit integer: keep the key's two 64-bit halves (see store.graph).
        f"""COPY (SELECT row_no::UBIGINT AS row_no, (k >> 64)::UBIGINT AS k_hi,
                        (k & 18446744073709551615)::UBIGINT AS k_lo, kmask
                 FROM keyed WHERE k IS NOT NULL)
            TO '{target}' (FORMAT parquet, COMPRESSION zstd)"""
    )


def _row_stats(
    con: duckdb.DuckDBPyConnection, result: ParseResult, bad_lines: list[int], single: bool
) -> None:
    """Valid rows and rejected rows by reason (a row is valid when any of its fields is)."""
    if single:  # one field per row: its status is the row's
        status = "SELECT row_no, reason FROM keyed"
    else:
        status = """SELECT row_no, CASE WHEN bool_or(k IS NOT NULL) THEN NULL
                                   ELSE min(reason) END AS reason
                    FROM keyed GROUP BY row_no"""
    rows = con.execute(
        f"""SELECT reason, count(*), list(row_no ORDER BY row_no)[1:5] FROM (
              {status} UNION ALL SELECT row_no, reject FROM line_checks)
            GROUP BY reason"""
    ).fetchall()
    seen = 0
    for reason, n, sample in rows:
        seen += int(n)
        if reason is None:
            result.rows_valid = int(n)
        else:
            result.rejects[reason] = int(n)
            result.reject_lines[reason] = [int(x) for x in sample]
    lines = result.rows_total - len(bad_lines)
    if seen < lines:  # lines whose every field is empty (",,")
        empty = con.execute(
            """SELECT count(*), list(row_no ORDER BY row_no)[1:5] FROM lines
               WHERE row_no NOT IN (SELECT row_no FROM fields)
                 AND row_no NOT IN (SELECT row_no FROM line_checks)"""
        ).fetchone()
        assert empty is not None
        result.rejects["no_identifier"] = int(empty[0])
        result.reject_lines["no_identifier"] = [int(x) for x in empty[1]]
    if bad_lines:
        result.rejects["invalid_utf8"] = len(bad_lines)
        result.reject_lines["invalid_utf8"] = bad_lines[:5]
    result.rows_rejected = sum(result.rejects.values())
    keys = con.execute("SELECT count(*) FROM keyed WHERE k IS NOT NULL").fetchone()
    result.keys = int(keys[0]) if keys else 0
    con.execute("DROP TABLE line_checks")


def _looks_binary(con: duckdb.DuckDBPyConnection, unreadable: int, rows_total: int) -> bool:
    """At least half the rows are not UTF-8 or hold control characters."""
    row = con.execute(
        "SELECT count(*) FILTER (WHERE regexp_matches(line, '[\\x00-\\x08\\x0e-\\x1f]')) FROM lines"
    ).fetchone()
    control = int(row[0]) if row else 0
    return rows_total > 0 and (control + unreadable) * 2 >= rows_total


def keys_table(keys: list[tuple[int, int]]) -> pa.Table:
    """In-memory ``(k, kmask)`` keys (streaming API) in the layout ``PlatformGraph`` joins on."""
    return pa.table(
        {
            "k": pa.array([str(k) for k, _ in keys], pa.string()),
            "kmask": pa.array([m for _, m in keys], pa.uint8()),
        }
    )
