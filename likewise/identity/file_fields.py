"""SQL for one customer-file column: from the raw field to a hash, a normalised value or a reason.

Every field ends as exactly one of:

* ``hex_i``: an advertiser's hash (TikTok's rule: 64 hex characters are a SHA-256; 32 are an MD5,
  accepted for device ids only), lowercased;
* ``norm_i``: the normalised value, decided in SQL, still to be hashed;
* ``fb_i``: text SQL leaves to the Python reference (a few unusual values; see
  ``customer_file._fallback``);
* ``reason_i``: why the field was refused;

or all four NULL when the field is empty. The expressions come as layers of ``SELECT *, ...``
so each intermediate value is computed once per row, and all columns of a line are computed in
one pass over the lines: at 10M rows, each extra pass or table costs seconds.
"""

from __future__ import annotations

from likewise.identity import email as email_mod
from likewise.identity import phone as phone_mod
from likewise.identity.device import sql_normalize_device_id
from likewise.identity.text import sql_strip

# Around a value: whitespace and double quotes (quoted CSV exports), in any order.
FIELD_STRIP = "(' \"' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))"
OUTPUTS = ("hex", "norm", "fb", "reason")

Layer = list[str]  # "expression AS name" items added to the row


def column_layers(kind: str, pos: int, raw: str) -> list[Layer]:
    """Layers computing ``hex_{pos}``, ``norm_{pos}``, ``fb_{pos}``, ``reason_{pos}`` from the
    raw field expression ``raw`` (NULL for a malformed line) of a column of ``kind``."""
    s = f"_{pos}"
    v, form = f"v{s}", f"form{s}"
    layers: list[Layer] = [
        [f"{sql_strip(raw, FIELD_STRIP)} AS {v}"],
        [f"{_form(kind, v)} AS {form}"],
    ]
    hex_ = f"CASE WHEN {form} = 'hex' THEN lower({v}) END AS hex{s}"
    refused = f"CASE WHEN {form} NOT IN ('hex', 'raw') THEN {form} END"
    raw_ok = f"{form} = 'raw'"
    if kind == "email":
        # SQL decides ASCII values only: its lower() differs from Python's on some non-ASCII
        # letters (DuckDB lowers "İ" to "i", Python to "i" + U+0307).
        basic, ok, full = f"basic{s}", f"ok{s}", f"full{s}"
        layers += [
            [f"CASE WHEN {raw_ok} THEN lower({v}) END AS {basic}"],
            [
                f"coalesce({raw_ok} AND NOT regexp_matches({v}, '[^\\x00-\\x7F]') "
                f"AND {email_mod.sql_fast_valid(basic)}, false) AS {ok}"
            ],
            [f"CASE WHEN {ok} THEN {email_mod.sql_file_form(basic)} END AS {full}"],
            [
                hex_,
                f"CASE WHEN NOT starts_with({full}, '@') THEN {full} END AS norm{s}",
                f"CASE WHEN {raw_ok} AND NOT {ok} THEN {v} END AS fb{s}",
                f"CASE WHEN starts_with({full}, '@') THEN 'invalid_email' ELSE {refused} END "
                f"AS reason{s}",
            ],
        ]
    elif kind == "phone":
        # Needs the region's rule columns as ``rule_*`` on the row (see customer_file._stage).
        c, fast = f"c{s}", f"fast{s}"
        layers += [
            [f"CASE WHEN {raw_ok} THEN {phone_mod.sql_cleaned(v)} END AS {c}"],
            [
                f"CASE WHEN {raw_ok} THEN "
                f"{phone_mod.sql_fast_phone(v, 'rule_', cleaned=c)} "
                f"END AS {fast}"
            ],
            [
                hex_,
                f"{fast} AS norm{s}",
                f"CASE WHEN {raw_ok} AND {fast} IS NULL THEN {v} END AS fb{s}",
                f"{refused} AS reason{s}",
            ],
        ]
    else:
        norm = f"norm{s}"
        layers += [
            [hex_, f"CASE WHEN {raw_ok} THEN {sql_normalize_device_id(v)} END AS {norm}"],
            [
                "NULL::VARCHAR AS fb" + s,
                f"CASE WHEN {raw_ok} AND {norm} IS NULL THEN 'invalid_device_id' "
                f"ELSE {refused} END AS reason{s}",
            ],
        ]
    return layers


def _form(kind: str, v: str) -> str:
    """'hex' for a usable hash, 'raw' for a value to normalise, else the reason it is refused;
    NULL for an empty field. A long run of digits in a phone column is a number with an
    international prefix, not a hash."""
    device = kind in ("idfa", "gaid", "maid")
    digits = f"regexp_full_match({v}, '[0-9]+')" if kind == "phone" else "false"
    md5 = "'hex'" if device else f"'md5_not_supported_for_{kind}'"
    return f"""CASE WHEN {v} IS NULL OR {v} = '' THEN NULL
          WHEN strlen({v}) = 64 AND regexp_full_match({v}, '[0-9a-fA-F]{{64}}') THEN 'hex'
          WHEN strlen({v}) < 16 OR {digits} OR NOT regexp_full_match({v}, '[0-9a-fA-F]+')
               THEN 'raw'
          WHEN strlen({v}) = 32 THEN {md5}
          ELSE 'invalid_hash_length' END"""


def rule_columns(region: str | None) -> str:
    """A one-row relation of the phone rule of ``region`` as ``rule_*`` columns (NULLs when
    the region has no rule), to join onto every line."""
    reg = "NULL" if region is None else "'" + region.upper().replace("'", "''") + "'"
    return f"""SELECT r.cc AS rule_cc, r.trunk AS rule_trunk, r.min_len AS rule_min_len,
               r.max_len AS rule_max_len, r.idd AS rule_idd
        FROM (SELECT 1) one LEFT JOIN ({phone_mod.sql_rules_cte()}) r ON r.region = {reg}"""
