"""The platform's side of matching: every documented form of its users' identifiers, hashed.

An advertiser may have hashed an address or a number with any normalisation TikTok documents
(reference section 2.3), so each identifier yields several keys: an e-mail its trim+lowercase
form, the form without ``+tag`` and the form without the local part's dots (each where it
differs); a phone its E.164 form with and without ``+``; a device id SHA-256 and MD5 of its
lower- and upper-case forms.

The compiled kernel (``_fast.user_keys``) decides and hashes nearly every value, on several
threads; the rest (non-ASCII addresses, addresses outside the strict pattern, unusual phone
shapes) goes through the Python reference normalisers once per distinct value, so the keys
equal what those normalisers give for every value.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likewise.identity import _fast
from likewise.identity import email as email_mod
from likewise.identity import phone as phone_mod
from likewise.identity.hashing import hash_key, key_halves, sha256_hex, spans
from likewise.identity.text import trim

_REGIONS = list(phone_mod.RULES)  # a row's region is an index into this list (-1: none)
Forms = Callable[[str, str | None], list[str]]  # a value and its region -> the forms to hash
_RULES = [phone_mod.kernel_rule(r) for r in phone_mod.RULES.values()]


@dataclass
class Keys:
    """The keys of one column's values: halves, the row each came from, and whether it is the
    first form of its value (one per identifier, for counting); valid and refused values."""

    k_hi: np.ndarray
    k_lo: np.ndarray
    row: np.ndarray
    first: np.ndarray
    valid: int
    invalid: int


def column_keys(
    kind: str,
    values: pa.Array | pa.ChunkedArray,
    regions: pa.Array | pa.ChunkedArray | None,
    pool: Executor,
    threads: int,
) -> Keys:
    """Keys of ``values`` (strings, NULL for none) of identifier ``kind`` (``email``, ``phone``,
    ``idfa``, ``gaid``); ``regions`` (each row's country) is the default region of phones."""
    code = _fast.KIND_CODES[kind]
    arr = _one_chunk(pc.fill_null(values, ""))
    regions = None if regions is None else _one_chunk(regions)
    offsets, data = _string_buffers(arr)
    n = len(arr)
    region = (
        _region_index(regions, n) if code == _fast.KIND_CODES["phone"] else np.empty(0, np.int8)
    )
    outcome = np.empty(n, np.uint8)
    prefixes = phone_mod.kernel_prefixes()
    run = partial(_decide, code, offsets, data, region, prefixes, outcome)
    parts = list(pool.map(run, spans(n, threads)))
    fallback = np.flatnonzero(outcome == _fast.U_FALLBACK)
    extra_rows, extra_keys = _fallback(kind, fallback, offsets, data, regions)
    extra_hi, extra_lo = key_halves(extra_keys)
    k_hi = [p[0] for p in parts] + [extra_hi]
    k_lo = [p[1] for p in parts] + [extra_lo]
    rows = [p[2] for p in parts] + [np.array(extra_rows, np.uint32)]
    row = np.concatenate(rows)
    # Keys of one value are written together, its first form first.
    first = np.ones(len(row), bool)
    first[1:] = row[1:] != row[:-1]
    decided = np.bincount(outcome, minlength=4)
    fallback_valid = len(set(extra_rows))
    return Keys(
        np.concatenate(k_hi),
        np.concatenate(k_lo),
        row,
        first,
        valid=int(decided[_fast.U_KEYS]) + fallback_valid,
        invalid=int(decided[_fast.U_INVALID]) + len(fallback) - fallback_valid,
    )


def _decide(
    code: int,
    offsets: np.ndarray,
    data: np.ndarray,
    region: np.ndarray,
    prefixes: list[phone_mod.KernelPrefix],
    outcome: np.ndarray,
    span: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cap = (span[1] - span[0]) * _fast.KEYS_PER_VALUE[code]
    k_hi, k_lo, row = np.empty(cap, np.uint64), np.empty(cap, np.uint64), np.empty(cap, np.uint32)
    n = _fast.user_keys(
        code, offsets, data, span[0], span[1], region, _RULES, prefixes, k_hi, k_lo, row, outcome
    )
    return k_hi[:n], k_lo[:n], row[:n]


def _one_chunk(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and bytes of an Arrow string array without NULLs, without copying."""
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, width)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(1, np.uint8)
    return offsets, data


def _region_index(regions: pa.Array | None, n: int) -> np.ndarray:
    """Each row's index into the phone rules (-1: no rule for its region)."""
    if regions is None:
        return np.full(n, -1, np.int8)
    encoded = pc.dictionary_encode(regions)
    lookup = np.array(
        [
            _REGIONS.index(r.upper()) if r.upper() in phone_mod.RULES else -1
            for r in encoded.dictionary.to_pylist()
        ]
        + [-1],
        np.int8,
    )
    indices = encoded.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
    return lookup[indices]


def _fallback(
    kind: str,
    rows: np.ndarray,
    offsets: np.ndarray,
    data: np.ndarray,
    regions: pa.Array | None,
) -> tuple[list[int], list[int]]:
    """Keys of the values the kernel left to the reference, once per distinct value."""
    out_rows: list[int] = []
    out_keys: list[int] = []
    cache: dict[tuple[str, str | None], list[int]] = {}
    forms: Callable[[str, str | None], list[str]] = (
        _email_forms if kind == "email" else _phone_forms
    )
    wanted = kind == "phone" and regions is not None and len(rows)
    region_of = regions.take(pa.array(rows)).to_pylist() if wanted else [None] * len(rows)
    for i, region in zip(rows.tolist(), region_of, strict=True):
        text = trim(data[offsets[i] : offsets[i + 1]].tobytes().decode("utf-8"))
        keys = cache.get((text, region))
        if keys is None:
            keys = [hash_key(sha256_hex(f)) for f in forms(text, region)]
            cache[(text, region)] = keys
        out_rows += [i] * len(keys)
        out_keys += keys
    return out_rows, out_keys


def _email_forms(text: str, _region: str | None) -> list[str]:
    return email_mod.email_variants(text)


def _phone_forms(text: str, region: str | None) -> list[str]:
    e164 = phone_mod.library_phone(text, region)
    return [] if e164 is None else phone_mod.phone_variants(e164)
