"""Customer-file fields: from each line's raw fields to 128-bit keys, or the reason there are none.

Every field ends as exactly one of:

* an advertiser's hash (TikTok's rule: 64 hex characters are a SHA-256; 32 are an MD5, accepted
  for device ids only), kept as it came;
* a value normalised with the customer-file rules and hashed here;
* a reason it was refused (``invalid_email``, ``md5_not_supported_for_email``, ...);

or nothing when the field is empty. A line is valid when any of its fields gave a key; otherwise
it is reported with its line-level problem, the first reason of its fields by name, or
``no_identifier``.

The compiled kernel (``_fast.pyx``) decides nearly every field, both cores at once; what it
cannot decide (non-ASCII text, addresses outside the strict pattern, unusual phone shapes) comes
back here once per distinct value and goes through the Python reference normalisers, so the
result equals normalising every field in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from likewise.identity import _fast
from likewise.identity import email as email_mod
from likewise.identity import phone as phone_mod
from likewise.identity.hashing import hash_key, key_halves, sha256_hex, spans

CHUNK_BYTES = 32 << 20  # read at a time; a longer line grows the buffer
BATCH_LINES = 1 << 19  # lines per kernel call: large enough to amortise, small in memory
BOM = b"\xef\xbb\xbf"

KEYS_SCHEMA = pa.schema(
    [
        ("row_no", pa.uint64()),
        ("k_hi", pa.uint64()),
        ("k_lo", pa.uint64()),
        ("kmask", pa.uint8()),
    ]
)

REASON_CODES = {name: code for code, name in _fast.REASONS.items()}
_VALID = 0
_SKIP = _fast.SKIP
SAMPLE_LINES = 5

# The file's first line of text -> the kind of each column, and whether that line is a header
# rather than data. May raise a domain error (an unusable header).
Columns = Callable[[str], tuple[list[str], bool]]


@dataclass
class Outcome:
    """What the lines of a file gave: keys written, rows, and rejected rows by reason."""

    keys: int = 0
    rows: int = 0
    valid: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[int]] = field(default_factory=dict)  # first line numbers
    controls: int = 0  # rejected lines holding control characters

    def tally(self, status: np.ndarray, first_line: int) -> None:
        """Count a batch's lines; line i of it is line ``first_line + i`` of the file."""
        by_code = np.bincount(status, minlength=256)
        self.rows += len(status) - int(by_code[_SKIP])
        self.valid += int(by_code[_VALID])
        for code in np.flatnonzero(by_code):
            if code in (_VALID, _SKIP):
                continue
            name = _fast.REASONS[int(code)]
            self.rejects[name] = self.rejects.get(name, 0) + int(by_code[code])
            sample = self.samples.setdefault(name, [])
            if len(sample) < SAMPLE_LINES:
                first = np.flatnonzero(status == code)[: SAMPLE_LINES - len(sample)]
                sample.extend(int(i) + first_line for i in first)


def write_keys(
    path: Path,
    columns: Columns,
    kind_mask: dict[str, int],
    region: str | None,
    out: Path,
    *,
    threads: int = 2,
) -> Outcome:
    """Read the customer file at ``path``, decide every field of every line, write the keys to
    ``out`` (Parquet: ``row_no, k_hi, k_lo, kmask``; ``row_no`` is the line number) and count
    the lines. Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r``; a UTF-8 byte order mark
    at the start is skipped; blank lines (spaces and tabs) are not rows."""
    outcome = Outcome()
    reader = _Lines(path)
    known = phone_mod.RULES.get((region or "").upper())
    rule = None if known is None else phone_mod.kernel_rule(known)
    prefixes = phone_mod.kernel_prefixes()
    # Parquet has no 128-bit integer: the key's two 64-bit halves (see store.graph). The keys are
    # random, so compressing them costs time and saves nothing.
    with (
        pq.ParquetWriter(
            out, KEYS_SCHEMA, compression="none", use_dictionary=False, write_statistics=False
        ) as writer,
        ThreadPoolExecutor(threads) as pool,
    ):
        kinds: list[str] | None = None
        decide: _Fallback | None = None
        for data, starts, ends, first_line in reader:
            n = len(starts)
            skip = -1
            if kinds is None:
                found = _first_text(data, starts, ends)
                if found is None:
                    # Nothing but blank or unreadable lines so far: count them and read on.
                    status = np.full(n, _SKIP, np.uint8)
                    unreadable = [i for i in range(n) if not _readable(data, starts, ends, i)]
                    status[unreadable] = REASON_CODES["invalid_utf8"]
                    outcome.tally(status, first_line)
                    continue
                text = data[starts[found] : ends[found]].tobytes().decode("utf-8")
                kinds, is_header = columns(text)
                skip = found if is_header else -1  # the header line is not a row
                decide = _Fallback(kinds, region)
                codes = np.array([_fast.KIND_CODES[k] for k in kinds], np.uint8)
                mask_of = np.array([kind_mask[k] for k in kinds], np.uint8)
            assert decide is not None
            status = np.empty(n, np.uint8)

            run = partial(_Part.decide, data, starts, ends, skip, codes, rule, prefixes, status)
            parts = list(pool.map(run, spans(n, threads)))
            outcome.controls += sum(p.controls for p in parts)
            extra = decide.resolve(parts, data, status)
            line_no = np.arange(first_line, first_line + n, dtype=np.uint64)
            table = _keys_table(parts, extra, line_no, mask_of)
            writer.write_table(table)
            outcome.keys += table.num_rows
            outcome.tally(status, first_line)
    return outcome


class _Lines:
    """The file's lines in batches: ``(data, starts, ends, number of the first line)``, the
    spans valid until the next batch is read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
        buf = bytearray(CHUNK_BYTES)
        starts = np.empty(BATCH_LINES, np.int64)
        ends = np.empty(BATCH_LINES, np.int64)
        line = 1
        filled = 0  # bytes in buf: the unread rest of the last chunk, then new ones
        with open(self.path, "rb", buffering=0) as fh:
            if fh.read(len(BOM)) != BOM:
                fh.seek(0)
            final = False
            while not final:
                if filled == len(buf):  # one line longer than the buffer: a new, larger one
                    buf = buf + bytes(len(buf))
                got = fh.readinto(memoryview(buf)[filled:])
                final = got == 0
                filled += got
                data = np.frombuffer(buf, np.uint8)
                pos = 0
                while True:
                    count, pos = _fast.find_lines(data, pos, filled, final, starts, ends)
                    if count == 0:
                        break
                    yield data, starts[:count], ends[:count], line
                    line += count
                del data  # the buffer is written again below
                buf[: filled - pos] = buf[pos:filled]
                filled -= pos


def _first_text(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> int | None:
    """The index of the first line that is readable and not blank."""
    for i in range(len(starts)):
        if _readable(data, starts, ends, i):
            line = data[starts[i] : ends[i]].tobytes()
            if line.strip(b" \t"):
                return i
    return None


def _readable(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, i: int) -> bool:
    try:
        data[starts[i] : ends[i]].tobytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@dataclass
class _Part:
    """The kernel's output for one span of lines."""

    key_line: np.ndarray
    key_hi: np.ndarray
    key_lo: np.ndarray
    key_col: np.ndarray
    fb_line: np.ndarray
    fb_col: np.ndarray
    fb_start: np.ndarray
    fb_len: np.ndarray
    controls: int

    @classmethod
    def decide(
        cls,
        data: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        skip: int,
        codes: np.ndarray,
        rule: phone_mod.KernelRule | None,
        prefixes: list[phone_mod.KernelPrefix],
        status: np.ndarray,
        span: tuple[int, int],
    ) -> _Part:
        cap = (span[1] - span[0]) * len(codes)
        key_line, key_hi = np.empty(cap, np.uint32), np.empty(cap, np.uint64)
        key_lo, key_col = np.empty(cap, np.uint64), np.empty(cap, np.uint8)
        fb_line, fb_col = np.empty(cap, np.uint32), np.empty(cap, np.uint8)
        fb_start, fb_len = np.empty(cap, np.int64), np.empty(cap, np.int32)
        nkeys, nfb, controls = _fast.customer_lines(
            data,
            starts,
            ends,
            span[0],
            span[1],
            skip,
            codes,
            rule,
            prefixes,
            key_line,
            key_hi,
            key_lo,
            key_col,
            status,
            fb_line,
            fb_col,
            fb_start,
            fb_len,
        )
        return cls(
            key_line[:nkeys],
            key_hi[:nkeys],
            key_lo[:nkeys],
            key_col[:nkeys],
            fb_line[:nfb],
            fb_col[:nfb],
            fb_start[:nfb],
            fb_len[:nfb],
            controls,
        )


@dataclass
class _Extra:
    """Keys the Python reference gave (fields the kernel left undecided)."""

    line: list[int] = field(default_factory=list)
    col: list[int] = field(default_factory=list)
    key: list[int] = field(default_factory=list)


class _Fallback:
    """The Python reference for fields the kernel left undecided, once per distinct value."""

    def __init__(self, kinds: list[str], region: str | None) -> None:
        self.kinds = kinds
        deciders: dict[str, tuple[Callable[[str], str | None], str]] = {
            "email": (email_mod.normalize_email_file, "invalid_email"),
            "phone": (lambda t: phone_mod.library_phone(t, region), "invalid_phone"),
        }
        self.deciders = deciders
        self.cache: dict[tuple[str, str], int | str] = {}

    def decide(self, kind: str, text: str) -> int | str:
        """The key of a field (an int) or the reason it is refused (a str)."""
        hit = self.cache.get((kind, text))
        if hit is None:
            normalize, reason = self.deciders[kind]
            norm = normalize(text)
            hit = reason if norm is None else hash_key(sha256_hex(norm))
            self.cache[(kind, text)] = hit
        return hit

    def resolve(self, parts: list[_Part], data: np.ndarray, status: np.ndarray) -> _Extra:
        """Decide every undecided field of ``parts``; update ``status`` of their lines."""
        extra = _Extra()
        for part in parts:
            for line, col, start, length in _fallbacks(part):
                text = data[start : start + length].tobytes().decode("utf-8")
                got = self.decide(self.kinds[col], text)
                if isinstance(got, int):
                    extra.line.append(line)
                    extra.col.append(col)
                    extra.key.append(got)
                    status[line] = _VALID
                elif status[line] != _VALID:
                    status[line] = min(int(status[line]), REASON_CODES[got])
        return extra


def _fallbacks(part: _Part) -> Iterator[tuple[int, int, int, int]]:
    return zip(
        part.fb_line.tolist(),
        part.fb_col.tolist(),
        part.fb_start.tolist(),
        part.fb_len.tolist(),
        strict=True,
    )


def _keys_table(
    parts: list[_Part], extra: _Extra, row_no: np.ndarray, mask_of: np.ndarray
) -> pa.Table:
    extra_hi, extra_lo = key_halves(extra.key)
    lines = [p.key_line for p in parts] + [np.array(extra.line, np.uint32)]
    cols = [p.key_col for p in parts] + [np.array(extra.col, np.uint8)]
    his = [p.key_hi for p in parts] + [extra_hi]
    los = [p.key_lo for p in parts] + [extra_lo]
    return pa.table(
        [
            row_no[np.concatenate(lines)],
            np.concatenate(his),
            np.concatenate(los),
            mask_of[np.concatenate(cols)],
        ],
        schema=KEYS_SCHEMA,
    )
