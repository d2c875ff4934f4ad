"""Events API request bodies (2.0 ``event/track/``; 1.0 ``pixel/*`` and ``offline/*``).

msgspec decodes and type-checks a body in one C pass, an order of magnitude faster than
building pydantic models, which matters at 1,000 events per request. Unknown fields are
ignored (clients send partner-specific extras); a wrong type is reported with its path, for
example ``data[3].event_id``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from likewise.domain.events import MAX_CONTENTS, MAX_TEXT
from likewise.errors import InvalidParameter

T = TypeVar("T")

# Identifiers must be SHA-256 hex; that is checked in Python (ingest.events), not with a
# msgspec pattern constraint: with one inside a union, msgspec 0.19.0 sometimes crashed the
# process at garbage collection.
StrOrList = str | list[str] | None
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Number = float | str  # a number, or a plain decimal string ("19.90"), checked in Python
AttStatus = Literal["AUTHORIZED", "DENIED", "NOT_DETERMINED", "RESTRICTED", "NOT_APPLICABLE"]


class Wire(msgspec.Struct, omit_defaults=True, gc=False):
    """Decoded JSON holds no reference cycles, so the collector need not track these (1,000 per
    request would trigger collections)."""


# --- properties (the fields rules filter on; the rest is kept as sent) ----------------------


class Content(Wire):
    content_id: str | int | None = None
    content_category: str | None = None
    content_name: str | None = None
    brand: str | None = None
    price: Number | None = None
    quantity: Number | None = None


class Properties(Wire):
    value: Number | None = None
    currency: str | None = None
    content_type: str | None = None
    content_id: str | int | None = None
    content_ids: Annotated[list[str | int], msgspec.Meta(max_length=MAX_CONTENTS)] | None = None
    content_category: str | None = None
    contents: Annotated[list[Content], msgspec.Meta(max_length=MAX_CONTENTS)] | None = None
    price: Number | None = None


# --- Events API 2.0 ---------------------------------------------------------------------------


class User(Wire):
    email: StrOrList = None
    phone: StrOrList = None
    external_id: StrOrList = None
    ttclid: Text | None = None
    ttp: Text | None = None
    ip: str | None = None
    user_agent: str | None = None
    locale: str | None = None
    idfa: str | None = None
    idfv: str | None = None
    gaid: str | None = None
    att_status: AttStatus | None = None


class Page(Wire):
    url: Text | None = None
    referrer: Text | None = None


class App(Wire):
    app_id: Text | None = None
    app_name: str | None = None
    app_version: str | None = None


class Ad(Wire):
    callback: str | None = None
    campaign_id: str | None = None
    ad_id: Text | None = None
    creative_id: str | None = None
    is_retargeting: bool | None = None
    attributed: bool | None = None
    attribute_type: str | None = None
    attribute_provider: str | None = None


class Lead(Wire):
    lead_id: Text | None = None
    lead_event_source: str | None = None


class Event(Wire):
    event: str
    event_time: int | float
    event_id: str | None = None
    user: User | None = None
    properties: dict[str, Any] | None = None
    page: Page | None = None
    app: App | None = None
    ad: Ad | None = None
    lead: Lead | None = None
    limited_data_use: bool | None = None


class TrackBody(Wire):
    event_source: Literal["web", "app", "offline", "crm"]
    event_source_id: str
    data: list[Event]
    test_event_code: str | None = None
    partner_name: str | None = None


class TrackLinesEvent(Event):
    """An event as the compiled fast path needs it checked: ``properties`` is left undecoded
    (still checked to be JSON), since the fast path reads it from the body itself. Building
    the dictionaries the reference needs was over half of decoding a request."""

    properties: msgspec.Raw = msgspec.Raw()


class TrackLinesBody(TrackBody):
    data: list[TrackLinesEvent]  # type: ignore[assignment]


def decode_track(raw: bytes) -> TrackLinesBody | TrackBody:
    """An ``event/track/`` body, checked for the fast path (:class:`TrackLinesBody`). A body
    that is not valid UTF-8 throughout is decoded as a :class:`TrackBody` instead, which takes
    or refuses it on what it holds: msgspec checks the UTF-8 of the texts it decodes, not of
    the JSON it leaves undecoded (``properties`` here)."""
    if not raw.isascii():
        try:
            raw.decode()
        except UnicodeDecodeError:
            return decode(TrackBody, raw)
    return decode(TrackLinesBody, raw)


# --- Events API 1.0 ---------------------------------------------------------------------------


class PixelUser(Wire):
    email: str | None = None
    phone_number: str | None = None
    external_id: str | None = None
    ttp: Text | None = None


class PixelAd(Wire):
    callback: Text | None = None


class PixelContext(Wire):
    ad: PixelAd | None = None
    page: Page | None = None
    user: PixelUser | None = None
    ip: str | None = None
    user_agent: str | None = None


class PixelTrackBody(Wire):
    pixel_code: str
    event: str | None = None
    event_id: str | None = None
    timestamp: str | None = None
    context: PixelContext | None = None
    properties: dict[str, Any] | None = None
    test_event_code: str | None = None
    partner_name: str | None = None


class PixelBatchItem(Wire):
    event: str | None = None
    type: str | None = None
    event_id: str | None = None
    timestamp: str | None = None
    context: PixelContext | None = None
    properties: dict[str, Any] | None = None


class PixelBatchBody(Wire):
    pixel_code: str
    batch: list[PixelBatchItem]
    test_event_code: str | None = None
    partner_name: str | None = None


class OfflineUser(Wire):
    email: StrOrList = None
    phone_number: StrOrList = None
    external_id: StrOrList = None


class OfflineContext(Wire):
    user: OfflineUser | None = None


class OfflineTrackBody(Wire):
    event_set_id: str
    event: str | None = None
    event_id: str | None = None
    timestamp: str | None = None
    context: OfflineContext | None = None
    properties: dict[str, Any] | None = None
    test_event_code: str | None = None
    partner_name: str | None = None


class OfflineBatchItem(Wire):
    event: str | None = None
    event_id: str | None = None
    timestamp: str | None = None
    context: OfflineContext | None = None
    properties: dict[str, Any] | None = None


class OfflineBatchBody(Wire):
    event_set_id: str
    batch: list[OfflineBatchItem]
    test_event_code: str | None = None
    partner_name: str | None = None


# --- decoding ---------------------------------------------------------------------------------

_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_PATH = re.compile(r" - at `\$\.?(.*)`$")
_EXPECTED = re.compile(r"^Expected `([^`]*)`, got `([^`]*)`")


def decode(model: type[T], raw: bytes) -> T:
    """``raw`` JSON as ``model``, or a 40002 naming the field and what was wrong with it."""
    decoder = _DECODERS.get(model)
    if decoder is None:
        decoder = _DECODERS[model] = msgspec.json.Decoder(model)
    try:
        return decoder.decode(raw)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        message, field = describe(str(exc))
        raise InvalidParameter(message, field=field) from None
    except msgspec.DecodeError:
        raise InvalidParameter("the request body is not valid JSON") from None
    except UnicodeDecodeError:  # a text that is not UTF-8 (msgspec lets Python decode it)
        raise InvalidParameter("the request body is not valid UTF-8") from None


def describe(text: str) -> tuple[str, str | None]:
    """msgspec's "Expected `str`, got `int` - at `$.data[0].event_id`" in TikTok's words."""
    at = _PATH.search(text)
    path = at.group(1) if at else ""
    what = text[: at.start()] if at else text
    if what.startswith("Object missing required field"):
        name = what.split("`")[1]
        full = f"{path}.{name}" if path else name
        return f"{full} is required", full
    expected = _EXPECTED.match(what)
    if expected:
        want = expected.group(1).replace(" | null", "")
        if not path:
            return f"the request body must be a JSON {want}, not {expected.group(2)}", None
        return f"Invalid value for {path}: expected {want}, got {expected.group(2)}", path
    if not path:
        return f"Invalid request body: {what}", None
    return f"Invalid value for {path}: {what}", path


# --- the Likewise pixel's collector -----------------------------------------------------------


class CollectUser(Wire):
    email: str | None = None  # SHA-256, hashed in the browser
    phone_number: str | None = None
    external_id: str | None = None


class CollectEvent(Wire):
    event: str
    event_id: str | None = None
    timestamp: str | None = None
    properties: dict[str, Any] | None = None
    page: Page | None = None
    user: CollectUser | None = None
    ttp: Text | None = None
    ttclid: Text | None = None


class CollectBody(Wire):
    pixel_code: str
    events: list[CollectEvent]
