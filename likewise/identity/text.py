"""Whitespace handling shared by every normaliser.

Only ASCII whitespace is trimmed, identically in Python and in DuckDB SQL.
"""

from __future__ import annotations

WHITESPACE = " \t\r\n\f\v"
_SQL_WHITESPACE = "(' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))"


def trim(value: str) -> str:
    return value.strip(WHITESPACE)


def sql_trim(expr: str) -> str:
    """``expr`` without surrounding ASCII whitespace (``expr`` should be a column name)."""
    return sql_strip(expr, _SQL_WHITESPACE)


def sql_strip(expr: str, chars: str) -> str:
    """``trim(expr, chars)``, but a value with nothing to strip is passed through untouched.

    DuckDB's trim builds a new string for every row; most values need no trimming, and
    checking their first and last character is about five times cheaper.
    """
    return (
        f"CASE WHEN NOT contains({chars}, left({expr}, 1)) "
        f"AND NOT contains({chars}, right({expr}, 1)) THEN {expr} "
        f"ELSE trim({expr}, {chars}) END"
    )
