"""Customer files: parse, normalise and hash in one pass.

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

import pyarrow as pa

from likewise.errors import CalculateTypeUnsupported, FileInvalid, FileSpecInvalid
from likewise.identity import _fast, file_fields
from likewise.identity.kinds import MAID_MASK, IdKind

MAX_LINE = _fast.MAX_LINE_CHARS  # longer lines are rejected (a 100 KB line is no identifier)
MAX_HEADER_REPEAT = 3

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
    path: Path,
    calculate_type: str,
    out: Path,
    *,
    region: str | None = None,
    threads: int = 2,
) -> ParseResult:
    """Parse ``path`` into keys at ``out`` (Parquet). Raises a domain error for unusable files.

    One pass over the file (see :mod:`likewise.identity.file_fields`), on ``threads`` cores.
    """
    if calculate_type not in CALCULATE_TYPES:
        raise CalculateTypeUnsupported(
            f"calculate_type {calculate_type!r} is not supported", field="calculate_type"
        )
    outcome = file_fields.write_keys(
        path,
        lambda line: _columns(line, calculate_type),
        KIND_MASK,
        region,
        out,
        threads=threads,
    )
    result = ParseResult(
        rows_total=outcome.rows,
        rows_valid=outcome.valid,
        rows_rejected=sum(outcome.rejects.values()),
        keys=outcome.keys,
        rejects=outcome.rejects,
        reject_lines=outcome.samples,
    )
    if result.rows_total == 0:
        raise FileInvalid("the file has no data rows (only blank lines or a header)", field="file")
    unreadable = outcome.rejects.get("invalid_utf8", 0)
    if result.rows_valid == 0 and (outcome.controls + unreadable) * 2 >= result.rows_total:
        # At least half the rows are not UTF-8 or hold control characters.
        raise FileInvalid(
            "the file is not a UTF-8 text file of identifiers (binary data or another encoding)",
            field="file",
        )
    return result


def _columns(line: str, calculate_type: str) -> tuple[list[str], bool]:
    """Field kinds by position, and whether ``line`` (the first line of text) is a header."""
    names = [_header_name(p) for p in line.split(",")]
    single = CALCULATE_TYPES[calculate_type]
    if single is not None:
        return [single], len(names) == 1 and names[0] in HEADERS
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
    return [HEADERS[n] for n in names], True


def _header_name(part: str) -> str:
    return part.strip().strip('"').strip().lower().lstrip("\ufeff")


def keys_table(keys: list[tuple[int, int]]) -> pa.Table:
    """In-memory ``(k, kmask)`` keys (streaming API) in the layout ``PlatformGraph`` joins on."""
    return pa.table(
        {
            "k": pa.array([str(k) for k, _ in keys], pa.string()),
            "kmask": pa.array([m for _, m in keys], pa.uint8()),
        }
    )
