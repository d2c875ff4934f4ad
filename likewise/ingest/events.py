"""Events API intake: checks every event of a request and builds :class:`EventRecord`s.

A request is accepted or refused whole (TikTok fails the entire batch on one bad event), and a
refusal names the event index and the field. Nothing is written for a refused request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from likewise.domain import events as names
from likewise.errors import InvalidParameter, NotHashed
from likewise.identity.device import normalize_device_id
from likewise.identity.hashing import sha256_hex
from likewise.ingest import _track
from likewise.ingest import schema as wire
from likewise.ingest.records import EventRecord, encode_batch

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}|[0-9a-fA-F]{32}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_DECIMAL = re.compile(r"\s*-?[0-9]+(?:\.[0-9]+)?\s*")
_JSON = msgspec.json.Encoder()
_PROPERTIES = msgspec.json.Decoder(wire.Properties)


@dataclass(frozen=True)
class Source:
    """What the intake needs to know about an event source."""

    id: int
    advertiser_id: int


@dataclass(frozen=True)
class Window:
    """Event times accepted: not older than ``max_age_days``, not more than a day ahead."""

    now: float
    max_age_days: int

    def check(self, t: float, at: str, name: str) -> float:
        if not math.isfinite(t):
            raise _bad(at, name, "must be a Unix time in seconds")
        if t > 1e11:  # milliseconds: a common slip, and unambiguous
            t /= 1000.0
        if t < self.now - self.max_age_days * 86400:
            raise _bad(at, name, f"is more than {self.max_age_days} days in the past")
        if t > self.now + 86400:
            raise _bad(at, name, "is in the future")
        return t


def _bad(at: str, name: str, problem: str) -> InvalidParameter:
    """A 40002 naming the field; paths are only built when something is wrong (hot path)."""
    field = f"{at}{name}"
    return InvalidParameter(f"{field} {problem}", field=field)


# --- Events API 2.0 ---------------------------------------------------------------------------


def track_records(body: wire.TrackBody, source: Source, window: Window) -> list[EventRecord]:
    """The records of an ``event/track/`` request, or an error naming the first bad field."""
    _count(len(body.data), "data")
    test = bool(body.test_event_code)
    kind = body.event_source
    return [_track_record(ev, i, kind, source, window, test) for i, ev in enumerate(body.data)]


def track_lines(
    raw: bytes, body: wire.TrackLinesBody | wire.TrackBody, source: Source, window: Window
) -> bytes:
    """The event log's lines of an ``event/track/`` request (``raw``, decoded by
    :func:`~likewise.ingest.schema.decode_track` as ``body``), or an error naming the first bad
    field: from the compiled fast path when it can decide every event exactly, otherwise (and
    for every refusal) from :func:`track_records`, on the body decoded in full."""
    lines = fast_track_lines(raw, body, source, window)
    if lines is None:
        if isinstance(body, wire.TrackLinesBody):  # properties not decoded
            body = wire.decode(wire.TrackBody, raw)
        lines = encode_batch(track_records(body, source, window))
    return lines


def fast_track_lines(
    raw: bytes, body: wire.TrackLinesBody | wire.TrackBody, source: Source, window: Window
) -> bytes | None:
    """The compiled fast path (``_track``) alone: the lines, or None when the reference must
    decide."""
    head = b'{"source_id":%d,"advertiser_id":%d,"channel":"%s","event":' % (
        source.id,
        source.advertiser_id,
        body.event_source.encode(),
    )
    return _track.track_lines(
        raw,
        _track.KINDS[body.event_source],
        head,
        b',"received_at":' + _JSON.encode(window.now),
        bool(body.test_event_code),
        window.now - window.max_age_days * 86400,
        window.now + 86400,
        names.STANDARD_EVENTS,
        names.MAX_EVENTS_PER_REQUEST,
        names.MAX_EVENT_NAME,
        names.MAX_EVENT_ID,
        names.MAX_IDS_PER_KEY,
        names.MAX_CONTENTS,
        # Half the limit: the reference measures its own re-encoding, which can differ a little.
        names.MAX_PROPERTIES_BYTES // 2,
    )


def _track_record(
    ev: wire.Event, i: int, kind: str, source: Source, window: Window, test: bool
) -> EventRecord:
    at = f"data[{i}]."
    user = ev.user or _NO_USER
    page, app, ad, lead = ev.page, ev.app, ev.ad, ev.lead
    if kind == "web" and (page is None or not page.url):
        raise _bad(at, "page.url", "is required for web events")
    if kind == "app" and (app is None or not app.app_id):
        raise _bad(at, "app.app_id", "is required for app events")
    if kind == "crm" and (lead is None or not lead.lead_id):
        raise _bad(at, "lead.lead_id", "is required for crm events")
    record = EventRecord(
        source_id=source.id,
        advertiser_id=source.advertiser_id,
        channel=kind,
        event=_event_name(ev.event, at, standard_only=kind == "offline"),
        event_time=window.check(float(ev.event_time), at, "event_time"),
        received_at=window.now,
        event_id=_event_id(ev.event_id, at),
        test=test,
        limited=bool(ev.limited_data_use) or user.att_status == "DENIED",
    )
    # Only what is present is set (the rest keeps its default): most events carry a few keys.
    if user is not _NO_USER:
        if user.email:
            record.email = _hashed(user.email, at, "user.email")
        if user.phone:
            record.phone = _hashed(user.phone, at, "user.phone")
        if user.external_id:
            record.external_id = _hashed(user.external_id, at, "user.external_id")
        record.ttclid = user.ttclid or None
        record.ttp = user.ttp or None
        if user.idfa is not None:
            record.idfa = _device(user.idfa, at, "user.idfa")
        if user.gaid is not None:
            record.gaid = _device(user.gaid, at, "user.gaid")
    if page is not None:
        record.url = page.url or None
        record.referrer = page.referrer or None
    if app is not None:
        record.app_id = app.app_id or None
    if ad is not None:
        record.ad_id = ad.ad_id or None
    if lead is not None:
        record.lead_id = lead.lead_id or None
    if ev.properties is not None:
        _properties(record, ev.properties, at)
    return record


_NO_USER = wire.User()


# --- Events API 1.0 ---------------------------------------------------------------------------


def pixel_records(
    items: Sequence[wire.PixelBatchItem | wire.PixelTrackBody],
    source: Source,
    window: Window,
    *,
    test: bool,
    prefix: str,
) -> list[EventRecord]:
    """Records of ``pixel/track/`` (one item, ``prefix`` "") or ``pixel/batch/``
    (``prefix`` "batch")."""
    _count(len(items), prefix or "event")
    out = []
    for i, item in enumerate(items):
        at = f"{prefix}[{i}]." if prefix else ""
        ctx = item.context or _NO_CONTEXT
        user = ctx.user or _NO_PIXEL_USER
        page = ctx.page
        record = EventRecord(
            source_id=source.id,
            advertiser_id=source.advertiser_id,
            channel="web",
            event=_event_name(item.event, at, standard_only=False),
            event_time=_timestamp(item.timestamp, at, window),
            received_at=window.now,
            event_id=_event_id(item.event_id, at),
            test=test,
            email=_hashed(user.email, at, "context.user.email"),
            phone=_hashed(user.phone_number, at, "context.user.phone_number"),
            external_id=_hashed(user.external_id, at, "context.user.external_id"),
            ttp=user.ttp or None,
            ttclid=ctx.ad.callback or None if ctx.ad else None,
            url=page.url or None if page else None,
            referrer=page.referrer or None if page else None,
        )
        if item.properties is not None:
            _properties(record, item.properties, at)
        out.append(record)
    return out


_NO_CONTEXT = wire.PixelContext()
_NO_PIXEL_USER = wire.PixelUser()
_NO_OFFLINE_USER = wire.OfflineUser()


def offline_records(
    items: Sequence[wire.OfflineBatchItem | wire.OfflineTrackBody],
    source: Source,
    window: Window,
    *,
    test: bool,
    prefix: str,
) -> list[EventRecord]:
    _count(len(items), prefix or "event")
    out = []
    for i, item in enumerate(items):
        at = f"{prefix}[{i}]." if prefix else ""
        user = (item.context.user if item.context else None) or _NO_OFFLINE_USER
        record = EventRecord(
            source_id=source.id,
            advertiser_id=source.advertiser_id,
            channel="offline",
            event=_event_name(item.event, at, standard_only=True),
            event_time=_timestamp(item.timestamp, at, window),
            received_at=window.now,
            event_id=_event_id(item.event_id, at),
            test=test,
            email=_hashed(user.email, at, "context.user.email"),
            phone=_hashed(user.phone_number, at, "context.user.phone_number"),
            external_id=_hashed(user.external_id, at, "context.user.external_id"),
        )
        if item.properties is not None:
            _properties(record, item.properties, at)
        out.append(record)
    return out


def _count(n: int, field: str) -> None:
    if n == 0:
        raise InvalidParameter(f"{field} must hold at least one event", field=field)
    if n > names.MAX_EVENTS_PER_REQUEST:
        raise InvalidParameter(
            f"{field} holds {n} events; at most {names.MAX_EVENTS_PER_REQUEST} per request",
            field=field,
        )


def _timestamp(value: str | None, at: str, window: Window) -> float:
    """ISO 8601 or ``YYYY-MM-DD HH:MM:SS`` (UTC unless an offset is given); empty means now."""
    if value is None or not value.strip():
        return window.now
    text = value.strip()
    if text.isdigit():
        return window.check(float(text), at, "timestamp")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(
            at,
            "timestamp",
            f"{value[:40]!r} is not a time: use ISO 8601 (2024-01-01T00:00:00Z) or "
            "'2024-01-01 00:00:00'",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return window.check(parsed.timestamp(), at, "timestamp")


# --- fields -----------------------------------------------------------------------------------


def _event_name(value: str | None, at: str, *, standard_only: bool) -> str:
    if not value or not (name := value.strip()):
        raise _bad(at, "event", "is required")
    if len(name) > names.MAX_EVENT_NAME:
        raise _bad(at, "event", f"is longer than {names.MAX_EVENT_NAME} characters")
    if standard_only and name not in names.STANDARD_EVENTS:
        raise _bad(
            at,
            "event",
            f"{name!r} is not a standard event; offline event sets take standard events only",
        )
    return name


def _event_id(value: str | None, at: str) -> str | None:
    if not value:
        return None
    if len(value) > names.MAX_EVENT_ID:
        raise _bad(at, "event_id", f"is longer than {names.MAX_EVENT_ID} characters")
    return value


def _hashed(value: str | list[str] | None, at: str, name: str) -> list[str]:
    """SHA-256 hex digests, lowercased. A raw e-mail or phone is refused: it must never reach
    the server unhashed (TikTok's "PII not hashed", 40062)."""
    if not value:
        return []
    if type(value) is str and len(value) == 64 and _SHA256.fullmatch(value):
        return [value.lower()]  # the usual case: one hash, as a string
    values = [value] if isinstance(value, str) else value
    if len(values) > names.MAX_IDS_PER_KEY:
        raise _bad(at, name, f"holds {len(values)} values; at most {names.MAX_IDS_PER_KEY}")
    out = []
    for v in values:
        if not v:
            continue  # some clients send "" for "none"
        if len(v) != 64 or not _SHA256.fullmatch(v):
            field = f"{at}{name}"
            raise NotHashed(
                f"{field} must be SHA-256 hashed (64 hex characters) before sending; raw or "
                "otherwise encoded values are refused",
                field=field,
            )
        out.append(v.lower())
    return out


def _device(value: str | None, at: str, name: str) -> str | None:
    """Device ids are sent raw (either case) or hashed; kept as the hex digest of the
    normalised id, the form the identity graph joins on."""
    if value is None or not value.strip():
        return None
    v = value.strip()
    if _HEX_DIGEST.fullmatch(v):
        return v.lower()
    norm = normalize_device_id(v)
    if norm is None:
        raise _bad(
            at,
            name,
            "is not a device id (a UUID such as 6D92078A-8246-4BA4-AE5B-76104861E7DC, "
            "or its MD5/SHA-256)",
        )
    return sha256_hex(norm)


def _properties(record: EventRecord, props: dict[str, Any], at: str) -> None:
    """Reads the fields rules filter on (checked by msgspec) and keeps the object as sent.

    (Not ``msgspec.Raw``: with it, version 0.19.0 sometimes crashed the process at exit.)"""
    text = _JSON.encode(props)
    if len(text) > names.MAX_PROPERTIES_BYTES:
        raise _bad(
            at, "properties", f"is {len(text)} bytes of JSON; at most {names.MAX_PROPERTIES_BYTES}"
        )
    try:
        typed = _PROPERTIES.decode(text)  # from the text just encoded: faster than convert()
    except msgspec.ValidationError as exc:
        message, field = wire.describe(str(exc))
        if field is None:
            raise _bad(at, "properties", "must be a JSON object") from None
        full = f"{at}properties.{field}"
        raise InvalidParameter(message.replace(field, full, 1), field=full) from None
    record.properties = text.decode()
    # Only what is present is read and set (the record's defaults stand for the rest); paths
    # for error messages are built only on an error.
    value = typed.value
    if value is not None:
        record.value = _decimal(value, at, "properties.value")
    currency = typed.currency
    if currency is not None:
        currency = currency.strip().upper()
        if not _CURRENCY.fullmatch(currency):
            raise _bad(at, "properties.currency", "must be an ISO 4217 code such as USD")
        record.currency = currency
    if typed.content_type is not None:
        record.content_type = typed.content_type
    ids = [str(x) for x in typed.content_ids] if typed.content_ids else []
    if typed.content_id is not None:
        ids.append(str(typed.content_id))
    categories = [typed.content_category] if typed.content_category else []
    prices = []
    if typed.price is not None:
        price = _decimal(typed.price, at, "properties.price")
        if price is not None:
            prices.append(price)
    for j, item in enumerate(typed.contents or ()):
        if item.content_id is not None:
            ids.append(str(item.content_id))
        if item.content_category:
            categories.append(item.content_category)
        price = item.price
        if price is not None:
            if type(price) is not float or not math.isfinite(price):  # else: valid as it is
                price = _decimal(price, at, f"properties.contents[{j}].price")
            if price is not None:
                prices.append(price)
        if type(item.quantity) is not int and item.quantity is not None:  # whole numbers: valid
            _decimal(item.quantity, at, f"properties.contents[{j}].quantity")
    if ids:
        record.content_ids = ids
    if categories:
        record.content_categories = categories
    if prices:
        record.prices = prices


def _decimal(value: float | str, at: str, name: str) -> float | None:
    """A number, or a plain decimal string ("12.50"): no symbols, no thousands separators."""
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise _bad(at, name, "must be a finite number")
    if value == "":
        return None
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise _bad(at, name, "must be a plain decimal number such as 12.50")
        value = float(value)
    if not math.isfinite(value):
        raise _bad(at, name, "must be a finite number")
    return float(value)


# --- the Likewise pixel -----------------------------------------------------------------------

MAX_PIXEL_EVENTS = 50  # a browser sends what one page queued, not bulk data


def collect_records(body: wire.CollectBody, source: Source, window: Window) -> list[EventRecord]:
    """Events from the Likewise pixel in a browser (channel ``pixel``): identifiers arrive
    already hashed in the browser (Web Crypto), like TikTok's advanced matching."""
    if not body.events:
        raise InvalidParameter("events must hold at least one event", field="events")
    if len(body.events) > MAX_PIXEL_EVENTS:
        raise InvalidParameter(
            f"events holds {len(body.events)} events; at most {MAX_PIXEL_EVENTS}", field="events"
        )
    out = []
    for i, item in enumerate(body.events):
        at = f"events[{i}]."
        user = item.user or _NO_COLLECT_USER
        page = item.page
        record = EventRecord(
            source_id=source.id,
            advertiser_id=source.advertiser_id,
            channel="pixel",
            event=_event_name(item.event, at, standard_only=False),
            event_time=_timestamp(item.timestamp, at, window),
            received_at=window.now,
            event_id=_event_id(item.event_id, at),
            email=_hashed(user.email, at, "user.email"),
            phone=_hashed(user.phone_number, at, "user.phone_number"),
            external_id=_hashed(user.external_id, at, "user.external_id"),
            ttp=item.ttp or None,
            ttclid=item.ttclid or None,
            url=page.url or None if page else None,
            referrer=page.referrer or None if page else None,
        )
        if item.properties is not None:
            _properties(record, item.properties, at)
        out.append(record)
    return out


_NO_COLLECT_USER = wire.CollectUser()
