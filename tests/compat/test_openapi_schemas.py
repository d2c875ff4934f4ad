"""Likewise against TikTok's own OpenAPI files, operation by operation.

Data-driven from ``dmp_custom_audience_{file_upload,create,update,list,get,delete}.yml``,
``pixel_{create,list,update}.yml`` and ``offline_{create,get,update,delete}.yml``: a valid
request is built from each operation's schema (with real ids: an advertiser, an uploaded
file_path, audiences, a pixel, an offline event set) and must succeed; the same request without
each ``required`` field, or with a wrong value in each enum field, must fail with 40002 and a
message naming the field; each documented enum value and length/range limit is exercised;
list/get take their id arrays in every form clients send; every response is exactly ``{code,
message, request_id, data}``; every path works with and without its trailing slash.
``Access-Token`` is declared as a query parameter in the files but sent as a header, as every
real client does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pytest

from likewise.ingest.users import import_users
from tests.compat import openapi
from tests.conftest import Server, start_server

DMP_NAMES = ["file_upload", "create", "update", "list", "get", "delete"]
# Event sources: named by their file's stem.
SOURCE_NAMES = [
    "pixel_create",
    "pixel_list",
    "pixel_update",
    "offline_create",
    "offline_get",
    "offline_update",
    "offline_delete",
]
NAMES = DMP_NAMES + SOURCE_NAMES
OPS: dict[str, openapi.Operation] = {
    **{n: openapi.load(f"dmp_custom_audience_{n}") for n in DMP_NAMES},
    **{n: openapi.load(n) for n in SOURCE_NAMES},
}
PIXEL_CODE = re.compile(r"C[A-Z0-9]{19}")
ENVELOPE = {"code", "message", "request_id", "data"}
WRONG_ENUM_VALUES = ["NOT_A_VALUE", ""]

# Optional fields left out of the "all fields" request, with the reason.
SKIP_OPTIONAL = {
    ("update", "audience_sub_type"): "one-way NORMAL -> REACH_FREQUENCY switch that overrides "
    "every other change; tested on its own",
    ("update", "context_info"): "filled in by TikTok's gateway, never sent by clients",
}
# Optional fields a request needs to be valid although the schema does not require them.
NEEDED_OPTIONAL = {"update": ["custom_audience_name"]}  # an update must change something
# Limits in the files that Likewise deliberately does not enforce (tolerant on input).
TOLERATED_LIMITS = {
    ("get", "history_size"): "Likewise takes 0..1000 (0 = no history); TikTok's file says 1..100",
}

N_USERS = 40
EMAILS = [f"Person.{i}@Example.com" for i in range(N_USERS)]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def content_for(calculate_type: str, n: int = 20) -> bytes:
    """A small valid file for ``calculate_type`` (hashes nobody on the platform has)."""
    if calculate_type == "MULTIPLE_TYPES":
        rows = [f"{sha256(f'm{i}@example.org')},{sha256(f'+1555010{i:04d}')}" for i in range(n)]
        return ("email_sha256,phone_sha256\n" + "\n".join(rows) + "\n").encode()
    algo = hashlib.md5 if calculate_type.endswith("MD5") else hashlib.sha256
    rows = [algo(f"{calculate_type}-{i}".encode()).hexdigest() for i in range(n)]
    return ("\n".join(rows) + "\n").encode()


# --------------------------------------------------------------------------- fixtures


@dataclass
class Ctx:
    """The server and the real objects requests refer to."""

    server: Server
    adv: str
    token: str
    content: bytes  # customers: the hashed e-mails of 30 platform users
    file_path: str
    noise_path: str  # an EMAIL_SHA256 file that matches nobody
    audience_id: str
    other_audience_id: str
    pixel_id: str = ""
    pixel_code: str = ""
    event_set_id: str = ""

    def send(
        self,
        op: openapi.Operation,
        values: dict[str, Any],
        *,
        slash: bool = True,
        token: str | None = "",
        headers: dict[str, str] | None = None,
        params: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """One request, encoded as the operation's file says; the envelope is checked."""
        path = op.path if slash else op.path.rstrip("/")
        sent = dict(headers or {})
        token = self.token if token == "" else token
        if token is not None:
            sent["Access-Token"] = token
        kw: dict[str, Any] = {}
        if op.method == "GET":
            kw["params"] = params if params is not None else query(op, values)
        elif op.body_type == "multipart/form-data":
            body, content_type = multipart(values)
            kw["content"] = body
            sent["Content-Type"] = content_type
        else:
            kw["json"] = values
        r = httpx.request(op.method, self.server.api + path, headers=sent, timeout=60, **kw)
        assert r.status_code == 200, (r.status_code, r.text)
        body = r.json()
        assert set(body) == ENVELOPE, body
        assert isinstance(body["code"], int) and isinstance(body["request_id"], str), body
        assert body["request_id"], body
        if body["code"] == 0:
            assert body["message"] == "OK", body
            assert isinstance(body["data"], dict), body
        else:
            assert body["data"] == {}, body
            assert body["message"] and body["message"] != "OK", body
        return body  # type: ignore[no-any-return]

    def upload(self, content: bytes, calculate_type: str, filename: str = "f.csv") -> str:
        body = self.send(
            OPS["file_upload"],
            {
                "advertiser_id": self.adv,
                "calculate_type": calculate_type,
                "file_signature": md5(content),
                "file": (filename, content),
            },
        )
        assert body["code"] == 0, body
        return str(body["data"]["file_path"])

    def new_audience(
        self, file_path: str | None = None, calculate_type: str = "EMAIL_SHA256"
    ) -> str:
        body = self.send(
            OPS["create"],
            {
                "advertiser_id": self.adv,
                "custom_audience_name": "Schema audience",
                "calculate_type": calculate_type,
                "file_paths": [file_path or self.file_path],
            },
        )
        assert body["code"] == 0, body
        return str(body["data"]["custom_audience_id"])

    def new_event_set(self) -> str:
        values = {"advertiser_id": self.adv, "name": "Schema event set", "description": "stores"}
        body = self.send(OPS["offline_create"], values)
        assert body["code"] == 0, body
        return str(body["data"]["event_set_id"])


def query(op: openapi.Operation, values: dict[str, Any]) -> list[tuple[str, str]]:
    """Query parameters: JSON text for ``content: application/json`` parameters."""
    out = []
    for name, value in values.items():
        f = op.field(name)
        if f.json_text:
            out.append((name, json.dumps(value)))
        elif isinstance(value, bool):
            out.append((name, "true" if value else "false"))
        else:
            out.append((name, str(value)))
    return out


def multipart(values: dict[str, Any]) -> tuple[bytes, str]:
    """A multipart/form-data body (by hand, so a request without a file part is possible)."""
    boundary = "likewise-schema-test-boundary"
    parts = []
    for name, value in values.items():
        if isinstance(value, tuple):
            filename, content = value
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: text/csv\r\n\r\n"
            )
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
            content = str(value).encode()
        parts.append(f"--{boundary}\r\n{head}".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    gen = start_server(tmp_path_factory.mktemp("schemas") / "data", min_audience_size=10)
    with contextlib.closing(gen):
        server = next(gen)
        import_users(
            server.runtime.graph,
            pa.table(
                {
                    "user_id": [f"u{i}" for i in range(N_USERS)],
                    "email": EMAILS,
                    "personalized_ads": [i % 10 != 0 for i in range(N_USERS)],
                }
            ),
        )
        adv, token = server.advertiser("Schemas")
        content = ("\n".join(sha256(e.lower()) for e in EMAILS[:30]) + "\n").encode()
        c = Ctx(server, adv, token, content, "", "", "", "")
        c.file_path = c.upload(content, "EMAIL_SHA256", "customers.csv")
        c.noise_path = c.upload(content_for("EMAIL_SHA256"), "EMAIL_SHA256", "noise.csv")
        c.audience_id = c.new_audience()
        c.other_audience_id = c.new_audience()
        pixel = c.send(OPS["pixel_create"], {"advertiser_id": adv, "pixel_name": "Schema pixel"})
        assert pixel["code"] == 0, pixel
        c.pixel_id, c.pixel_code = pixel["data"]["pixel_id"], pixel["data"]["pixel_code"]
        c.event_set_id = c.new_event_set()
        server.wait_jobs()
        yield c


# --------------------------------------------------------------------------- building requests


def from_schema(schema: dict[str, Any]) -> Any:
    """A valid value for a schema with no better source."""
    keys = openapi.enum_keys(schema)
    default = schema.get("default")
    if keys:
        return default if default in keys else keys[0]
    kind = schema.get("type", "string")
    if kind == "object":
        return {k: from_schema(v) for k, v in (schema.get("properties") or {}).items()}
    if kind == "boolean":
        return str(default).lower() == "true" if default is not None else False
    if kind == "integer":
        if default is not None:
            return int(default)
        return int(schema.get("minimum", 1))
    if kind == "array":
        return [from_schema(schema.get("items", {}))]
    return "x" * max(int(schema.get("minLength", 1)), 1)


def real_value(c: Ctx, name: str, f: openapi.Field) -> Any:
    """The value of ``f`` in a valid request of operation ``name``."""
    if name == "delete" and f.name == "custom_audience_ids":
        return [c.new_audience()]  # a valid delete really deletes: never the shared audiences
    if name == "offline_delete" and f.name == "event_set_id":
        return c.new_event_set()
    per_operation: dict[str, dict[str, Any]] = {
        "pixel_create": {"pixel_name": "Schema pixel", "partner_name": "Likewise tests"},
        "pixel_list": {
            "pixel_id": c.pixel_id,
            "code": c.pixel_code,
            "name": "schema pix",  # a case-insensitive part of the name
            "filtering": {"available_for_catalog_only": False},
        },
        "pixel_update": {"pixel_id": c.pixel_id, "pixel_name": "Schema pixel"},
        "offline_create": {"name": "Schema event set", "description": "stores"},
        "offline_get": {"event_set_ids": [c.event_set_id], "name": "schema event"},
        "offline_update": {"event_set_id": c.event_set_id, "name": "Schema event set"},
    }
    if f.name in per_operation.get(name, {}):
        return per_operation[name][f.name]
    known: dict[str, Any] = {
        "advertiser_id": c.adv,
        "file": ("customers.csv", c.content),
        "file_signature": md5(c.content),
        "calculate_type": "EMAIL_SHA256",  # what the file holds
        "name": "customers",
        "custom_audience_name": "Schema audience",
        "file_paths": [c.file_path],
        "custom_audience_id": c.audience_id,
        "custom_audience_ids": [c.audience_id],
        "action": "APPEND",  # with the audience's own file: the audience stays the same
    }
    return known[f.name] if f.name in known else from_schema(f.schema)


def build(c: Ctx, name: str, variant: str = "required") -> dict[str, Any]:
    """A valid request: ``required`` fields only (plus those needed to make sense), or ``all``."""
    op = OPS[name]
    wanted = []
    for f in op.fields:
        if variant == "all":
            if (name, f.name) not in SKIP_OPTIONAL:
                wanted.append(f)
        elif f.required or f.name in NEEDED_OPTIONAL.get(name, []):
            wanted.append(f)
    return {f.name: real_value(c, name, f) for f in wanted}


def check_success_data(name: str, values: dict[str, Any], data: dict[str, Any]) -> None:
    if name == "file_upload":
        assert set(data) == {"file_path"} and len(data["file_path"]) == 16, data
    elif name == "create":
        assert set(data) == {"custom_audience_id"}, data
        assert isinstance(data["custom_audience_id"], str) and data["custom_audience_id"].isdigit()
    elif name in ("update", "delete"):
        assert data == {}, data
    elif name == "list":
        assert set(data) == {"list", "page_info"}, data
        assert set(data["page_info"]) == {"page", "page_size", "total_number", "total_page"}
        if "custom_audience_ids" in values:
            assert [a["audience_id"] for a in data["list"]] == values["custom_audience_ids"]
    elif name == "get":
        assert [x["audience_details"]["audience_id"] for x in data["list"]] == values[
            "custom_audience_ids"
        ]
        for x in data["list"]:
            assert set(x) == {"audience_details", "audience_history"}, x
    elif name.startswith(("pixel_", "offline_")):
        check_source_data(name, values, data)


PIXEL_CREATED = {
    "pixel_id",
    "pixel_code",
    "pixel_name",
    "pixel_category",
    "partner_name",
    "advanced_matching_fields",
}
EVENT_SET = {
    "event_set_id",
    "advertiser_id",
    "name",
    "description",
    "auto_tracking",
    "create_time",
    "update_time",
}


def check_source_data(name: str, values: dict[str, Any], data: dict[str, Any]) -> None:
    if name == "pixel_create":
        assert set(data) == PIXEL_CREATED, data
        assert PIXEL_CODE.fullmatch(data["pixel_code"]), data
        assert data["pixel_id"].isdigit() and data["pixel_name"] == values["pixel_name"], data
        assert data["pixel_category"] == values.get("pixel_category"), data
    elif name == "pixel_list":
        assert set(data) == {"pixels", "page_info"}, data
        assert set(data["page_info"]) == {"page", "page_size", "total_number", "total_page"}
        for p in data["pixels"]:
            assert set(p) >= PIXEL_CREATED and PIXEL_CODE.fullmatch(p["pixel_code"]), p
        if "pixel_id" in values:
            assert [p["pixel_id"] for p in data["pixels"]] == [values["pixel_id"]], data
    elif name in ("pixel_update", "offline_delete"):
        assert data == {}, data
    elif name == "offline_create":
        assert set(data) == {"event_set_id"} and data["event_set_id"].isdigit(), data
    elif name == "offline_get":
        assert set(data) == {"event_set_list"}, data
        for s in data["event_set_list"]:
            assert set(s) == EVENT_SET, s
        if "event_set_ids" in values:
            listed = [s["event_set_id"] for s in data["event_set_list"]]
            assert listed == values["event_set_ids"], data
    elif name == "offline_update":
        assert set(data) == EVENT_SET and data["event_set_id"] == values["event_set_id"], data
        if "name" in values:
            assert data["name"] == values["name"], data
    else:
        raise AssertionError(f"no check for {name}")


# --------------------------------------------------------------------------- the files themselves


def test_files_describe_what_the_tests_assume() -> None:
    """Guard the data-driven tests against reading the files wrong."""
    assert OPS["file_upload"].body_type == "multipart/form-data"
    assert OPS["list"].method == OPS["get"].method == "GET"
    assert set(OPS["create"].required) == {
        "advertiser_id",
        "custom_audience_name",
        "calculate_type",
        "file_paths",
    }
    assert set(OPS["get"].required) == {"advertiser_id", "custom_audience_ids"}
    assert OPS["get"].field("custom_audience_ids").json_text
    assert set(OPS["update"].enums["action"]) == {"APPEND", "REMOVE", "REPLACE"}
    assert "MAID_SHA256" in OPS["file_upload"].enums["calculate_type"]
    assert "MAID_SHA256" not in OPS["create"].enums["calculate_type"]
    assert set(OPS["pixel_create"].required) == {"advertiser_id", "pixel_name"}
    assert set(OPS["pixel_update"].required) == {"advertiser_id", "pixel_id", "pixel_name"}
    assert OPS["pixel_list"].method == OPS["offline_get"].method == "GET"
    assert OPS["pixel_list"].field("filtering").json_text
    assert OPS["offline_get"].field("event_set_ids").json_text
    assert OPS["offline_get"].required == []
    assert set(OPS["offline_create"].required) == {"advertiser_id", "name", "description"}
    assert set(OPS["offline_delete"].required) == {"advertiser_id", "event_set_id"}
    for op in OPS.values():
        assert op.header_required == ("Access-Token",)
        assert op.path.endswith("/")


# --------------------------------------------------------------------------- valid requests


@pytest.mark.parametrize("variant", ["required", "all"])
@pytest.mark.parametrize("name", NAMES)
def test_valid_request(ctx: Ctx, name: str, variant: str) -> None:
    values = build(ctx, name, variant)
    body = ctx.send(OPS[name], values)
    assert body["code"] == 0, body
    check_success_data(name, values, body["data"])


@pytest.mark.parametrize("name", NAMES)
def test_path_without_trailing_slash(ctx: Ctx, name: str) -> None:
    values = build(ctx, name)
    body = ctx.send(OPS[name], values, slash=False)
    assert body["code"] == 0, body
    check_success_data(name, values, body["data"])


# --------------------------------------------------------------------------- required fields


REQUIRED_CASES = [(n, f) for n in NAMES for f in OPS[n].required]


@pytest.mark.parametrize(
    ("name", "missing"), REQUIRED_CASES, ids=[f"{n}-{f}" for n, f in REQUIRED_CASES]
)
def test_missing_required_field(ctx: Ctx, name: str, missing: str) -> None:
    values = build(ctx, name)
    del values[missing]
    body = ctx.send(OPS[name], values)
    assert body["code"] == 40002, body
    assert missing in body["message"], body


@pytest.mark.parametrize("name", NAMES)
def test_access_token_is_a_header(ctx: Ctx, name: str) -> None:
    values = build(ctx, name)
    body = ctx.send(OPS[name], values, token=None)
    assert body["code"] == 40104 and "Access-Token" in body["message"], body
    body = ctx.send(OPS[name], values, token="no-such-token")
    assert body["code"] == 40105, body


# --------------------------------------------------------------------------- enums


ENUM_CASES = [(n, f) for n in NAMES for f in OPS[n].enums]
ENUM_VALUE_CASES = [(n, f, v) for n, f in ENUM_CASES for v in OPS[n].enums[f]]


def test_enum_fields_found() -> None:
    assert ENUM_CASES == [
        ("file_upload", "calculate_type"),
        ("create", "audience_sub_type"),
        ("create", "calculate_type"),
        ("update", "action"),
        ("pixel_create", "pixel_category"),
        ("pixel_list", "order_by"),
    ]


@pytest.mark.parametrize("wrong", WRONG_ENUM_VALUES)
@pytest.mark.parametrize(
    ("name", "enum_field"), ENUM_CASES, ids=[f"{n}-{f}" for n, f in ENUM_CASES]
)
def test_enum_wrong_value(ctx: Ctx, name: str, enum_field: str, wrong: str) -> None:
    values = build(ctx, name, "all")
    values[enum_field] = wrong
    body = ctx.send(OPS[name], values)
    assert body["code"] == 40002, body
    assert enum_field in body["message"], body


@pytest.mark.parametrize(
    ("name", "enum_field", "value"),
    ENUM_VALUE_CASES,
    ids=[f"{n}-{f}-{v}" for n, f, v in ENUM_VALUE_CASES],
)
def test_enum_value_accepted(ctx: Ctx, name: str, enum_field: str, value: str) -> None:
    values = build(ctx, name, "all")
    values[enum_field] = value
    if enum_field == "calculate_type":
        content = content_for(value)
        if name == "file_upload":
            values["file"] = (f"{value.lower()}.csv", content)
            values["file_signature"] = md5(content)
        else:
            values["file_paths"] = [ctx.upload(content, value)]
    if name == "update":
        # REMOVE with a file that matches nobody; APPEND/REPLACE with the audience's own file.
        values["file_paths"] = [ctx.noise_path if value == "REMOVE" else ctx.file_path]
    body = ctx.send(OPS[name], values)
    assert body["code"] == 0, body
    check_success_data(name, values, body["data"])


ALIASES = [
    k
    for k in OPS["file_upload"].enums["calculate_type"]
    if k not in OPS["create"].enums["calculate_type"]
]


@pytest.mark.parametrize("alias", ALIASES)
def test_upload_only_calculate_type_is_an_alias(ctx: Ctx, alias: str) -> None:
    """Upload-only keys (MAID_*) share TikTok's internal value with a create key (FIRST_*):
    a file uploaded with the alias must make an audience of that create key."""
    upload_codes = openapi.enum_codes(OPS["file_upload"].field("calculate_type").schema)
    create_codes = openapi.enum_codes(OPS["create"].field("calculate_type").schema)
    (canonical,) = [k for k, v in create_codes.items() if v == upload_codes[alias]]
    file_path = ctx.upload(content_for(alias), alias)
    ctx.new_audience(file_path, canonical)


def test_update_audience_sub_type(ctx: Ctx) -> None:
    """The field left out above: only REACH_FREQUENCY is allowed, one way."""
    audience_id = ctx.new_audience()
    ctx.server.wait_jobs()
    base = {"advertiser_id": ctx.adv, "custom_audience_id": audience_id}
    body = ctx.send(OPS["update"], {**base, "audience_sub_type": "NORMAL"})
    assert body["code"] == 40002 and "audience_sub_type" in body["message"], body
    body = ctx.send(OPS["update"], {**base, "audience_sub_type": "REACH_FREQUENCY"})
    assert body["code"] == 0, body
    got = ctx.send(OPS["get"], {"advertiser_id": ctx.adv, "custom_audience_ids": [audience_id]})
    assert got["data"]["list"][0]["audience_details"]["audience_sub_type"] == "REACH_FREQUENCY"


# --------------------------------------------------------------------------- limits


def limit_cases() -> list[tuple[str, str, str, Any]]:
    """(operation, field, which limit, a value just outside it) for every limit in the files."""
    cases: list[tuple[str, str, str, Any]] = []
    for name in NAMES:
        for f in OPS[name].fields:
            s = f.schema
            kind = s.get("type")
            if kind == "string":
                if "minLength" in s:
                    cases.append((name, f.name, "minLength", "x" * (s["minLength"] - 1)))
                if "maxLength" in s:
                    cases.append((name, f.name, "maxLength", "x" * (s["maxLength"] + 1)))
            elif kind == "integer":
                if "minimum" in s:
                    cases.append((name, f.name, "minimum", s["minimum"] - 1))
                if "maximum" in s:
                    cases.append((name, f.name, "maximum", s["maximum"] + 1))
            elif kind == "array":
                items = s.get("items", {})
                if "minItems" in s:
                    cases.append((name, f.name, "minItems", []))
                if "maxItems" in s:
                    many = [
                        f"{i:016d}" if items.get("minLength") == 16 else str(10**15 + i)
                        for i in range(s["maxItems"] + 1)
                    ]
                    cases.append((name, f.name, "maxItems", many))
                if "minLength" in items:
                    cases.append(
                        (name, f.name, "items.minLength", ["x" * (items["minLength"] - 1)])
                    )
                if "maxLength" in items:
                    cases.append(
                        (name, f.name, "items.maxLength", ["x" * (items["maxLength"] + 1)])
                    )
    return cases


LIMIT_CASES = limit_cases()


def test_limits_found() -> None:
    assert {(n, f) for n, f, _, _ in LIMIT_CASES} == {
        ("create", "custom_audience_name"),
        ("create", "file_paths"),
        ("create", "retention_in_days"),
        ("list", "custom_audience_ids"),
        ("list", "page"),
        ("list", "page_size"),
        ("get", "custom_audience_ids"),
        ("get", "history_size"),
        ("delete", "custom_audience_ids"),
        ("pixel_list", "page"),
        ("pixel_list", "page_size"),
    }


@pytest.mark.parametrize(
    ("name", "limit_field", "limit", "value"),
    LIMIT_CASES,
    ids=[f"{n}-{f}-{lim}" for n, f, lim, _ in LIMIT_CASES],
)
def test_value_outside_limit(ctx: Ctx, name: str, limit_field: str, limit: str, value: Any) -> None:
    values = build(ctx, name, "all")
    values[limit_field] = value
    body = ctx.send(OPS[name], values)
    if (name, limit_field) in TOLERATED_LIMITS:
        assert body["code"] == 0, body
        return
    # TikTok documents 40011 for "too many ids"; 40002 is its general parameter error.
    allowed = {40002, 40011} if limit == "maxItems" else {40002}
    assert body["code"] in allowed, body
    assert limit_field in body["message"], body
    # A length limit is told as the whole allowed range, whichever end was crossed.
    schema = OPS[name].field(limit_field).schema
    bounds = {
        "minLength": ("minLength", "maxLength"),
        "maxLength": ("minLength", "maxLength"),
        "minItems": ("minItems", "maxItems"),
        "maxItems": ("minItems", "maxItems"),
    }
    if limit.startswith("items."):
        schema, limit = schema["items"], limit.removeprefix("items.")
    if limit in bounds:
        lo, hi = (schema.get(k) for k in bounds[limit])
        if lo is not None and hi is not None:
            told = f"{lo} to {hi}" if lo != hi else f"exactly {lo}"
            assert told in body["message"], body


# --------------------------------------------------------------------------- array query params


def array_forms(a: str, b: str) -> dict[str, list[tuple[str, str]]]:
    return {
        "json": [("custom_audience_ids", f'["{a}","{b}"]')],
        "json-spaces": [("custom_audience_ids", f'["{a}", "{b}"]')],
        "json-numbers": [("custom_audience_ids", f"[{a}, {b}]")],
        "repeated": [("custom_audience_ids", a), ("custom_audience_ids", b)],
    }


FORMS = list(array_forms("1", "2"))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", ["list", "get"])
def test_array_query_forms(ctx: Ctx, name: str, form: str) -> None:
    a, b = ctx.audience_id, ctx.other_audience_id
    params = [("advertiser_id", ctx.adv), *array_forms(a, b)[form]]
    body = ctx.send(OPS[name], {}, params=params)
    assert body["code"] == 0, body
    if name == "list":
        assert {x["audience_id"] for x in body["data"]["list"]} == {a, b}
        assert body["data"]["page_info"]["total_number"] == 2
    else:
        assert [x["audience_details"]["audience_id"] for x in body["data"]["list"]] == [a, b]


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("name", ["list", "get", "pixel_list", "offline_get"])
def test_get_ignores_content_type(ctx: Ctx, name: str, content_type: str) -> None:
    values = build(ctx, name)
    body = ctx.send(OPS[name], values, headers={"Content-Type": content_type})
    assert body["code"] == 0, body
    check_success_data(name, values, body["data"])


def test_unmatched_path_is_a_real_http_error(ctx: Ctx) -> None:
    """Paths that do not exist are 404 (the request never reached the API logic)."""
    r = httpx.get(
        ctx.server.api + "/dmp/custom_audience/nope/", headers={"Access-Token": ctx.token}
    )
    assert r.status_code == 404
    assert set(r.json()) == ENVELOPE
