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
from likewise.identity import email as email_mod
from likewise.identity import file_fields
from likewise.identity import phone as phone_mod
from likewise.identity.hashing import sql_hash_key
from likewise.identity.kinds import MAID_MASK, IdKind

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


# Lines with something on them (blank and whitespace-only lines are skipped, not rejected).
_LINES = """SELECT row_no, line FROM raw_lines WHERE line IS NOT NULL AND line <> ''
    AND (NOT contains(' ' || chr(9), left(line, 1)) OR trim(line, ' ' || chr(9)) <> '')"""


def parse_customer_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    calculate_type: str,
    out: Path,
    *,
    region: str | None = None,
) -> ParseResult:
    """Parse ``path`` into keys at ``out`` (Parquet). Raises a domain error for unusable files.

    Two passes over the data: one materialises every field's outcome (``stage``), the other
    hashes and writes the keys. At 10M rows each intermediate table would cost seconds.
    """
    if calculate_type not in CALCULATE_TYPES:
        raise CalculateTypeUnsupported(
            f"calculate_type {calculate_type!r} is not supported", field="calculate_type"
        )
    if _contains(path, DELIMITER):
        # The reader splits lines on \x01 and would silently drop what follows one: parse a
        # copy where it is replaced by another control byte, so the line is kept whole and
        # rejected as a control character (rare: no identifier contains either byte).
        copy = path.with_name(path.name + ".lines")  # beside the upload: purged at start
        try:
            _replace_byte(path, copy, DELIMITER, CONTROL_MARK)
            return parse_customer_file(con, copy, calculate_type, out, region=region)
        finally:
            copy.unlink(missing_ok=True)
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
    bad_encoding = [
        int(r[0])
        for r in con.execute("SELECT DISTINCT line FROM rj_errors ORDER BY line").fetchall()
    ]
    if bad_encoding:
        _renumber(con)
    con.execute(f"CREATE OR REPLACE TEMP VIEW lines AS {_LINES}")
    kinds, header = _columns(con, calculate_type)
    if header is not None:
        con.execute(f"CREATE OR REPLACE TEMP VIEW lines AS {_LINES} AND row_no <> {header}")
    result = ParseResult()
    total = con.execute("SELECT count(*) FROM lines").fetchone()
    result.rows_total = (int(total[0]) if total else 0) + len(bad_encoding)
    if result.rows_total == 0:
        raise FileInvalid("the file has no data rows (only blank lines or a header)", field="file")

    _stage(con, kinds, region)
    _fallback(con, kinds, region)
    _write_keys(con, kinds, out)
    _row_stats(con, result, kinds, bad_encoding)
    if result.rows_valid == 0 and _looks_binary(con, len(bad_encoding), result.rows_total):
        raise FileInvalid(
            "the file is not a UTF-8 text file of identifiers (binary data or another encoding)",
            field="file",
        )
    con.execute(
        "DROP VIEW IF EXISTS resolved; DROP VIEW IF EXISTS lines; DROP TABLE IF EXISTS stage; "
        "DROP TABLE IF EXISTS raw_lines; DROP TABLE IF EXISTS fallback"
    )
    return result


DELIMITER = b"\x01"  # the reader's column delimiter: never expected in a customer file
CONTROL_MARK = b"\x02"  # what a \x01 is replaced with (chr(2) in the SQL above)
_CHUNK = 8 * 1024 * 1024


def _contains(path: Path, byte: bytes) -> bool:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            if byte in chunk:
                return True
    return False


def _replace_byte(src: Path, dst: Path, old: bytes, new: bytes) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            fout.write(chunk.replace(old, new))


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


def _columns(con: duckdb.DuckDBPyConnection, calculate_type: str) -> tuple[list[str], int | None]:
    """Field kinds by position, and the header's line number if the file has one."""
    first = con.execute("SELECT row_no, line FROM lines ORDER BY row_no LIMIT 1").fetchone()
    single = CALCULATE_TYPES[calculate_type]
    if first is None:
        return ([single] if single else []), None
    row_no, line = first
    names = [_header_name(p) for p in line.split(",")]
    if single is not None:
        if len(names) == 1 and names[0] in HEADERS:
            return [single], int(row_no)
        return [single], None
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
    return [HEADERS[n] for n in names], int(row_no)


def _header_name(part: str) -> str:
    return part.strip().strip('"').strip().lower().lstrip("\ufeff")


def _stage(con: duckdb.DuckDBPyConnection, kinds: list[str], region: str | None) -> None:
    """``stage``: one row per line, with ``line_reason`` (a malformed line) and, per column i,
    ``hex_i, norm_i, fb_i, reason_i`` (see :mod:`likewise.identity.file_fields`)."""
    n = len(kinds)
    well_formed = f"length(line) <= {MAX_LINE}"
    if n > 1:
        well_formed += f" AND strlen(line) - strlen(replace(line, ',', '')) = {n - 1}"
    well_formed = f"NOT contains(line, chr(2)) AND {well_formed}"
    query = f"""SELECT row_no, line, ({well_formed}) AS well,
        CASE WHEN contains(line, chr(2)) THEN 'control_character'
             WHEN length(line) > {MAX_LINE} THEN 'line_too_long'
             WHEN NOT ({well_formed}) THEN 'wrong_field_count' END AS line_reason
        FROM lines"""
    if "phone" in kinds:
        query = f"SELECT * FROM ({query}) CROSS JOIN ({file_fields.rule_columns(region)})"
    for pos, kind in enumerate(kinds):
        raw = "line" if n == 1 else f"split_part(line, ',', {pos + 1})"
        for layer in file_fields.column_layers(kind, pos, f"CASE WHEN well THEN {raw} END"):
            query = f"SELECT *, {', '.join(layer)} FROM ({query})"
    outputs = ", ".join(f"{o}_{i}" for i in range(n) for o in file_fields.OUTPUTS)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE stage AS SELECT row_no, line_reason, {outputs} "
        f"FROM ({query})"
    )


def _fallback(con: duckdb.DuckDBPyConnection, kinds: list[str], region: str | None) -> None:
    """The Python reference's answer for each distinct value SQL left undecided, so the result
    equals normalising every row in Python; and the ``resolved`` view that merges it in, with
    ``norm_i`` and ``reason_i`` final."""
    deciders = {
        "email": (email_mod.normalize_email_file, "invalid_email"),
        "phone": (lambda t: phone_mod.library_phone(t, region), "invalid_phone"),
    }
    rows: list[tuple[str, str, str | None, str | None]] = []
    for kind, (decide, reason) in deciders.items():
        cols = [f"fb_{i}" for i, k in enumerate(kinds) if k == kind]
        if not cols:
            continue
        union = " UNION ALL ".join(
            f"SELECT {c} AS t FROM stage WHERE {c} IS NOT NULL" for c in cols
        )
        for (text,) in con.execute(f"SELECT DISTINCT t FROM ({union})").fetchall():
            norm = decide(text)
            rows.append((kind, text, norm, reason if norm is None else None))
    decided = pa.table(
        {
            "kind": pa.array([r[0] for r in rows], pa.string()),
            "text": pa.array([r[1] for r in rows], pa.string()),
            "norm": pa.array([r[2] for r in rows], pa.string()),
            "reason": pa.array([r[3] for r in rows], pa.string()),
        }
    )
    con.register("fallback_decided", decided)
    con.execute("CREATE OR REPLACE TEMP TABLE fallback AS SELECT * FROM fallback_decided")
    con.unregister("fallback_decided")
    select, joins = ["s.row_no", "s.line_reason"], []
    for i, kind in enumerate(kinds):
        if kind in deciders:
            joins.append(
                f"LEFT JOIN fallback f{i} ON f{i}.kind = '{kind}' AND f{i}.text = s.fb_{i}"
            )
            select += [
                f"s.hex_{i}",
                f"coalesce(s.norm_{i}, f{i}.norm) AS norm_{i}",
                f"coalesce(s.reason_{i}, f{i}.reason) AS reason_{i}",
            ]
        else:
            select += [f"s.hex_{i}", f"s.norm_{i}", f"s.reason_{i}"]
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW resolved AS SELECT {', '.join(select)} FROM stage s "
        + " ".join(joins)
    )


def _write_keys(con: duckdb.DuckDBPyConnection, kinds: list[str], out: Path) -> None:
    target = str(out).replace("'", "''")
    parts = []
    for i, kind in enumerate(kinds):
        key = (
            f"CASE WHEN hex_{i} IS NOT NULL THEN {sql_hash_key(f'hex_{i}')} "
            f"ELSE {sql_hash_key(f'sha256(norm_{i})')} END"
        )
        parts.append(
            f"SELECT row_no, {key} AS k, {KIND_MASK[kind]}::UTINYINT AS kmask FROM resolved "
            f"WHERE hex_{i} IS NOT NULL OR norm_{i} IS NOT NULL"
        )
    # Parquet has no 128-bit integer: keep the key's two 64-bit halves (see store.graph). The
    # keys are random, so compressing them costs time and saves nothing.
    con.execute(
        f"""COPY (SELECT row_no::UBIGINT AS row_no, (k >> 64)::UBIGINT AS k_hi,
                        (k & 18446744073709551615)::UBIGINT AS k_lo, kmask
                 FROM ({" UNION ALL ".join(parts)}))
            TO '{target}' (FORMAT parquet, COMPRESSION uncompressed)"""
    )


def _row_stats(
    con: duckdb.DuckDBPyConnection, result: ParseResult, kinds: list[str], bad_lines: list[int]
) -> None:
    """Valid rows and rejected rows by reason (a row is valid when any of its fields is)."""
    n = len(kinds)
    oks = [f"(hex_{i} IS NOT NULL OR norm_{i} IS NOT NULL)" for i in range(n)]
    reasons = ", ".join(f"reason_{i}" for i in range(n))
    first_reason = f"least({reasons})" if n > 1 else reasons
    rows = con.execute(
        f"""SELECT reason, count(*), min(row_no, 5), sum(keys) FROM (
              SELECT row_no, {" + ".join(f"{ok}::INTEGER" for ok in oks)} AS keys,
                     CASE WHEN {" OR ".join(oks)} THEN NULL
                          ELSE coalesce(line_reason, {first_reason}, 'no_identifier') END AS reason
              FROM resolved)
            GROUP BY reason"""
    ).fetchall()
    for reason, count, sample, keys in rows:
        result.keys += int(keys)
        if reason is None:
            result.rows_valid = int(count)
        else:
            result.rejects[reason] = int(count)
            result.reject_lines[reason] = [int(x) for x in sample]
    if bad_lines:
        result.rejects["invalid_utf8"] = len(bad_lines)
        result.reject_lines["invalid_utf8"] = bad_lines[:5]
    result.rows_rejected = sum(result.rejects.values())


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
