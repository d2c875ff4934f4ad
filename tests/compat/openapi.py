"""TikTok's own OpenAPI files (``shared/reference/tiktok-openapi``), read into plain operations.

TikTok's files are generated from its API gateway: enums sit under ``x-open-enum.enums[].key``
(plain ``enum`` is read too), array query parameters are declared with ``content:
application/json`` (JSON text on the wire), and ``Access-Token`` is declared as a query parameter
although every real client sends it as a header.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ACCESS_TOKEN = "Access-Token"


def spec_dir() -> Path:
    """The folder of TikTok's YAML files: ``$LIKEWISE_TIKTOK_OPENAPI`` or ``../shared/...``."""
    candidates = [
        REPO.parent / "shared" / "reference" / "tiktok-openapi",
        Path(__file__).resolve().parent / "tiktok-openapi",  # the copy shipped with the tests
    ]
    if os.environ.get("LIKEWISE_TIKTOK_OPENAPI"):
        candidates.insert(0, Path(os.environ["LIKEWISE_TIKTOK_OPENAPI"]))
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(
        "TikTok's OpenAPI files were not found; looked in "
        + ", ".join(str(c) for c in candidates)
        + " (set LIKEWISE_TIKTOK_OPENAPI)"
    )


@dataclass(frozen=True)
class Field:
    """One request field: a query parameter or a property of the body."""

    name: str
    schema: dict[str, Any]
    required: bool
    json_text: bool = False  # a query parameter sent as JSON text (``content: application/json``)

    @property
    def enum(self) -> list[str] | None:
        return enum_keys(self.schema)

    @property
    def type(self) -> str:
        return str(self.schema.get("type", "string"))


@dataclass(frozen=True)
class Operation:
    name: str  # file stem, e.g. ``dmp_custom_audience_create``
    path: str  # as in the file, with its trailing slash
    method: str  # upper case
    fields: list[Field] = field(default_factory=list)
    body_type: str | None = None  # ``application/json``, ``multipart/form-data`` or None
    header_required: tuple[str, ...] = ()  # Access-Token

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    @property
    def enums(self) -> dict[str, list[str]]:
        return {f.name: f.enum for f in self.fields if f.enum}

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def enum_codes(schema: dict[str, Any]) -> dict[str, str]:
    """TikTok's internal value of each enum key (aliases share one), from ``x-open-enum``."""
    x = schema.get("x-open-enum") or {}
    return {str(e["key"]): str(e["value"]) for e in x.get("enums") or [] if e.get("is_valid", True)}


def enum_keys(schema: dict[str, Any]) -> list[str] | None:
    """The allowed values of a field, from ``x-open-enum`` (valid keys) or ``enum``."""
    x = schema.get("x-open-enum")
    if x and x.get("enums"):
        return [str(e["key"]) for e in x["enums"] if e.get("is_valid", True)]
    if schema.get("enum"):
        return [str(v) for v in schema["enum"]]
    return None


def spec_file(name: str) -> Path:
    """``<name>.yml`` from :func:`spec_dir`, else from the copy shipped with the tests (the shared
    folder does not hold every file the tests use, e.g. ``pixel_update.yml``)."""
    path = spec_dir() / f"{name}.yml"
    if path.is_file():
        return path
    return Path(__file__).resolve().parent / "tiktok-openapi" / f"{name}.yml"


@functools.cache
def load(name: str) -> Operation:
    """The one operation of ``<name>.yml``."""
    doc = yaml.safe_load(spec_file(name).read_text(encoding="utf-8"))
    ((path, ops),) = doc["paths"].items()
    ((method, op),) = ops.items()
    fields: list[Field] = []
    headers: list[str] = []
    for p in op.get("parameters", []):
        if p["name"] == ACCESS_TOKEN:
            if p.get("required"):
                headers.append(ACCESS_TOKEN)
            continue
        schema = p.get("schema") or {}
        json_text = False
        if not schema.get("type") and "content" in p:
            schema = p["content"]["application/json"]["schema"]
            json_text = True
        fields.append(Field(p["name"], schema, bool(p.get("required")), json_text))
    body_type = None
    if "requestBody" in op:
        ((body_type, content),) = op["requestBody"]["content"].items()
        schema = content["schema"]
        required = set(schema.get("required", []))
        for prop, sub in schema.get("properties", {}).items():
            fields.append(Field(prop, sub, prop in required))
    return Operation(name, path, method.upper(), fields, body_type, tuple(headers))
