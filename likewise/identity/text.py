"""Whitespace handling shared by every normaliser.

Only ASCII whitespace is trimmed, identically in Python and in DuckDB SQL.
"""

from __future__ import annotations

WHITESPACE = " \t\r\n\f\v"
_SQL_WHITESPACE = "(' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))"


def trim(value: str) -> str:
    return value.strip(WHITESPACE)


def sql_trim(expr: str) -> str:
    return f"trim({expr}, {_SQL_WHITESPACE})"
