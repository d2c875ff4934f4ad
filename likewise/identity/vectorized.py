"""Vectorised normalisation over DuckDB tables: the fast path for imports and customer files.

Each function reads ``src(id, raw[, region])`` and creates a temporary table of normalised values.
The SQL decides the common shapes; the few values it cannot decide are sent, once per distinct
value, through the Python reference normaliser, so the result equals calling that normaliser on
every row.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from likewise.identity import email as email_mod
from likewise.identity import phone as phone_mod
from likewise.identity.device import sql_normalize_device_id
from likewise.identity.text import sql_trim


def normalize_emails(con: duckdb.DuckDBPyConnection, src: str, out: str) -> None:
    """``out(id, basic, norm)``: trim+lowercase form and the customer-file form; NULL if invalid."""
    text = sql_trim("raw")
    basic = email_mod.sql_basic("raw")
    # SQL decides ASCII values only: its lower() differs from Python's on some non-ASCII letters
    # (DuckDB lowers "İ" to "i", Python to "i" + U+0307), so those go to the reference as typed.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out}_raw AS
        SELECT id, {text} AS text, {basic} AS basic,
               (NOT regexp_matches({text}, '[^\\x00-\\x7F]')
                AND {email_mod.sql_fast_valid(basic)}) AS ok
        FROM {src} WHERE raw IS NOT NULL AND {text} <> ''"""
    )
    pending = [
        v for (v,) in con.execute(f"SELECT DISTINCT text FROM {out}_raw WHERE NOT ok").fetchall()
    ]
    fb = pa.table(
        {
            "value": pa.array(pending, pa.string()),
            "basic": pa.array([email_mod.normalize_email_basic(v) for v in pending], pa.string()),
            "norm": pa.array([email_mod.normalize_email_file(v) for v in pending], pa.string()),
        }
    )
    con.register(f"{out}_fbv", fb)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT r.id,
               CASE WHEN r.ok THEN r.basic ELSE f.basic END AS basic,
               CASE WHEN r.ok THEN {email_mod.sql_file_form("r.basic")} ELSE f.norm END AS norm
        FROM {out}_raw r LEFT JOIN {out}_fbv f ON NOT r.ok AND f.value = r.text"""
    )
    con.unregister(f"{out}_fbv")
    # A local part made only of dots/tags has no customer-file form.
    con.execute(f"UPDATE {out} SET norm = NULL WHERE starts_with(norm, '@')")
    con.execute(f"DROP TABLE {out}_raw")


def normalize_phones(con: duckdb.DuckDBPyConnection, src: str, out: str) -> None:
    """``out(id, e164)`` from ``src(id, raw, region)``; e164 NULL when not a possible number."""
    text = sql_trim("s.raw")
    # Regions are upper-cased by Python, as the reference does (DuckDB's upper() differs on
    # non-ASCII text: Python turns "ß" into "SS").
    regions = [
        r
        for (r,) in con.execute(
            f"SELECT DISTINCT region FROM {src} WHERE region IS NOT NULL"
        ).fetchall()
    ]
    con.register(
        f"{out}_reg",
        pa.table(
            {
                "region": pa.array(regions, pa.string()),
                "up": pa.array([r.upper() for r in regions], pa.string()),
            }
        ),
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {out}_raw AS
        WITH r AS ({phone_mod.sql_rules_cte()}),
        t AS (SELECT id, text, region, {phone_mod.sql_cleaned("text")} AS c
              FROM (SELECT s.id, {text} AS text, s.region FROM {src} s
                    WHERE s.raw IS NOT NULL) WHERE text <> '')
        SELECT t.id, t.text, t.region,
               {phone_mod.sql_fast_phone("t.text", "r.", cleaned="t.c")} AS fast
        FROM t LEFT JOIN {out}_reg g ON g.region = t.region
        LEFT JOIN r ON r.region = g.up"""
    )
    con.unregister(f"{out}_reg")
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
