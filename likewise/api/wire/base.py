"""Parsing of wire input into models, with TikTok-style 40002 messages that name the field."""

from __future__ import annotations

import functools
import json
import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from likewise.errors import InvalidParameter, TooManyIds

M = TypeVar("M", bound=BaseModel)
_DIGITS = re.compile(r"[0-9]{1,19}")


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _numeric_id(value: Any) -> Any:
    """Ids are strings on the wire; integers are tolerated. Keep the string form."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return value.strip()
    return value


MAX_ID = 2**63 - 1  # ids are signed 64-bit integers in storage


def _check_id(value: Any) -> str:
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise ValueError("must be a numeric id string")
    if int(value) > MAX_ID:
        raise ValueError(f"must be at most {MAX_ID}")
    return value


IdStr = Annotated[str, BeforeValidator(_check_id), BeforeValidator(_numeric_id)]


def parse(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise InvalidParameter("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "too_long" and str(first["loc"][0]).endswith("_ids"):
            raise TooManyIds(describe(exc, model), field=_field(exc)) from None
        raise InvalidParameter(describe(exc, model), field=_field(exc)) from None


def _field(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "body"


def describe(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One sentence naming the field and what is wrong with it (with ``model``, length errors
    give the whole allowed range, not only the bound that was crossed)."""
    err = exc.errors()[0]
    loc = err["loc"]
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (("." if name else "") + str(part))
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"{name} is required"
    if kind == "literal_error":
        return f"{name}: {err['input']!r} is not one of {ctx.get('expected', '')}"
    if kind in ("string_too_short", "string_too_long"):
        declared = _declared(model, loc)
        bounds = {"min_length": declared.get("minLength"), "max_length": declared.get("maxLength")}
        return f"{name} must be {_length({**bounds, **ctx})} characters"
    if kind in ("too_short", "too_long"):
        declared = _declared(model, loc)
        bounds = {"min_length": declared.get("minItems"), "max_length": declared.get("maxItems")}
        return f"{name} must have {_length({**bounds, **ctx})} items"
    return f"{name}: {err['msg']}"


@functools.cache
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _declared(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> dict[str, Any]:
    """The JSON schema of the field at ``loc`` (its non-null branch), or {} if unknown."""
    if model is None:
        return {}
    try:
        schema = _json_schema(model)
    except Exception:  # a model without a JSON schema: fall back to the error's own bound
        return {}
    defs = schema.get("$defs", {})

    def branch(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            node = defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        for alt in node.get("anyOf", []):
            if alt.get("type") != "null":
                return branch(alt)
        return node

    node = schema
    for part in loc:
        node = branch(node)
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
    return branch(node)


def _length(ctx: dict[str, Any]) -> str:
    lo, hi = ctx.get("min_length"), ctx.get("max_length")
    if lo is not None and hi is not None:
        return f"{lo} to {hi}" if lo != hi else f"exactly {lo}"
    if hi is not None:
        return f"at most {hi}"
    return f"at least {lo}"


def query_dict(items: list[tuple[str, str]], list_fields: set[str]) -> dict[str, Any]:
    """Query parameters as a dict; list fields accept JSON text or repeated parameters."""
    out: dict[str, Any] = {}
    for key, value in items:
        if key in list_fields:
            out.setdefault(key, []).extend(_list_value(key, value))
        elif key not in out:
            out[key] = value
    return out


def _list_value(key: str, value: str) -> list[Any]:
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            raise InvalidParameter(
                f'{key} must be a JSON array, like ["1", "2"]', field=key
            ) from None
        if not isinstance(parsed, list):
            raise InvalidParameter(f"{key} must be a JSON array", field=key)
        return parsed
    return [text] if text else []
