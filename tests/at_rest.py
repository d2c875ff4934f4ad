"""What a file under the data directory holds, for the "no raw PII at rest" checks: its bytes,
plus the decoded contents of DuckDB, SQLite and Parquet files, whose compression could hide a
string from a byte scan."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pyarrow.parquet as pq


def contents(path: Path) -> bytes:
    """The file's bytes and its decoded contents."""
    blob = path.read_bytes()
    return blob + b"\n" + decoded(path, blob[:16]).encode()


def decoded(path: Path, head: bytes) -> str:
    """The logical contents of the databases and columnar files a byte scan could miss."""
    if head.startswith(b"PAR1"):
        return repr(pq.read_table(path).to_pylist())
    if head.startswith(b"SQLite format 3\x00"):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return "\n".join(con.iterdump())
        finally:
            con.close()
    if head[8:12] == b"DUCK":
        con = duckdb.connect(str(path), read_only=True)
        try:
            tables = con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
            ).fetchall()
            parts = [repr(con.execute(f'SELECT * FROM "{s}"."{t}"').fetchall()) for s, t in tables]
            if path.name == "platform.duckdb":
                assert any(t == "ident" for _, t in tables)  # the scan does see the graph
            return "\n".join(parts)
        finally:
            con.close()
    return ""
