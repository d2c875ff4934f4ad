"""Whitespace handling shared by every normaliser.

Only ASCII whitespace is trimmed, here and in the compiled fast path (``_fast.pyx``).
"""

from __future__ import annotations

WHITESPACE = " \t\r\n\f\v"


def trim(value: str) -> str:
    return value.strip(WHITESPACE)
