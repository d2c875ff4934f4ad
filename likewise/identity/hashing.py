"""Hashes and the 128-bit keys the identity graph joins on.

A key is the first 128 bits of an identifier's hash (SHA-256 or MD5), as an unsigned integer.
128 bits make an accidental collision between tens of millions of keys vanishingly unlikely
(about 1e-22), while joining far faster than 64-character strings.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SHA256 = re.compile(r"[0-9a-f]{64}")
_MD5 = re.compile(r"[0-9a-f]{32}")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def md5_hex(value: str) -> str:
    return hashlib.md5(value.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """True for 64 lowercase hex characters (callers lowercase and trim first)."""
    return _SHA256.fullmatch(value) is not None


def is_md5_hex(value: str) -> bool:
    return _MD5.fullmatch(value) is not None


def hash_key(hex_digest: str) -> int:
    """The graph key of a hex digest (SHA-256 or MD5): its first 32 hex digits as an integer."""
    return int(hex_digest[:32], 16)


def key_halves(keys: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """128-bit keys as their high and low 64-bit halves (the layout of key files and arrays)."""
    hi = np.array([k >> 64 for k in keys], np.uint64)
    lo = np.array([k & 0xFFFF_FFFF_FFFF_FFFF for k in keys], np.uint64)
    return hi, lo


# Each byte's value as a hex digit (either case), 255 for any other byte.
_NIBBLE = np.full(256, 255, np.uint8)
for _digits, _base in ((b"0123456789", 0), (b"abcdef", 10), (b"ABCDEF", 10)):
    _NIBBLE[np.frombuffer(_digits, np.uint8)] = _base + np.arange(len(_digits), dtype=np.uint8)


_HIGH_NIBBLES = np.uint64(0xF0F0_F0F0_F0F0_F0F0)


def digest_halves(digests: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The keys of hex digests (no nulls) as high and low halves, with a mask of the digests
    that have one (at least 32 hex digits); :func:`hash_key` for a whole column at once,
    vectorised (a few nanoseconds a digest, against 0.4 µs in SQL)."""
    text = pc.cast(digests, pa.large_string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    n = len(text)
    if n == 0:
        empty = np.empty(0, np.uint64)
        return empty, empty, np.empty(0, bool)
    _, offsets_buf, data_buf = text.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64)[text.offset : text.offset + n + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    lengths = np.diff(offsets)
    width = int(lengths[0])
    if width >= 32 and (lengths == width).all():  # the usual column: one width, no gather
        start = int(offsets[0])
        digits = data[start : start + n * width].reshape(n, width)[:, :32]
        valid = np.ones(n, bool)
    else:
        valid = lengths >= 32
        at = np.where(valid, offsets[:-1], 0)[:, None] + np.arange(32)
        digits = (
            data[np.minimum(at, max(len(data) - 1, 0))]
            if len(data)
            else np.zeros((n, 32), np.uint8)
        )
    nibbles = _NIBBLE[digits]  # contiguous: (n, 32) bytes, each 0-15 or 255
    words = nibbles.view(np.uint64)  # a byte of 255 sets a high nibble
    valid &= ((words[:, 0] | words[:, 1] | words[:, 2] | words[:, 3]) & _HIGH_NIBBLES) == 0
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]  # 16 bytes, most significant first
    halves = np.ascontiguousarray(packed).view(">u8").astype(np.uint64)
    return halves[:, 0].copy(), halves[:, 1].copy(), valid


def spans(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` cut into at most ``parts`` consecutive ``(start, stop)`` spans, one per
    thread."""
    step = max(1, -(-n // parts))
    return [(a, min(a + step, n)) for a in range(0, n, step)]
