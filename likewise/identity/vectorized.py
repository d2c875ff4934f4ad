"""Vectorised normalisation over DuckDB tables: the fast path for imports and customer files.

Each function reads ``src(id, raw[, region])`` and creates a temporary table of normalised values.
The SQL decides the common shapes; the few values it cannot decide are sent, once per distinct
value, through the Python reference normaliser, so the result equals calling that normaliser on
every row.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa

from likewise.identity import email as email_mod
from likewise.identity import phone as phone_mod
from likewise.identity.device import sql_normalize_device_id
from likewise.identity.text import sql_trim


def normalize_emails(con: duckdb.DuckDBPyConnection, src: str, out: str) -> None:
    """``out(id, basic, norm)``: trim+lowercase form and the customer-file form; NULL if invalid."""
    basic = email_mod.sql_basic("raw")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out}_raw AS
        SELECT id, {basic} AS basic, {email_mod.sql_fast_valid(basic)} AS ok
        FROM {src} WHERE raw IS NOT NULL AND {sql_trim("raw")} <> ''"""
    )
    _fallback(con, f"{out}_raw", "basic", email_mod.normalize_email_basic, f"{out}_fb")
    plus = email_mod.sql_strip_plus("b")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT id, b AS basic,
               CASE WHEN b IS NULL THEN NULL ELSE {email_mod.sql_strip_dots(plus)} END AS norm
        FROM (SELECT r.id, CASE WHEN r.ok THEN r.basic ELSE f.norm END AS b
              FROM {out}_raw r LEFT JOIN {out}_fb f ON NOT r.ok AND f.value = r.basic)"""
    )
    # A local part made only of dots/tags has no customer-file form.
    con.execute(f"UPDATE {out} SET norm = NULL WHERE starts_with(norm, '@')")
    con.execute(f"DROP TABLE {out}_raw; DROP TABLE {out}_fb")


def normalize_phones(con: duckdb.DuckDBPyConnection, src: str, out: str) -> None:
    """``out(id, e164)`` from ``src(id, raw, region)``; e164 NULL when not a possible number."""
    text = sql_trim("s.raw")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out}_raw AS
        WITH r AS ({phone_mod.sql_rules_cte()})
        SELECT s.id, {text} AS text, upper(s.region) AS region,
               {phone_mod.sql_fast_phone(text, "r")} AS fast
        FROM {src} s LEFT JOIN r ON r.region = upper(s.region)
        WHERE s.raw IS NOT NULL AND {text} <> ''"""
    )
    pending = con.execute(
        f"SELECT DISTINCT text, region FROM {out}_raw WHERE fast IS NULL"
    ).fetchall()
    rows = [(t, r, phone_mod.library_phone(t, r)) for t, r in pending]
    fb = pa.table(
        {
            "text": pa.array([r[0] for r in rows], pa.string()),
            "region": pa.array([r[1] for r in rows], pa.string()),
            "norm": pa.array([r[2] for r in rows], pa.string()),
        }
    )
    con.register(f"{out}_fbv", fb)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT p.id, coalesce(p.fast, f.norm) AS e164 FROM {out}_raw p
        LEFT JOIN {out}_fbv f ON p.fast IS NULL AND f.text = p.text
             AND f.region IS NOT DISTINCT FROM p.region"""
    )
    con.unregister(f"{out}_fbv")
    con.execute(f"DROP TABLE {out}_raw")


def normalize_devices(con: duckdb.DuckDBPyConnection, src: str, out: str) -> None:
    """``out(id, maid)``: lowercase UUID form, NULL when not a usable device id."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT id, {sql_normalize_device_id("raw")} AS maid FROM {src}
        WHERE raw IS NOT NULL AND {sql_trim("raw")} <> ''"""
    )


def _fallback(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    normalise: Callable[[str], str | None],
    out: str,
) -> None:
    """``out(value, norm)`` for the distinct values the fast path did not decide."""
    pending = [
        v for (v,) in con.execute(f"SELECT DISTINCT {column} FROM {table} WHERE NOT ok").fetchall()
    ]
    fb = pa.table(
        {
            "value": pa.array(pending, pa.string()),
            "norm": pa.array([normalise(v) for v in pending], pa.string()),
        }
    )
    con.register(f"{out}_v", fb)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT * FROM {out}_v")
    con.unregister(f"{out}_v")
