"""The one internal event: what every intake (Events API 2.0 and 1.0, the pixel, app, offline,
lead and engagement intake) turns its input into, and what the event log and store hold.

Identifiers are hashed before a record is built (e-mail, phone and external ids arrive as
SHA-256; device ids are normalised and hashed on intake). IP addresses and user agents are not
kept: nothing here needs them, and they are personal data.
"""

from __future__ import annotations

import msgspec


class EventRecord(msgspec.Struct, array_like=True, omit_defaults=False):
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


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[EventRecord])


def encode_batch(records: list[EventRecord]) -> bytes:
    return _ENCODER.encode(records)


def decode_batch(payload: bytes) -> list[EventRecord]:
    return _DECODER.decode(payload)
