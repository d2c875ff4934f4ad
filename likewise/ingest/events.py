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
from likewise.ingest import schema as wire
from likewise.ingest.records import EventRecord

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}|[0-9a-fA-F]{32}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_JSON = msgspec.json.Encoder()


@dataclass(frozen=True)
class Source:
    """What the intake needs to know about an event source."""

    id: int
    advertiser_id: int
    channel: str  # web | app | offline | crm | pixel | lead | engagement


@dataclass(frozen=True)
class Window:
    """Event times accepted: not older than ``max_age_days``, not more than a day ahead."""

    now: float
    max_age_days: int

    def check(self, t: float, field: str) -> float:
        if not math.isfinite(t):
            raise InvalidParameter(f"{field} must be a Unix time in seconds", field=field)
        if t > 1e11:  # milliseconds: a common slip, and unambiguous
            t /= 1000.0
        if t < self.now - self.max_age_days * 86400:
            raise InvalidParameter(
                f"{field} is more than {self.max_age_days} days in the past", field=field
            )
        if t > self.now + 86400:
            raise InvalidParameter(f"{field} is in the future", field=field)
        return t


# --- Events API 2.0 ---------------------------------------------------------------------------


def track_records(body: wire.TrackBody, source: Source, window: Window) -> list[EventRecord]:
    """The records of an ``event/track/`` request, or an error naming the first bad field."""
    n = len(body.data)
    if n == 0:
        raise InvalidParameter("data must hold at least one event", field="data")
    if n > names.MAX_EVENTS_PER_REQUEST:
        raise InvalidParameter(
            f"data holds {n} events; at most {names.MAX_EVENTS_PER_REQUEST} per request",
            field="data",
        )
    test = bool(body.test_event_code)
    return [
        _track_record(ev, f"data[{i}]", body.event_source, source, window, test)
        for i, ev in enumerate(body.data)
    ]


def _track_record(
    ev: wire.Event, at: str, kind: str, source: Source, window: Window, test: bool
) -> EventRecord:
    event = _event_name(ev.event, f"{at}.event", standard_only=kind == "offline")
    user = ev.user or wire.User()
    page = ev.page
    if kind == "web" and (page is None or not page.url):
        raise InvalidParameter(f"{at}.page.url is required for web events", field=f"{at}.page")
    if kind == "app" and (ev.app is None or not ev.app.app_id):
        raise InvalidParameter(f"{at}.app.app_id is required for app events", field=f"{at}.app")
    if kind == "crm" and (ev.lead is None or not ev.lead.lead_id):
        raise InvalidParameter(f"{at}.lead.lead_id is required for crm events", field=f"{at}.lead")
    record = EventRecord(
        source_id=source.id,
        advertiser_id=source.advertiser_id,
        channel=kind,
        event=event,
        event_time=window.check(float(ev.event_time), f"{at}.event_time"),
        received_at=window.now,
        event_id=_event_id(ev.event_id, f"{at}.event_id"),
        test=test,
        limited=bool(ev.limited_data_use) or user.att_status == "DENIED",
        email=_hashed(user.email, f"{at}.user.email"),
        phone=_hashed(user.phone, f"{at}.user.phone"),
        external_id=_hashed(user.external_id, f"{at}.user.external_id"),
        ttclid=_text(user.ttclid, f"{at}.user.ttclid"),
        ttp=_text(user.ttp, f"{at}.user.ttp"),
        idfa=_device(user.idfa, f"{at}.user.idfa"),
        gaid=_device(user.gaid, f"{at}.user.gaid"),
        url=_text(page.url if page else None, f"{at}.page.url"),
        referrer=_text(page.referrer if page else None, f"{at}.page.referrer"),
        app_id=_text(ev.app.app_id if ev.app else None, f"{at}.app.app_id"),
        ad_id=_text(ev.ad.ad_id if ev.ad else None, f"{at}.ad.ad_id"),
        lead_id=_text(ev.lead.lead_id if ev.lead else None, f"{at}.lead.lead_id"),
    )
    _properties(record, ev.properties, f"{at}.properties")
    return record


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
        ctx = item.context or wire.PixelContext()
        user = ctx.user or wire.PixelUser()
        page = ctx.page
        record = EventRecord(
            source_id=source.id,
            advertiser_id=source.advertiser_id,
            channel="web",
            event=_event_name(item.event, f"{at}event", standard_only=False),
            event_time=_timestamp(item.timestamp, f"{at}timestamp", window),
            received_at=window.now,
            event_id=_event_id(item.event_id, f"{at}event_id"),
            test=test,
            email=_hashed(user.email, f"{at}context.user.email"),
            phone=_hashed(user.phone_number, f"{at}context.user.phone_number"),
            external_id=_hashed(user.external_id, f"{at}context.user.external_id"),
            ttp=_text(user.ttp, f"{at}context.user.ttp"),
            ttclid=_text(ctx.ad.callback if ctx.ad else None, f"{at}context.ad.callback"),
            url=_text(page.url if page else None, f"{at}context.page.url"),
            referrer=_text(page.referrer if page else None, f"{at}context.page.referrer"),
        )
        _properties(record, item.properties, f"{at}properties")
        out.append(record)
    return out


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
        user = (item.context.user if item.context else None) or wire.OfflineUser()
        record = EventRecord(
            source_id=source.id,
            advertiser_id=source.advertiser_id,
            channel="offline",
            event=_event_name(item.event, f"{at}event", standard_only=True),
            event_time=_timestamp(item.timestamp, f"{at}timestamp", window),
            received_at=window.now,
            event_id=_event_id(item.event_id, f"{at}event_id"),
            test=test,
            email=_hashed(user.email, f"{at}context.user.email"),
            phone=_hashed(user.phone_number, f"{at}context.user.phone_number"),
            external_id=_hashed(user.external_id, f"{at}context.user.external_id"),
        )
        _properties(record, item.properties, f"{at}properties")
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


def _timestamp(value: str | None, field: str, window: Window) -> float:
    """ISO 8601 or ``YYYY-MM-DD HH:MM:SS`` (UTC unless an offset is given); empty means now."""
    if value is None or not value.strip():
        return window.now
    text = value.strip()
    if text.isdigit():
        return window.check(float(text), field)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            f"{field} {value!r} is not a time: use ISO 8601 (2024-01-01T00:00:00Z) or "
            "'2024-01-01 00:00:00'",
            field=field,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return window.check(parsed.timestamp(), field)


# --- fields -----------------------------------------------------------------------------------


def _event_name(value: str | None, field: str, *, standard_only: bool) -> str:
    name = (value or "").strip()
    if not name:
        raise InvalidParameter(f"{field} is required", field=field)
    if len(name) > names.MAX_EVENT_NAME:
        raise InvalidParameter(
            f"{field} is longer than {names.MAX_EVENT_NAME} characters", field=field
        )
    if standard_only and name not in names.STANDARD_EVENTS:
        raise InvalidParameter(
            f"{field} {name!r} is not a standard event; offline event sets take standard "
            "events only",
            field=field,
        )
    return name


def _event_id(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > names.MAX_EVENT_ID:
        raise InvalidParameter(
            f"{field} is longer than {names.MAX_EVENT_ID} characters", field=field
        )
    return value


def _text(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > names.MAX_TEXT:
        raise InvalidParameter(f"{field} is longer than {names.MAX_TEXT} characters", field=field)
    return value


def _hashed(value: str | list[str] | None, field: str) -> list[str]:
    """SHA-256 hex digests, lowercased. A raw e-mail or phone is refused: it must never reach
    the server unhashed (TikTok's "PII not hashed", 40062)."""
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if len(values) > names.MAX_IDS_PER_KEY:
        raise InvalidParameter(
            f"{field} holds {len(values)} values; at most {names.MAX_IDS_PER_KEY}", field=field
        )
    out = []
    for v in values:
        v = v.strip()
        if not v:
            continue
        if not _SHA256.fullmatch(v):
            raise NotHashed(
                f"{field} must be SHA-256 hashed (64 hex characters) before sending; "
                "raw or otherwise encoded values are refused",
                field=field,
            )
        out.append(v.lower())
    return out


def _device(value: str | None, field: str) -> str | None:
    """Device ids are sent raw (either case) or hashed; kept as the hex digest of the
    normalised id, the form the identity graph joins on."""
    if value is None or not value.strip():
        return None
    v = value.strip()
    if _HEX_DIGEST.fullmatch(v):
        return v.lower()
    norm = normalize_device_id(v)
    if norm is None:
        raise InvalidParameter(
            f"{field} is not a device id (a UUID such as 6D92078A-8246-4BA4-AE5B-76104861E7DC, "
            "or its MD5/SHA-256)",
            field=field,
        )
    return sha256_hex(norm)


def _properties(record: EventRecord, props: dict[str, Any] | None, field: str) -> None:
    """Checks the fields rules filter on and keeps the object (bounded) as JSON."""
    if not props:
        return
    if len(props) > names.MAX_PROPERTY_KEYS:
        raise InvalidParameter(
            f"{field} has {len(props)} keys; at most {names.MAX_PROPERTY_KEYS}", field=field
        )
    text = _JSON.encode(props)
    if len(text) > names.MAX_PROPERTIES_BYTES:
        raise InvalidParameter(
            f"{field} is {len(text)} bytes of JSON; at most {names.MAX_PROPERTIES_BYTES}",
            field=field,
        )
    record.properties = text.decode()
    record.value = _number(props.get("value"), f"{field}.value")
    currency = props.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency.strip().upper()):
            raise InvalidParameter(
                f"{field}.currency must be an ISO 4217 code such as USD", field=f"{field}.currency"
            )
        record.currency = currency.strip().upper()
    content_type = props.get("content_type")
    if content_type is not None:
        if not isinstance(content_type, str):
            raise InvalidParameter(
                f"{field}.content_type must be a string", field=f"{field}.content_type"
            )
        record.content_type = content_type
    ids: list[str] = []
    categories: list[str] = []
    prices: list[float] = []
    content_ids = props.get("content_ids")
    if content_ids is not None:
        if not isinstance(content_ids, list) or not all(
            isinstance(x, str | int) for x in content_ids
        ):
            raise InvalidParameter(
                f"{field}.content_ids must be a list of strings", field=f"{field}.content_ids"
            )
        ids += [str(x) for x in content_ids]
    if props.get("content_id") is not None:
        ids.append(str(props["content_id"]))
    if isinstance(props.get("content_category"), str):
        categories.append(props["content_category"])
    contents = props.get("contents")
    if contents is not None:
        if not isinstance(contents, list) or len(contents) > names.MAX_CONTENTS:
            raise InvalidParameter(
                f"{field}.contents must be a list of at most {names.MAX_CONTENTS} items",
                field=f"{field}.contents",
            )
        for j, item in enumerate(contents):
            at = f"{field}.contents[{j}]"
            if not isinstance(item, dict):
                raise InvalidParameter(f"{at} must be an object", field=at)
            if item.get("content_id") is not None:
                ids.append(str(item["content_id"]))
            if isinstance(item.get("content_category"), str):
                categories.append(item["content_category"])
            price = _number(item.get("price"), f"{at}.price")
            if price is not None:
                prices.append(price)
            _number(item.get("quantity"), f"{at}.quantity")
    if props.get("price") is not None:
        price = _number(props.get("price"), f"{field}.price")
        assert price is not None
        prices.append(price)
    record.content_ids, record.content_categories, record.prices = ids, categories, prices


def _number(value: Any, field: str) -> float | None:
    """A number, or a plain decimal string ("12.50"): no symbols, no thousands separators."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidParameter(f"{field} must be a number", field=field)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise InvalidParameter(
                f"{field} must be a plain decimal number such as 12.50", field=field
            ) from None
    else:
        raise InvalidParameter(f"{field} must be a number", field=field)
    if not math.isfinite(number):
        raise InvalidParameter(f"{field} must be a finite number", field=field)
    return number


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
        user = item.user or wire.CollectUser()
        page = item.page
        record = EventRecord(
            source_id=source.id,
            advertiser_id=source.advertiser_id,
            channel="pixel",
            event=_event_name(item.event, f"{at}event", standard_only=False),
            event_time=_timestamp(item.timestamp, f"{at}timestamp", window),
            received_at=window.now,
            event_id=_event_id(item.event_id, f"{at}event_id"),
            email=_hashed(user.email, f"{at}user.email"),
            phone=_hashed(user.phone_number, f"{at}user.phone_number"),
            external_id=_hashed(user.external_id, f"{at}user.external_id"),
            ttp=_text(item.ttp, f"{at}ttp"),
            ttclid=_text(item.ttclid, f"{at}ttclid"),
            url=_text(page.url if page else None, f"{at}page.url"),
            referrer=_text(page.referrer if page else None, f"{at}page.referrer"),
        )
        _properties(record, item.properties, f"{at}properties")
        out.append(record)
    return out
