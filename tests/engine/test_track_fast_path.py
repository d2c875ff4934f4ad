"""The compiled ``event/track/`` fast path (``ingest/_track.pyx``) against the reference.

Whenever the fast path writes lines, the reference (``track_records`` then ``encode_batch``)
must accept the same body and give equal records; when it declines (None), the reference takes
the request. Bodies are generated around every rule the reference applies, valid and not, in
the spellings clients use (spaces or not, escapes, duplicate keys, unknown fields).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from likewise.domain import events as names
from likewise.errors import LikewiseError
from likewise.ingest import events as intake
from likewise.ingest import schema
from likewise.ingest.records import EventRecord, encode_batch

NOW = 1_790_000_000.25
WINDOW = intake.Window(now=NOW, max_age_days=180)
SOURCE = intake.Source(id=12, advertiser_id=34)
_RECORD = msgspec.json.Decoder(EventRecord)

SHA = "a3f1" * 16
SHA_UPPER = SHA.upper()
MD5 = "9e107d9d372bb6826bd81d3542a419d6"


def kernel(raw: bytes, body: schema.TrackBody) -> bytes | None:
    """The fast path alone (``track_lines`` falls back to the reference when it declines)."""
    return intake.fast_track_lines(raw, body, SOURCE, WINDOW)


def records(lines: bytes) -> list[EventRecord]:
    """Decoded lines, ``properties`` parsed (the fast path keeps the sender's spelling)."""
    out = []
    for line in lines.splitlines():
        record = _RECORD.decode(line)
        if record.properties is not None:
            record.properties = json.loads(record.properties)
        out.append(record)
    return out


def check(raw: bytes) -> bool:
    """Asserts the fast path agrees with the reference on ``raw``, and the route's pipeline
    (``decode_track``, properties left undecoded, then ``track_lines``) with both; True if the
    fast path decided."""
    try:
        body = schema.decode(schema.TrackBody, raw)
    except LikewiseError as exc:
        # Refused before either path runs: the route refuses it alike.
        assert pipeline(raw) == exc.message, raw[:300]
        return False
    try:
        expected: list[EventRecord] | LikewiseError = records(
            encode_batch(intake.track_records(body, SOURCE, WINDOW))
        )
    except LikewiseError as exc:
        expected = exc
    routed = pipeline(raw)
    if isinstance(expected, LikewiseError):
        assert routed == expected.message, raw[:300]
    else:
        assert routed == expected, raw[:300]
    fast = kernel(raw, body)
    if fast is None:
        return False
    assert not isinstance(expected, LikewiseError), (raw[:300], expected.message)
    assert records(fast) == expected
    assert fast.endswith(b"\n") and fast.count(b"\n") == len(expected)
    return True


def pipeline(raw: bytes) -> list[EventRecord] | str:
    """What the route does with ``raw``: the records, or the refusal's message."""
    try:
        return records(intake.track_lines(raw, schema.decode_track(raw), SOURCE, WINDOW))
    except LikewiseError as exc:
        return exc.message


# --- generated bodies -------------------------------------------------------------------------

hexes = st.sampled_from([SHA, SHA_UPPER, MD5, "", "someone@example.com", "a3f1" * 15, "zz" * 32])
texts = st.sampled_from(
    ["", "x", "https://shop.example/p/1?a=b&c=d", "Café ☕", 'quote " and \\ back', "é" * 3, "\t"]
)
numbers = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([19.9, 0.1, 1e22, 1e-7, 12345678901234567890, 2**70]),
    st.sampled_from(["12.50", "", " 3 ", "1,000", "abc"]),
    st.booleans(),
    st.none(),
)
event_names = st.sampled_from(
    [
        "Purchase",
        "ViewContent",
        "CompletePayment",
        " Purchase",
        "Purchase ",
        "",
        "   ",
        "MyCustomEvent",
        "Café",
        "x" * 100,
        "x" * 101,
        "é" * 100,
        "é" * 101,
        "Add\\nCart",
    ]
)
event_times = st.one_of(
    st.sampled_from(
        [
            int(NOW),
            int(NOW) - 3600,
            int(NOW * 1000),
            NOW - 10.5,
            NOW + 86400,
            NOW + 86401,
            NOW - 180 * 86400,
            NOW - 180 * 86400 - 1,
            0,
            -1,
            1e300,
            int(NOW - 180 * 86400),
            int(NOW + 86400),
        ]
    ),
    st.integers(int(NOW) - 200 * 86400, int(NOW) + 2 * 86400),
)


def keyed(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        values,
        st.lists(values, max_size=12),
        st.lists(st.sampled_from([SHA, ""]), min_size=9, max_size=12),
    )


users = st.fixed_dictionaries(
    {},
    optional={
        "email": keyed(hexes),
        "phone": keyed(hexes),
        "external_id": keyed(hexes),
        "ttp": st.one_of(st.none(), texts),
        "ttclid": st.one_of(st.none(), texts),
        "ip": st.sampled_from(["1.2.3.4", None]),
        "user_agent": st.sampled_from(["Mozilla/5.0", None]),
        "idfa": st.one_of(
            st.none(),
            hexes,
            st.sampled_from(["6D92078A-8246-4BA4-AE5B-76104861E7DC", "  ", "nope"]),
        ),
        "gaid": st.one_of(st.none(), hexes),
        "att_status": st.sampled_from(["DENIED", "AUTHORIZED", "NOT_DETERMINED", None]),
        "extra": st.sampled_from([1, {"a": [1, 2]}, "x"]),
    },
)
contents = st.fixed_dictionaries(
    {},
    optional={
        "content_id": st.one_of(st.sampled_from(["sku-1", "", 42, -3, 1.5, None]), texts),
        "content_category": st.one_of(st.none(), texts),
        "content_name": st.one_of(st.none(), texts, st.just(5)),
        "brand": st.sampled_from(["b", None]),
        "price": numbers,
        "quantity": numbers,
        "colour": st.sampled_from(["red", 1, [1]]),
    },
)
nested = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        texts,
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "é", "k"]), inner, max_size=3),
    ),
    max_leaves=8,
)
properties = st.fixed_dictionaries(
    {},
    optional={
        "value": numbers,
        "currency": st.sampled_from(["USD", "usd", "Eur", " USD", "US", "USDX", "€€€", 5, None]),
        "content_type": st.one_of(st.sampled_from(["product", "", 3, None]), texts),
        "content_id": st.sampled_from(["sku-9", 7, -7, 2.5, True, None, ""]),
        "content_ids": st.one_of(
            st.none(),
            st.lists(st.sampled_from(["a", "b", 1, 22, -1, 1.5, None]), max_size=4),
            st.just(["x"] * 101),
        ),
        "content_category": st.one_of(st.none(), texts, st.just(1)),
        "contents": st.one_of(
            st.none(),
            st.lists(contents, max_size=3),
            st.just([{"content_id": "a"}] * 101),
            st.just(["not an object"]),
        ),
        "price": numbers,
        "description": nested,
        "big": st.sampled_from(["", "y" * 9000]),
    },
)
events = st.fixed_dictionaries(
    {"event": event_names, "event_time": event_times},
    optional={
        "event_id": st.sampled_from([None, "", "e-1", "e" * 256, "e" * 257, "é" * 256, "a\\tb"]),
        "user": st.one_of(st.none(), users),
        "page": st.one_of(
            st.none(), st.fixed_dictionaries({}, optional={"url": texts, "referrer": texts})
        ),
        "app": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"app_id": texts})),
        "ad": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"ad_id": texts})),
        "lead": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"lead_id": texts})),
        "properties": st.one_of(st.none(), properties),
        "limited_data_use": st.sampled_from([True, False, None]),
        "context": st.just({"ignored": True}),
    },
)
bodies = st.fixed_dictionaries(
    {
        "event_source": st.sampled_from(["web", "app", "offline", "crm"]),
        "event_source_id": st.just("P123"),
        "data": st.lists(events, max_size=4),
    },
    optional={"test_event_code": st.sampled_from(["", "TEST1", None]), "partner_name": texts},
)


# What the fast path decides itself: every request of these must take it.
good_texts = st.sampled_from(
    ["x", "https://shop.example/p/1?a=b&c=d", "Café ☕", 'quote " and \\ back', "tab\there"]
)
good_keys = st.one_of(
    st.none(),
    st.sampled_from([SHA, SHA_UPPER, ""]),
    st.lists(st.sampled_from([SHA, ""]), max_size=10),
)
good_numbers = st.one_of(
    st.integers(0, 10**9),
    st.floats(0, 1e6).map(lambda x: round(x, 2)),
    st.sampled_from([19.9, 0.1]),
)
good_contents = st.fixed_dictionaries(
    {},
    optional={
        "content_id": st.sampled_from(["sku-1", "", 42, None]),
        "content_category": st.one_of(st.none(), good_texts, st.just("")),
        "content_name": st.one_of(st.none(), good_texts),
        "brand": st.sampled_from(["b", None]),
        "price": st.one_of(st.none(), good_numbers),
        "quantity": st.one_of(st.none(), st.integers(0, 99), st.just(1.5)),
        "colour": st.sampled_from(["red", 1, [1, "x"], {"a": None}]),
    },
)
good_nested = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), good_texts),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "x y", "k"]), inner, max_size=3),
    ),
    max_leaves=8,
)
good_properties = st.fixed_dictionaries(
    {},
    optional={
        "value": st.one_of(st.none(), good_numbers),
        "currency": st.sampled_from(["USD", "usd", "Eur", None]),
        "content_type": st.one_of(st.none(), good_texts, st.just("")),
        "content_id": st.sampled_from(["sku-9", 7, None, ""]),
        "content_ids": st.one_of(
            st.none(), st.lists(st.sampled_from(["a", "", 1, 22]), max_size=4)
        ),
        "content_category": st.one_of(st.none(), good_texts, st.just("")),
        "contents": st.one_of(st.none(), st.lists(good_contents, max_size=3)),
        "price": st.one_of(st.none(), good_numbers),
        "description": good_nested,
    },
)
good_events = st.fixed_dictionaries(
    {
        "event": st.sampled_from(["Purchase", "ViewContent", "CompletePayment", "AddToCart"]),
        "event_time": st.one_of(
            st.integers(int(NOW) - 180 * 86400 + 1, int(NOW) + 86400),
            st.integers(int(NOW) - 180 * 86400 + 1, int(NOW) + 86400).map(lambda t: t * 1000),
        ),
        "page": st.fixed_dictionaries(
            {"url": good_texts}, optional={"referrer": st.one_of(st.none(), good_texts)}
        ),
        "app": st.fixed_dictionaries({"app_id": good_texts}),
        "lead": st.fixed_dictionaries({"lead_id": good_texts}),
    },
    optional={
        "event_id": st.sampled_from([None, "", "e-1", "e" * 256]),
        "user": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "email": good_keys,
                    "phone": good_keys,
                    "external_id": good_keys,
                    "ttp": st.one_of(st.none(), good_texts, st.just("")),
                    "ttclid": st.one_of(st.none(), good_texts, st.just("")),
                    "ip": st.sampled_from(["1.2.3.4", None]),
                    "idfa": st.sampled_from([None, "", SHA, MD5, MD5.upper()]),
                    "gaid": st.sampled_from([None, "", SHA_UPPER, MD5]),
                    "att_status": st.sampled_from(["DENIED", "AUTHORIZED", None]),
                    "locale": st.just("en-GB"),
                },
            ),
        ),
        "ad": st.fixed_dictionaries({}, optional={"ad_id": st.one_of(st.none(), good_texts)}),
        "properties": st.one_of(st.none(), good_properties),
        "limited_data_use": st.sampled_from([True, False, None]),
        "context": st.just({"ignored": [1, 2]}),
    },
)
good_bodies = st.fixed_dictionaries(
    {
        "event_source": st.sampled_from(["web", "app", "crm"]),
        "event_source_id": st.just("P123"),
        "data": st.lists(good_events, min_size=1, max_size=4),
    },
    optional={"test_event_code": st.sampled_from(["", "TEST1", None]), "partner_name": good_texts},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=good_bodies, ascii_only=st.booleans(), spaced=st.booleans())
def test_usual_bodies_take_the_fast_path_and_agree(
    body: dict[str, Any], ascii_only: bool, spaced: bool
) -> None:
    assert check(spell(body, ascii_only=ascii_only, spaced=spaced))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(st.one_of(good_events, good_events, events), min_size=1, max_size=3),
    kind=st.sampled_from(["web", "app", "offline", "crm"]),
)
def test_mixed_bodies_agree(data: list[dict[str, Any]], kind: str) -> None:
    """Usual events beside generated ones (valid or not): one event the fast path cannot decide
    hands the whole request back."""
    check(
        spell(
            {"event_source": kind, "event_source_id": "P", "data": data},
            ascii_only=True,
            spaced=False,
        )
    )


def spell(body: dict[str, Any], *, ascii_only: bool, spaced: bool) -> bytes:
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(body, ensure_ascii=ascii_only, separators=separators).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, ascii_only=st.booleans(), spaced=st.booleans())
def test_fast_path_agrees_with_the_reference(
    body: dict[str, Any], ascii_only: bool, spaced: bool
) -> None:
    check(spell(body, ascii_only=ascii_only, spaced=spaced))


@given(
    body=bodies,
    at=st.integers(0, 10_000),
    insert=st.sampled_from(
        [
            b' "event": "Dup",',
            b' "value": 1,',
            b' "a": 1, "a": 2,',
            b' "user": null,',
            b' "email": "' + SHA.encode() + b'",',
            b' "data": [],',
            b"\\u0065vent",
            b" \\ud83d\\ude00 ",
        ]
    ),
)
@settings(max_examples=300, deadline=None)
def test_spliced_bodies_agree(body: dict[str, Any], at: int, insert: bytes) -> None:
    """Text spliced after an opening brace: duplicate keys (msgspec keeps the last), escaped
    keys and surrogate pairs, wherever they land."""
    raw = spell(body, ascii_only=True, spaced=False)
    braces = [i for i, c in enumerate(raw) if c == ord("{")]
    cut = braces[at % len(braces)] + 1
    spliced = (
        raw[:cut] + insert.strip(b",") + (b"," if raw[cut : cut + 1] != b"}" else b"") + raw[cut:]
    )
    check(spliced)


REALISTIC = {
    "event_source": "web",
    "event_source_id": "P123",
    "data": [
        {
            "event": "CompletePayment",
            "event_time": int(NOW) - 60,
            "event_id": "order-1",
            "user": {
                "email": SHA_UPPER,
                "phone": [SHA, ""],
                "external_id": [SHA],
                "ttp": "2Qj.abc",
                "ttclid": "E.C.P.123",
                "ip": "203.0.113.9",
                "user_agent": "Mozilla/5.0",
            },
            "page": {"url": "https://shop.example/checkout", "referrer": "https://t.co/"},
            "properties": {
                "contents": [
                    {
                        "content_id": "sku-1",
                        "content_category": "shoes",
                        "price": 19.9,
                        "quantity": 2,
                    },
                    {"content_id": 77, "price": 5, "content_name": "Socks"},
                ],
                "content_ids": ["sku-0", 3],
                "content_id": "sku-x",
                "content_category": "apparel",
                "content_type": "product",
                "value": 44.8,
                "currency": "eur",
                "price": 1.5,
                "note": {"gift": True, "wrap": None, "tags": ["a", "b"]},
            },
        },
        {
            "event": "ViewContent",
            "event_time": int(NOW) * 1000 - 5000,  # milliseconds
            "user": {"email": [SHA, SHA_UPPER], "att_status": "DENIED", "gaid": MD5},
            "page": {"url": "https://shop.example/p/1"},
            "limited_data_use": False,
        },
    ],
}


@pytest.mark.parametrize("spaced", [False, True])
@pytest.mark.parametrize("kind", ["web", "app", "crm"])
def test_realistic_bodies_take_the_fast_path(kind: str, spaced: bool) -> None:
    """The usual requests are decided by the fast path (not handed back), in both the compact
    and the spaced spelling (Python's json.dumps, the official SDK)."""
    body = json.loads(json.dumps(REALISTIC))
    body["event_source"] = kind
    for event in body["data"]:
        event["app"] = {"app_id": "com.example.shop"}
        event["lead"] = {"lead_id": "lead-1"}
    assert check(spell(body, ascii_only=True, spaced=spaced))
    assert check(spell({**body, "test_event_code": "T1"}, ascii_only=False, spaced=spaced))


@pytest.mark.parametrize("event", [*sorted(names.STANDARD_EVENTS)[:5], "Purchase", "MyEvent"])
def test_offline_sources_take_standard_events_only(event: str) -> None:
    raw = spell(
        {
            "event_source": "offline",
            "event_source_id": "S",
            "data": [{"event": event, "event_time": int(NOW), "user": {"email": SHA}}],
        },
        ascii_only=True,
        spaced=False,
    )
    assert check(raw) == (event in names.STANDARD_EVENTS)


def test_declines_what_it_cannot_decide_exactly() -> None:
    """Each of these goes to the reference (which accepts or refuses it)."""
    base = {"event": "Purchase", "event_time": int(NOW), "page": {"url": "https://a.example/"}}
    declined = [
        {**base, "event": " Purchase"},  # stripped by the reference
        {**base, "event_time": NOW - 0.5},  # a fraction of a second
        {**base, "user": {"email": "someone@example.com"}},  # raw PII: refused
        {**base, "user": {"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"}},  # raw device id
        {**base, "properties": {"value": "12.50"}},  # a decimal string
        {**base, "properties": {"value": 1e22}},  # an exponent (1e+22)
        {**base, "properties": {"currency": " usd"}},
        {**base, "page": {}},  # web events need page.url: refused
        {**base, "user": {"email": [SHA] * 11}},  # more than 10 ids: refused
        {**base, "user": {"phone": [SHA] * 10 + [""]}},  # 11 values, even with an empty one
        {**base, "properties": {"content_ids": ["a"] * 101}},  # more than 100: refused
        {**base, "properties": {"contents": [{"price": 1}] * 101}},
        {**base, "event_id": "e" * 257},
        {**base, "event": "E" * 101},
    ]
    for event in declined:
        raw = spell(
            {"event_source": "web", "event_source_id": "P", "data": [event]},
            ascii_only=True,
            spaced=False,
        )
        body = schema.decode(schema.TrackBody, raw)
        assert kernel(raw, body) is None, event
        check(raw)
    duplicate = (
        b'{"event_source":"web","event_source_id":"P","data":[{"event":"A","event":"B",'
        b'"event_time":%d,"page":{"url":"u"}}]}' % int(NOW)
    )
    assert kernel(duplicate, schema.decode(schema.TrackBody, duplicate)) is None


def test_properties_keep_the_sent_object_without_whitespace() -> None:
    raw = (
        b'{"event_source":"web","event_source_id":"P","data":[{"event":"A","event_time":%d,'
        b'"page":{"url":"u"},"properties":{ "value" : 19.90 , "t" : "a \\" b\\u00e9" ,'
        b' "n":[ 1, {"x":null} ] }}]}' % int(NOW)
    )
    lines = kernel(raw, schema.decode(schema.TrackBody, raw))
    assert lines is not None
    assert kernel(raw, schema.decode_track(raw)) == lines  # properties left undecoded
    record = _RECORD.decode(lines)
    assert record.properties == '{"value":19.90,"t":"a \\" b\\u00e9","n":[1,{"x":null}]}'
    assert record.value == 19.9
    assert check(raw)


@pytest.mark.parametrize(
    ("properties", "refused"),
    [
        (b"5", True),  # not an object
        (b'"x"', True),
        (b"[1]", True),
        (b"null", False),
        (b'{"a":[1,}', True),  # not JSON
        (b'{"a":tru}', True),
        (b'{"name":"\xff\xfe"}', True),  # not UTF-8
        (b'{"name":"Caf\xc3\xa9 \xe2\x98\x95"}', False),  # UTF-8
        (b'{"value":"12.50","n":{"d":[{"e":null}]}}', False),  # the reference decides
    ],
)
def test_undecoded_properties_are_still_checked(properties: bytes, refused: bool) -> None:
    """The route leaves ``properties`` undecoded for the fast path: a body the full decoding
    refuses (properties not an object, not JSON, not UTF-8) is still refused, with the same
    message, and one it takes gives the same records."""
    raw = (
        b'{"event_source":"web","event_source_id":"P","data":[{"event":"Purchase",'
        b'"event_time":%d,"page":{"url":"u"},"properties":%s}]}' % (int(NOW), properties)
    )
    check(raw)
    assert isinstance(pipeline(raw), str) == refused


def test_bytes_that_are_not_utf8_outside_the_schema_are_ignored_alike() -> None:
    """Unknown fields are skipped, not decoded, by both decodings: bytes that are not UTF-8
    there do not refuse a body (as before properties were left undecoded)."""
    raw = (
        b'{"event_source":"web","event_source_id":"P","partner_x":"\xff","data":[{'
        b'"event":"Purchase","event_time":%d,"page":{"url":"u"},"properties":{"value":1}}]}'
        % int(NOW)
    )
    assert check(raw)
    assert isinstance(schema.decode_track(raw), schema.TrackBody)
    assert not isinstance(pipeline(raw), str)
