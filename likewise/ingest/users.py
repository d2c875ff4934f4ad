"""Platform users import (CSV or Parquet) into the platform graph.

Raw identifiers are normalised and hashed in memory (``identity.user_keys``) and never written
anywhere: only 128-bit hash keys reach disk. A user may appear on several rows; identifiers
accumulate and re-importing updates attributes (the last non-empty value in the file wins).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from likewise.errors import InvalidParameter
from likewise.identity.kinds import IdKind
from likewise.identity.user_keys import column_keys
from likewise.store.graph import KEY_FROM_HALVES, PlatformGraph

COLUMNS = (
    "user_id",
    "email",
    "phone",
    "idfa",
    "gaid",
    "country",
    "region",
    "age",
    "gender",
    "language",
    "os",
    "personalized_ads",
)
TRUE = ("true", "1", "yes", "y", "t")
FALSE = ("false", "0", "no", "n", "f")

Progress = Callable[[str, float], None]


def import_users(
    graph: PlatformGraph, source: Path | pa.Table, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Import users; returns the summary printed by ``likewise users import``."""
    step = progress or (lambda _name, _fraction: None)
    with graph.writing() as con:
        step("reading", 0.0)
        columns = _stage(con, source)
        step("validating", 0.15)
        summary = _validate(con, columns)
        step("assigning ids", 0.25)
        _upsert_users(con, summary)
        step("hashing identifiers", 0.35)
        idents: dict[str, int] = {}
        if _identifier_keys(con, columns, idents, summary, graph.threads):
            graph.bump_ident_generation(con)  # in-memory copies of the keys are out of date
        graph.write_excluded(con)
        con.execute("DROP TABLE IF EXISTS stage; DROP TABLE IF EXISTS staged_ids")
        step("done", 1.0)
    summary["identifiers"] = idents
    del summary["_one_row_per_user"]
    return summary


def _stage(con: duckdb.DuckDBPyConnection, source: Path | pa.Table) -> set[str]:
    if isinstance(source, pa.Table):
        con.register("src_tbl", source)
        rel = "src_tbl"
    else:
        path = str(source).replace("'", "''")
        if not Path(source).exists():
            raise InvalidParameter(f"no such file: {source}", field="path")
        suffix = Path(source).suffix.lower()
        if suffix == ".parquet":
            rel = f"read_parquet('{path}')"
        elif suffix in (".csv", ".txt", ".tsv"):
            rel = f"read_csv('{path}', header = true, all_varchar = true)"
        else:
            raise InvalidParameter(
                f"unsupported file type {suffix!r}: use .csv or .parquet", field="path"
            )
    try:
        names = [d[0] for d in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]
    except duckdb.Error as exc:
        raise InvalidParameter(f"cannot read {source}: {_first_line(exc)}", field="path") from exc
    lower = {n.lower().strip(): n for n in names}
    if "user_id" not in lower:
        raise InvalidParameter(
            "the file has no user_id column (columns: " + ", ".join(names) + ")", field="user_id"
        )
    present = [c for c in COLUMNS if c in lower]
    select = ", ".join(f'CAST("{lower[c]}" AS VARCHAR) AS {c}' for c in present)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE stage AS SELECT row_number() OVER () AS row_no, "
            f"{select} FROM {rel}"
        )
    except duckdb.Error as exc:
        raise InvalidParameter(f"cannot read {source}: {_first_line(exc)}", field="path") from exc
    finally:
        if isinstance(source, pa.Table):
            con.unregister("src_tbl")
    for c in COLUMNS:
        if c not in present:
            con.execute(f"ALTER TABLE stage ADD COLUMN {c} VARCHAR")
    return set(present)


def _validate(con: duckdb.DuckDBPyConnection, columns: set[str]) -> dict[str, Any]:
    """Mark rows whose user_id or attributes are unusable; they are rejected whole."""
    true_list = ", ".join(f"'{v}'" for v in TRUE)
    false_list = ", ".join(f"'{v}'" for v in FALSE)
    # Only the (few) bad rows are written out; the stage itself is not copied.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE rejects AS SELECT * FROM (
        SELECT row_no, CASE
          WHEN user_id IS NULL OR trim(user_id) = '' THEN 'missing_user_id'
          WHEN length(user_id) > 256 THEN 'user_id_too_long'
          WHEN country IS NOT NULL AND NOT regexp_full_match(trim(country), '[A-Za-z]{{2}}')
            THEN 'invalid_country'
          WHEN age IS NOT NULL AND (TRY_CAST(trim(age) AS INTEGER) IS NULL
                OR TRY_CAST(trim(age) AS INTEGER) NOT BETWEEN 0 AND 130) THEN 'invalid_age'
          WHEN os IS NOT NULL AND lower(trim(os)) NOT IN ('ios', 'android') THEN 'invalid_os'
          WHEN personalized_ads IS NOT NULL AND lower(trim(personalized_ads))
               NOT IN ({true_list}, {false_list}) THEN 'invalid_personalized_ads'
          END AS reject
        FROM stage) WHERE reject IS NOT NULL"""
    )
    rows = con.execute("SELECT count(*) FROM stage").fetchone()
    rejected = dict(con.execute("SELECT reject, count(*) FROM rejects GROUP BY reject").fetchall())
    if rejected:
        con.execute("DELETE FROM stage WHERE row_no IN (SELECT row_no FROM rejects)")
    con.execute("DROP TABLE rejects")
    counts = con.execute("SELECT count(*), count(DISTINCT trim(user_id)) FROM stage").fetchone()
    assert counts is not None
    return {
        "rows": int(rows[0]) if rows else 0,
        "users": int(counts[1]),
        "rejected": {k: int(v) for k, v in rejected.items()},
        "_one_row_per_user": int(counts[0]) == int(counts[1]),
    }


def _upsert_users(con: duckdb.DuckDBPyConnection, summary: dict[str, Any]) -> None:
    true_list = ", ".join(f"'{v}'" for v in TRUE)

    # Most files have one row per user: then no aggregation is needed at all.
    grouped = not summary["_one_row_per_user"]

    def last(col: str, expr: str | None = None) -> str:
        value = expr or f"nullif(trim({col}), '')"
        if not grouped:
            return f"CASE WHEN nullif(trim({col}), '') IS NOT NULL THEN {value} END"
        return f"arg_max({value}, row_no) FILTER (WHERE nullif(trim({col}), '') IS NOT NULL)"

    # One row per user: the file's last non-empty value of each attribute, and the user's id if
    # they exist already (erased people come back as new people with a fresh id).
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE incoming AS
        WITH agg AS (
          SELECT trim(user_id) AS ext_id,
            {last("country", "upper(trim(country))")} AS country,
            {last("region")} AS region,
            {last("age", "CAST(trim(age) AS USMALLINT)")} AS age,
            {last("gender", "lower(trim(gender))")} AS gender,
            {last("language", "lower(trim(language))")} AS language,
            {last("os", "lower(trim(os))")} AS os,
            {last("personalized_ads", f"lower(trim(personalized_ads)) IN ({true_list})")}
              AS personalized_ads
          FROM stage {"GROUP BY 1" if grouped else ""})
        SELECT agg.*, u.uid AS old_uid, coalesce(agg.country, u.country) AS final_country
        FROM agg LEFT JOIN users u ON u.ext_id = agg.ext_id AND NOT u.erased"""
    )
    base = con.execute("SELECT coalesce(max(uid) + 1, 0) FROM users").fetchone()
    start = int(base[0]) if base else 0
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE incoming AS
        SELECT *, old_uid AS uid FROM incoming WHERE old_uid IS NOT NULL
        UNION ALL
        SELECT *, ({start} + row_number() OVER () - 1)::UINTEGER AS uid
        FROM incoming WHERE old_uid IS NULL"""
    )
    row = con.execute("SELECT count(*) FILTER (WHERE old_uid IS NULL) FROM incoming").fetchone()
    n_new = int(row[0]) if row else 0
    if n_new < summary["users"]:
        con.execute(
            """UPDATE users SET
                 country = coalesce(i.country, users.country),
                 region = coalesce(i.region, users.region), age = coalesce(i.age, users.age),
                 gender = coalesce(i.gender, users.gender),
                 language = coalesce(i.language, users.language), os = coalesce(i.os, users.os),
                 personalized_ads = coalesce(i.personalized_ads, users.personalized_ads),
                 updated_at = now()
               FROM incoming i WHERE users.uid = i.old_uid"""
        )
    con.execute(
        """INSERT INTO users
        SELECT uid, ext_id, country, region, age, gender, language, os,
               coalesce(personalized_ads, true), false, now()
        FROM incoming WHERE old_uid IS NULL"""
    )
    # Row -> uid, with the region used for national phone numbers.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE stage AS
        SELECT st.row_no, st.email, st.phone, st.idfa, st.gaid, i.uid,
               i.final_country AS user_country
        FROM stage st JOIN incoming i ON i.ext_id = trim(st.user_id)"""
    )
    con.execute("DROP TABLE incoming")
    summary["new_users"] = n_new
    summary["updated_users"] = summary["users"] - n_new


KEY_BATCH_ROWS = 1 << 21  # rows per kernel call and insert: bounded memory, few statements


def _identifier_keys(
    con: duckdb.DuckDBPyConnection,
    columns: set[str],
    idents: dict[str, int],
    summary: dict[str, Any],
    threads: int,
) -> bool:
    """Hash every documented form of every identifier (``identity.user_keys``) into ``ident``;
    count identifiers and refused values. Returns whether any key was written."""
    kinds = [k for k in IdKind if k.name.lower() in columns]
    if not kinds:
        return False
    empty = con.execute("SELECT NOT EXISTS (SELECT 1 FROM ident)").fetchall()[0][0]
    # A first import of one row per user cannot repeat a key: straight into the graph.
    direct = bool(empty) and summary["_one_row_per_user"]
    if not direct:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE new_keys "
            "(k UHUGEINT, kind UTINYINT, uid UINTEGER, first BOOLEAN)"
        )
    ((rows,),) = con.execute("SELECT coalesce(max(rowid) + 1, 0) FROM stage").fetchall()
    written = False
    with ThreadPoolExecutor(threads) as pool:
        for kind in kinds:
            name = kind.name.lower()
            region = ", user_country" if kind is IdKind.PHONE else ""
            valid = invalid = 0
            for offset in range(0, rows, KEY_BATCH_ROWS):
                batch = con.sql(
                    f"SELECT uid, {name}{region} FROM stage "
                    f"WHERE rowid >= {offset} AND rowid < {offset + KEY_BATCH_ROWS}"
                ).to_arrow_table()
                keys = column_keys(
                    name,
                    batch.column(1),
                    batch.column(2) if region else None,
                    pool,
                    threads,
                )
                valid += keys.valid
                invalid += keys.invalid
                if not len(keys.row):
                    continue
                uid = batch.column(0).to_numpy()[keys.row]
                table = pa.table(
                    {
                        "k_hi": keys.k_hi,
                        "k_lo": keys.k_lo,
                        "uid": uid.astype(np.uint32, copy=False),
                        "first": keys.first,
                    }
                )
                con.register("key_batch", table)
                key = KEY_FROM_HALVES.format(t="key_batch")
                if direct:
                    con.execute(f"INSERT INTO ident SELECT {key}, {int(kind)}, uid FROM key_batch")
                else:
                    con.execute(
                        f"INSERT INTO new_keys SELECT {key}, {int(kind)}, uid, first FROM key_batch"
                    )
                con.unregister("key_batch")
                written = True
            if not summary["_one_row_per_user"] and valid:
                # A user on several rows may repeat an identifier: count each once.
                ((valid,),) = con.execute(
                    "SELECT count(DISTINCT (k, uid)) FROM new_keys "
                    f"WHERE first AND kind = {int(kind)}"
                ).fetchall()
            idents[name] = int(valid)
            if invalid:
                summary["rejected"][f"invalid_{name}"] = int(invalid)
    if not direct:
        if written:
            con.execute(
                """INSERT INTO ident SELECT DISTINCT n.k, n.kind, n.uid FROM new_keys n
                ANTI JOIN ident i ON i.k = n.k AND i.uid = n.uid"""
            )
        con.execute("DROP TABLE new_keys")
    return written


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300]
