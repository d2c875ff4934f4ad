"""The one internal event: what every intake (Events API 2.0 and 1.0, the pixel, app, offline,
lead and engagement intake) turns its input into, and what the event log and store hold.

Logged as JSON lines with defaults left out (the processor reads a whole segment with Arrow's
JSON reader, off the interpreter lock): every field after the first six needs a default.

Identifiers are hashed before a record is built (e-mail, phone and external ids arrive as
SHA-256; device ids are normalised and hashed on intake). IP addresses and user agents are not
kept: nothing here needs them, and they are personal data. The platform's own user id
(``user_ref``, engagement intake) is kept as sent: it is the operator's pseudonymous key, the one
the identity graph already stores for the user.
"""

from __future__ import annotations

import msgspec


class EventRecord(msgspec.Struct, omit_defaults=True, gc=False):  # no cycles: untracked
    source_id: int
    advertiser_id: int
    channel: str  # web | app | offline | crm | pixel (the browser) | lead | engagement
    event: str
    event_time: float  # Unix seconds, UTC
    received_at: float
    event_id: str | None = None
    test: bool = False  # a test event: counted in stats, never used for audiences
    limited: bool = False  # limited_data_use or att_status DENIED: stored, never used
    email: list[str] = []
    phone: list[str] = []
    external_id: list[str] = []
    ttclid: str | None = None
    ttp: str | None = None
    idfa: str | None = None  # hex digest (SHA-256, or MD5 as sent)
    gaid: str | None = None
    url: str | None = None
    referrer: str | None = None
    value: float | None = None
    currency: str | None = None
    content_type: str | None = None
    content_ids: list[str] = []
    content_categories: list[str] = []
    prices: list[float] = []
    app_id: str | None = None
    ad_id: str | None = None
    lead_id: str | None = None
    properties: str | None = None  # the sender's properties object as JSON text
    # Filled by the platform engagement intake (channel "engagement").
    user_ref: str | None = None  # the platform's own user id (the graph's external user id)
    adgroup_id: str | None = None
    campaign_id: str | None = None
    content_id: str | None = None  # a video or post on the platform
    creator_id: str | None = None
    category: str | None = None
    account_id: str | None = None  # a business account (follow, profile visit)
    live_id: str | None = None
    form_id: str | None = None  # an instant (lead) form
    product_id: str | None = None  # a shop product
    watched_seconds: float | None = None
    watched_percent: float | None = None  # 0-100, when the video's duration was given


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(EventRecord)


def encode_batch(records: list[EventRecord]) -> bytes:
    """One JSON object per line (newline-terminated), as the event log stores them."""
    return _ENCODER.encode_lines(records)


def decode_batch(payload: bytes) -> list[EventRecord]:
    return [_DECODER.decode(line) for line in payload.splitlines() if line]
