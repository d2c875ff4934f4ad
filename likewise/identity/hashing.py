"""Hashes and the 128-bit keys the identity graph joins on.

A key is the first 128 bits of an identifier's hash (SHA-256 or MD5), as an unsigned integer.
128 bits make an accidental collision between tens of millions of keys vanishingly unlikely
(about 1e-22), while joining far faster than 64-character strings.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

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


def spans(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` cut into at most ``parts`` consecutive ``(start, stop)`` spans, one per
    thread."""
    step = max(1, -(-n // parts))
    return [(a, min(a + step, n)) for a in range(0, n, step)]
