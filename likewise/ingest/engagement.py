"""Platform engagement intake: what the operator's ad server and apps report about its users
(ad impressions and clicks, video play depth, likes, comments, shares, follows and profile
visits of business accounts, LIVE views, lead forms, shop events), checked whole and turned
into :class:`EventRecord`s (channel ``engagement``, source 0).

Each event names the platform user by the operator's own user id (``user_id``, as imported:
the identity graph's external id), kept as ``user_ref`` and resolved to the user later, when it
is processed (or once the user is imported). An ``ad_click`` may register the ``ttclid`` click
id that the landing page and the advertiser's events then carry (see ``ingest.identity``).

Like the Events API, a request is accepted or refused whole, and a refusal names the event
index and field. Unlike it, unknown fields are refused: the sender is the operator's own
software, and a misspelt field silently dropped would be lost engagement.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Annotated

import msgspec

from likewise.domain import events as names
from likewise.errors import InvalidParameter, NotFound
from likewise.ingest.events import Window
from likewise.ingest.records import EventRecord
from likewise.ingest.schema import describe

CHANNEL = "engagement"
SOURCE_ID = 0  # engagement has no event source: the platform itself reports it
ORGANIC = 0  # advertiser_id of activity on organic content (no advertiser owns it)
MAX_ADVERTISER_ID = 2**63 - 1  # ids are signed 64-bit integers in storage

Id = Annotated[str, msgspec.Meta(max_length=names.MAX_ENGAGEMENT_ID)]
_CURRENCY = re.compile(r"[A-Z]{3}")
_NUMERIC_ID = re.compile(r"[0-9]{1,19}")
# Fields only some events take; on any other event they are refused rather than ignored.
_ONLY_ON: dict[str, frozenset[str]] = {
    "ttclid": frozenset({names.ENGAGEMENT_CLICK}),
    "watched_seconds": frozenset({"video_play"}),
    "duration_seconds": frozenset({"video_play"}),
    "value": frozenset({"shop_add_to_cart", "shop_initiate_checkout", "shop_purchase"}),
    "currency": frozenset({"shop_add_to_cart", "shop_initiate_checkout", "shop_purchase"}),
}


# gc=False: decoded JSON holds no reference cycles (as ingest.schema's models), and 1,000
# tracked objects per request would trigger collections.
class EngagementEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    event: str
    event_time: int | float
    user_id: Id
    advertiser_id: Id | int | None = None
    event_id: Id | None = None
    ad_id: Id | None = None
    adgroup_id: Id | None = None
    campaign_id: Id | None = None
    ttclid: Id | None = None
    content_id: Id | None = None
    creator_id: Id | None = None
    category: Id | None = None
    account_id: Id | None = None
    live_id: Id | None = None
    form_id: Id | None = None
    product_id: Id | None = None
    watched_seconds: int | float | None = None
    duration_seconds: int | float | None = None
    value: int | float | None = None
    currency: str | None = None


class EngagementBody(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    data: list[EngagementEvent]


_DECODER = msgspec.json.Decoder(EngagementBody)
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)` - at `\$\.?(.*)`$")


def decode(raw: bytes) -> EngagementBody:
    """``raw`` JSON as a body, or a 40002 naming the field and what was wrong with it."""
    try:
        return _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        unknown = _UNKNOWN.match(text)
        if unknown:
            name, at = unknown.groups()
            field = f"{at}.{name}" if at else name
            of = "an engagement event" if at else "this request"
            raise InvalidParameter(f"{field} is not a field of {of}", field=field) from None
        message, field = describe(text)
        raise InvalidParameter(message, field=field) from None
    except msgspec.DecodeError:
        raise InvalidParameter("the request body is not valid JSON") from None


def records(body: EngagementBody, window: Window) -> list[EventRecord]:
    """The records of an ``engagement/track`` request, or an error naming the first bad field.
    Advertisers are not checked here (see :func:`check_advertisers`)."""
    n = len(body.data)
    if n == 0:
        raise InvalidParameter("data must hold at least one event", field="data")
    if n > names.MAX_EVENTS_PER_REQUEST:
        raise InvalidParameter(
            f"data holds {n} events; at most {names.MAX_EVENTS_PER_REQUEST} per request",
            field="data",
        )
    return [_record(ev, f"data[{i}].", window) for i, ev in enumerate(body.data)]


def check_advertisers(records: list[EventRecord], existing: Collection[int]) -> None:
    """Refuse the request if an event names an advertiser that is not in ``existing``."""
    for i, record in enumerate(records):
        if record.advertiser_id != ORGANIC and record.advertiser_id not in existing:
            field = f"data[{i}].advertiser_id"
            raise NotFound(
                f"{field}: advertiser {record.advertiser_id} does not exist", field=field
            )


def _record(ev: EngagementEvent, at: str, window: Window) -> EventRecord:
    event = ev.event
    needs = names.ENGAGEMENT_EVENTS.get(event)
    if needs is None:
        raise _bad(
            at,
            "event",
            f"{event[:40]!r} is not an engagement event; one of "
            + ", ".join(names.ENGAGEMENT_EVENTS),
        )
    user = ev.user_id.strip()  # as the users import keeps it
    if not user:
        raise _bad(at, "user_id", "is required")
    for name, events in _ONLY_ON.items():
        if getattr(ev, name) is not None and event not in events:
            raise _bad(at, name, f"is only taken on {', '.join(sorted(events))} events")
    record = EventRecord(
        source_id=SOURCE_ID,
        advertiser_id=_advertiser(ev.advertiser_id, at),
        channel=CHANNEL,
        event=event,
        event_time=window.check(float(ev.event_time), at, "event_time"),
        received_at=window.now,
        event_id=ev.event_id or None,
        ttclid=ev.ttclid or None,
        ad_id=ev.ad_id or None,
        user_ref=user,
        adgroup_id=ev.adgroup_id or None,
        campaign_id=ev.campaign_id or None,
        content_id=ev.content_id or None,
        creator_id=ev.creator_id or None,
        category=ev.category or None,
        account_id=ev.account_id or None,
        live_id=ev.live_id or None,
        form_id=ev.form_id or None,
        product_id=ev.product_id or None,
    )
    if getattr(record, needs) is None:
        raise _bad(at, needs, f"is required for {event} events")
    if event == "video_play":
        _play(record, ev, at)
    if ev.value is not None:
        if not math.isfinite(ev.value):
            raise _bad(at, "value", "must be a finite number")
        record.value = float(ev.value)
    if ev.currency is not None:
        currency = ev.currency.strip().upper()
        if not _CURRENCY.fullmatch(currency):
            raise _bad(at, "currency", "must be an ISO 4217 code such as USD")
        record.currency = currency
    return record


def _play(record: EventRecord, ev: EngagementEvent, at: str) -> None:
    """Play depth: seconds watched and, when the video's length is known, the share of it."""
    watched = ev.watched_seconds
    if watched is None:
        raise _bad(at, "watched_seconds", "is required for video_play events")
    if not math.isfinite(watched) or watched < 0:
        raise _bad(at, "watched_seconds", "must be a number of seconds, 0 or more")
    record.watched_seconds = float(watched)
    duration = ev.duration_seconds
    if duration is not None:
        if not math.isfinite(duration) or duration <= 0:
            raise _bad(at, "duration_seconds", "must be a number of seconds above 0")
        # Replays can watch more than the length: 100 % is "watched to the end".
        record.watched_percent = min(100.0, 100.0 * watched / duration)


def _advertiser(value: str | int | None, at: str) -> int:
    if value is None:
        return ORGANIC
    text = str(value).strip()
    if not _NUMERIC_ID.fullmatch(text) or not 0 < int(text) <= MAX_ADVERTISER_ID:
        raise _bad(at, "advertiser_id", f"must be an advertiser id, got {text[:40]!r}")
    return int(text)


def _bad(at: str, name: str, problem: str) -> InvalidParameter:
    field = f"{at}{name}"
    return InvalidParameter(f"{field} {problem}", field=field)
