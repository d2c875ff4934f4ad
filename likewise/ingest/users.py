"""Platform users import (CSV or Parquet) into the platform graph.

Raw identifiers are normalised and hashed inside DuckDB and never written anywhere: only
128-bit hash keys reach disk. A user may appear on several rows; identifiers accumulate and
re-importing updates attributes (the last non-empty value in the file wins).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from likewise.errors import InvalidParameter
from likewise.identity.hashing import sql_hash_key
from likewise.identity.kinds import IdKind
from likewise.identity.vectorized import normalize_devices, normalize_emails, normalize_phones
from likewise.store.graph import PlatformGraph

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
        step("normalising e-mails", 0.35)
        keys: list[str] = []
        idents: dict[str, int] = {}
        if "email" in columns:
            _email_keys(con, keys, idents, summary)
        step("normalising phones", 0.55)
        if "phone" in columns:
            _phone_keys(con, keys, idents, summary)
        step("normalising device ids", 0.7)
        for kind in (IdKind.IDFA, IdKind.GAID):
            if kind.name.lower() in columns:
                _device_keys(con, kind, keys, idents, summary)
        step("writing keys", 0.8)
        if keys:
            _insert_keys(con, keys)
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


def _email_keys(
    con: duckdb.DuckDBPyConnection, keys: list[str], idents: dict[str, int], summary: dict[str, Any]
) -> None:
    con.execute(
        "CREATE OR REPLACE TEMP VIEW src_email AS SELECT uid AS id, email AS raw FROM stage"
    )
    normalize_emails(con, "src_email", "n_email")
    _count(con, "n_email", "basic", "email", idents, summary)
    kind = int(IdKind.EMAIL)
    plus = "regexp_replace(basic, '\\+[^@]*@', '@')"
    # Each documented form once: the later forms only where they differ from the earlier ones.
    forms = (
        ("basic", "TRUE"),
        (plus, f"contains(basic, '+') AND NOT starts_with({plus}, '@')"),
        ("norm", f"norm <> {plus}"),
    )
    for expr, differs in forms:
        keys.append(
            f"SELECT {sql_hash_key(f'sha256({expr})')} AS k, {kind}::UTINYINT AS kind, "
            f"id AS uid FROM (SELECT {_distinct(summary)} id, basic, norm FROM n_email "
            f"WHERE basic IS NOT NULL) WHERE {expr} IS NOT NULL AND {differs}"
        )


def _phone_keys(
    con: duckdb.DuckDBPyConnection, keys: list[str], idents: dict[str, int], summary: dict[str, Any]
) -> None:
    con.execute(
        "CREATE OR REPLACE TEMP VIEW src_phone AS "
        "SELECT uid AS id, phone AS raw, user_country AS region FROM stage"
    )
    normalize_phones(con, "src_phone", "n_phone")
    _count(con, "n_phone", "e164", "phone", idents, summary)
    kind = int(IdKind.PHONE)
    for expr in ("e164", "substr(e164, 2)"):
        keys.append(
            f"SELECT {sql_hash_key(f'sha256({expr})')} AS k, {kind}::UTINYINT AS kind, "
            f"id AS uid FROM (SELECT {_distinct(summary)} id, e164 FROM n_phone "
            "WHERE e164 IS NOT NULL)"
        )


def _device_keys(
    con: duckdb.DuckDBPyConnection,
    kind: IdKind,
    keys: list[str],
    idents: dict[str, int],
    summary: dict[str, Any],
) -> None:
    col = kind.name.lower()
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW src_{col} AS SELECT uid AS id, {col} AS raw FROM stage"
    )
    normalize_devices(con, f"src_{col}", f"n_{col}")
    _count(con, f"n_{col}", "maid", col, idents, summary)
    for fn in ("sha256", "md5"):
        for case in ("maid", "upper(maid)"):
            keys.append(
                f"SELECT {sql_hash_key(f'{fn}({case})')} AS k, "
                f"{int(kind)}::UTINYINT AS kind, id AS uid "
                f"FROM (SELECT {_distinct(summary)} id, maid FROM n_{col} "
                "WHERE maid IS NOT NULL)"
            )


def _distinct(summary: dict[str, Any]) -> str:
    """A user on several rows may repeat an identifier; with one row per user none can."""
    return "" if summary["_one_row_per_user"] else "DISTINCT"


def _count(
    con: duckdb.DuckDBPyConnection,
    table: str,
    col: str,
    name: str,
    idents: dict[str, int],
    summary: dict[str, Any],
) -> None:
    # With one row per user every (identifier, user) pair is distinct already.
    distinct = f"DISTINCT ({col}, id)" if not summary["_one_row_per_user"] else col
    row = con.execute(
        f"SELECT count({distinct}) FILTER (WHERE {col} IS NOT NULL), "
        f"count(*) FILTER (WHERE {col} IS NULL) FROM {table}"
    ).fetchone()
    assert row is not None
    idents[name] = int(row[0])
    if row[1]:
        summary["rejected"][f"invalid_{name}"] = int(row[1])


def _insert_keys(con: duckdb.DuckDBPyConnection, keys: list[str]) -> None:
    union = " UNION ALL ".join(keys)
    empty = con.execute("SELECT NOT EXISTS (SELECT 1 FROM ident)").fetchone()
    if empty and empty[0]:
        con.execute(f"INSERT INTO ident {union}")
    else:
        con.execute(
            f"""INSERT INTO ident SELECT n.* FROM ({union}) n
            ANTI JOIN ident i ON i.k = n.k AND i.uid = n.uid"""
        )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300]
