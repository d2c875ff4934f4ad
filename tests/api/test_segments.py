"""The streaming segment API over real HTTP (reference 1.12 and 11, points 7 and 8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from likewise.identity import md5_hex, normalize_email_file, sha256_hex
from likewise.ingest.users import import_users
from likewise.store.models import Audience
from tests.conftest import Server, start_server

# Eight platform users, each with an e-mail, a US phone, an IDFA and a GAID.
N = 8
EMAILS = [f"Person.{i}+news@Example.com" for i in range(N)]
PHONES = [f"(657) 777-00{i:02d}" for i in range(N)]
E164 = [f"+165777700{i:02d}" for i in range(N)]
IDFAS = [f"6D92078A-8246-4BA4-AE5B-76104861E7{i:02d}" for i in range(N)]
GAIDS = [f"38400000-8cf0-11bd-b23e-10b96e40000{i}" for i in range(N)]


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    """A server counting audiences from 1 member, so every size is reported exactly."""
    yield from start_server(tmp_path / "data", min_audience_size=1)


def load_users(server: Server) -> None:
    import_users(
        server.runtime.graph,
        pa.table(
            {
                "user_id": [f"u{i}" for i in range(N)],
                "email": EMAILS,
                "phone": PHONES,
                "idfa": IDFAS,
                "gaid": GAIDS,
                "country": ["US"] * N,
            }
        ),
    )


def email_id(i: int) -> str:
    """What a CDP sends for EMAIL_SHA256: the customer-file normalisation, hashed."""
    norm = normalize_email_file(EMAILS[i])
    assert norm is not None
    return sha256_hex(norm)


def phone_id(i: int) -> str:
    return sha256_hex(E164[i])  # E.164 with the "+", as TikTok requires


def create(server: Server, token: str, adv: str, name: str = "Segment") -> str:
    body = server.call(
        "POST",
        "/segment/audience/",
        token,
        json={"advertiser_id": adv, "action": "create", "custom_audience_name": name},
    )
    assert body["code"] == 0 and body["message"] == "OK", body
    audience_id = body["data"]["audience_id"]
    assert isinstance(audience_id, str) and audience_id.isdigit()
    return audience_id


def mapping(
    server: Server,
    token: str,
    advertiser_ids: list[str],
    id_schema: list[str],
    batch_data: list[list[dict[str, Any]]],
    action: str = "add",
) -> dict[str, Any]:
    return server.call(
        "POST",
        "/segment/mapping/",
        token,
        json={
            "advertiser_ids": advertiser_ids,
            "action": action,
            "id_schema": id_schema,
            "batch_data": batch_data,
        },
    )


def details(server: Server, token: str, adv: str, audience_id: str) -> dict[str, Any]:
    return server.details(token, adv, audience_id)


def cover(server: Server, token: str, adv: str, audience_id: str) -> int:
    return int(details(server, token, adv, audience_id)["cover_num"])


def members(server: Server, audience_id: str) -> set[str]:
    """The platform user ids a segment counts (consent applied), read from the runtime."""
    with server.runtime.db.session() as s:
        row = s.get(Audience, int(audience_id))
        assert row is not None
        bitmap = server.runtime.audiences.reachable(row)
    with server.runtime.graph.connect() as con:
        ext = dict(con.execute("SELECT uid, ext_id FROM users").fetchall())
    return {ext[u] for u in bitmap}


def listed(server: Server, token: str, adv: str) -> dict[str, dict[str, Any]]:
    body = server.call(
        "GET", "/dmp/custom_audience/list/", token, params={"advertiser_id": adv, "page_size": 100}
    )
    assert body["code"] == 0, body
    return {a["audience_id"]: a for a in body["data"]["list"]}


def two_advertisers(server: Server) -> tuple[str, str, str]:
    """Two advertisers of one business centre and one token for both: ``(a, b, token)``."""
    a, _ = server.advertiser("Brand A", business_center_id="bc1")
    b, _ = server.advertiser("Brand B", business_center_id="bc1")
    token = server.admin("POST", "/tokens", json={"advertiser_ids": [int(a), int(b)]})["data"][
        "access_token"
    ]
    return a, b, token


# --- /segment/audience/ -----------------------------------------------------------------------


def test_create_truncates_long_names_and_lists(srv: Server) -> None:
    adv, token = srv.advertiser()
    long_name = "".join(chr(ord("a") + i % 26) for i in range(71))
    exact = "x" * 70
    long_id = create(srv, token, adv, long_name)
    exact_id = create(srv, token, adv, exact)
    assert long_id != exact_id
    audiences = listed(srv, token, adv)
    assert audiences[long_id]["name"] == long_name[:67] + "..."
    assert len(audiences[long_id]["name"]) == 70
    assert audiences[exact_id]["name"] == exact
    got = details(srv, token, adv, long_id)
    assert got["name"] == long_name[:67] + "..."
    assert got["cover_num"] == 0


def test_create_and_delete_need_their_fields(srv: Server) -> None:
    adv, token = srv.advertiser()
    no_name = srv.call("POST", "/segment/audience/", token, json={"advertiser_id": adv})
    assert no_name["code"] == 40002, no_name
    no_id = srv.call(
        "POST", "/segment/audience/", token, json={"advertiser_id": adv, "action": "delete"}
    )
    assert no_id["code"] == 40002, no_id


def test_delete_segment(srv: Server) -> None:
    load_users(srv)
    adv, token = srv.advertiser()
    keep = create(srv, token, adv, "Keep")
    gone = create(srv, token, adv, "Gone")
    assert (
        mapping(
            srv, token, [adv], ["EMAIL_SHA256"], [[{"id": email_id(0), "audience_ids": [gone]}]]
        )["code"]
        == 0
    )
    body = srv.call(
        "POST",
        "/segment/audience/",
        token,
        json={"advertiser_id": adv, "action": "DELETE", "delete_audience_id": gone},
    )
    assert body["code"] == 0 and body["data"]["audience_id"] == gone, body
    audiences = listed(srv, token, adv)
    assert keep in audiences and gone not in audiences
    got = srv.call(
        "GET",
        "/dmp/custom_audience/get/",
        token,
        params={"advertiser_id": adv, "custom_audience_ids": json.dumps([gone])},
    )
    assert got["code"] == 40007, got
    again = srv.call(
        "POST",
        "/segment/audience/",
        token,
        json={"advertiser_id": adv, "action": "delete", "delete_audience_id": gone},
    )
    assert again["code"] == 40007, again
    late = mapping(
        srv, token, [adv], ["EMAIL_SHA256"], [[{"id": email_id(1), "audience_ids": [gone]}]]
    )
    assert late["code"] == 40007, late


# --- /segment/mapping/ ------------------------------------------------------------------------


def test_mapping_membership_every_id_type(srv: Server) -> None:
    load_users(srv)
    a, b, token = two_advertisers(srv)
    seg_a = create(srv, token, a, "A")
    seg_b = create(srv, token, b, "B")
    both = [seg_a, seg_b]
    # Lowercase, in an unusual order; rows use {} for a missing id or simply stop early.
    schema = ["phone_sha256", "idfa_md5", "Email_Sha256", "AAID_SHA256", "IDFA_SHA256", "AAID_MD5"]
    batch = [
        # u0: phone only (E.164 with "+", hashed), in A.
        [{"id": phone_id(0), "audience_ids": [seg_a]}],
        # u1: IDFA MD5 of the upper-case IDFA, in A and B.
        [{}, {"id": md5_hex(IDFAS[1]), "audience_ids": both}],
        # u2: e-mail, in B; the row is shorter than id_schema.
        [{}, {}, {"id": email_id(2), "audience_ids": [seg_b]}],
        # u3: AAID SHA-256 of the lower-case GAID, in A.
        [{}, {}, {}, {"id": sha256_hex(GAIDS[3]), "audience_ids": [seg_a]}],
        # u4: IDFA SHA-256 of the lower-case IDFA (upper-case hex digest is tolerated), in B.
        [{}, {}, {}, {}, {"id": sha256_hex(IDFAS[4].lower()).upper(), "audience_ids": [seg_b]}],
        # u5: AAID MD5 of the upper-case GAID, in A and B; and its e-mail too.
        [
            {},
            {},
            {"id": email_id(5), "audience_ids": [seg_a]},
            {},
            {},
            {"id": md5_hex(GAIDS[5].upper()), "audience_ids": both},
        ],
        # u6: a GAID hashed under IDFA_SHA256 matches nobody (an IDFA is not a GAID).
        [{}, {}, {}, {}, {"id": sha256_hex(GAIDS[6]), "audience_ids": both}],
        # Someone the platform does not know.
        [{}, {}, {"id": sha256_hex("stranger@example.com"), "audience_ids": both}],
        # u7 is never mapped.
    ]
    body = mapping(srv, token, [a, b], schema, batch)
    assert body["code"] == 0 and body["message"] == "OK", body
    assert members(srv, seg_a) == {"u0", "u1", "u3", "u5"}
    assert members(srv, seg_b) == {"u1", "u2", "u4", "u5"}
    assert cover(srv, token, a, seg_a) == 4
    assert cover(srv, token, b, seg_b) == 4
    # The same mapping again changes nothing.
    assert mapping(srv, token, [a, b], schema, batch)["code"] == 0
    assert cover(srv, token, a, seg_a) == 4 and cover(srv, token, b, seg_b) == 4
    # Segments appear in the normal DMP list of their owner only.
    listed_a, listed_b = listed(srv, token, a), listed(srv, token, b)
    assert seg_a in listed_a and seg_b not in listed_a
    assert seg_b in listed_b and seg_a not in listed_b
    assert listed_a[seg_a]["cover_num"] == 4 and listed_a[seg_a]["is_valid"] is True


def test_phone_forms_and_email_forms_match(srv: Server) -> None:
    load_users(srv)
    adv, token = srv.advertiser()
    seg = create(srv, token, adv)
    batch = [
        [{"id": sha256_hex(E164[0][1:]), "audience_ids": [seg]}],  # digits without "+"
        [{}, {"id": sha256_hex(EMAILS[1].lower()), "audience_ids": [seg]}],  # trim+lowercase
        [{}, {"id": sha256_hex("person.2@example.com"), "audience_ids": [seg]}],  # tag dropped
        [{}, {"id": sha256_hex(" person.3@example.com"), "audience_ids": [seg]}],  # not normal
    ]
    assert mapping(srv, token, [adv], ["PHONE_SHA256", "EMAIL_SHA256"], batch)["code"] == 0
    assert members(srv, seg) == {"u0", "u1", "u2"}


def test_deleting_one_identifier_keeps_the_person(srv: Server) -> None:
    load_users(srv)
    adv, token = srv.advertiser()
    seg = create(srv, token, adv)
    schema = ["EMAIL_SHA256", "PHONE_SHA256", "IDFA_SHA256"]
    add = [
        [
            {"id": email_id(0), "audience_ids": [seg]},
            {"id": phone_id(0), "audience_ids": [seg]},
        ],
        [{"id": email_id(1), "audience_ids": [seg]}],
        [{}, {}, {"id": sha256_hex(IDFAS[2].upper()), "audience_ids": [seg]}],
    ]
    assert mapping(srv, token, [adv], schema, add)["code"] == 0
    assert members(srv, seg) == {"u0", "u1", "u2"}
    assert cover(srv, token, adv, seg) == 3

    # Delete u0's e-mail: its phone is still mapped, so u0 stays. u1 had only its e-mail.
    gone = [
        [{"id": email_id(0), "audience_ids": [seg]}],
        [{"id": email_id(1), "audience_ids": [seg]}],
    ]
    assert mapping(srv, token, [adv], schema, gone, action="delete")["code"] == 0
    assert members(srv, seg) == {"u0", "u2"}
    assert cover(srv, token, adv, seg) == 2

    # Deleting an identifier that was never mapped (u2's IDFA in another case) keeps u2.
    other_case = [[{}, {}, {"id": sha256_hex(IDFAS[2].lower()), "audience_ids": [seg]}]]
    assert mapping(srv, token, [adv], schema, other_case, action="delete")["code"] == 0
    assert members(srv, seg) == {"u0", "u2"}

    # Delete u0's phone: nothing of u0 is mapped any more.
    last = [[{}, {"id": phone_id(0), "audience_ids": [seg]}]]
    assert mapping(srv, token, [adv], schema, last, action="DELETE")["code"] == 0
    assert members(srv, seg) == {"u2"}
    assert cover(srv, token, adv, seg) == 1

    # Adding back works after a delete.
    assert mapping(srv, token, [adv], schema, add[:1])["code"] == 0
    assert members(srv, seg) == {"u0", "u2"}


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ("EMAIL_SHA256", "person.0@example.com"),
        ("PHONE_SHA256", "+16577770000"),
        ("IDFA_SHA256", IDFAS[0]),
        ("EMAIL_SHA256", md5_hex("person0@example.com")),  # MD5 where SHA-256 is required
        ("IDFA_MD5", sha256_hex(IDFAS[0])),  # SHA-256 where MD5 is required
        ("AAID_SHA256", sha256_hex("x")[:63] + "g"),
    ],
)
def test_unhashed_ids_are_refused(srv: Server, schema: str, value: str) -> None:
    load_users(srv)
    adv, token = srv.advertiser()
    seg = create(srv, token, adv)
    batch = [
        [{"id": md5_hex(GAIDS[1]), "audience_ids": [seg]}, {}],  # a good row first
        [{}, {"id": value, "audience_ids": [seg]}],
    ]
    body = mapping(srv, token, [adv], ["AAID_MD5", schema], batch)
    assert body["code"] == 40062, body
    assert body["data"] == {}
    assert cover(srv, token, adv, seg) == 0  # nothing of the request was applied


def test_unknown_audience(srv: Server) -> None:
    load_users(srv)
    adv, token = srv.advertiser()
    seg = create(srv, token, adv)
    other, other_token = srv.advertiser("Other")
    foreign = create(srv, other_token, other, "Theirs")
    for bad in ["123", foreign]:
        body = mapping(
            srv,
            token,
            [adv],
            ["EMAIL_SHA256"],
            [[{"id": email_id(0), "audience_ids": [seg, bad]}]],
        )
        assert body["code"] == 40007, body
    assert cover(srv, token, adv, seg) == 0
    assert cover(srv, other_token, other, foreign) == 0
    # Naming an advertiser the token cannot act for is refused.
    body = mapping(
        srv, token, [adv, other], ["EMAIL_SHA256"], [[{"id": email_id(0), "audience_ids": [seg]}]]
    )
    assert body["code"] == 40001, body


def test_malformed_mappings(srv: Server) -> None:
    adv, token = srv.advertiser()
    seg = create(srv, token, adv)
    item = {"id": email_id(0), "audience_ids": [seg]}
    cases = [
        (["EMAIL_SHA256"], [[item, item]]),  # longer than id_schema
        (["EMAIL_SHA256", "EMAIL_SHA256"], [[item]]),  # repeated type
        (["EMAIL_MD5"], [[item]]),  # unknown type
        (["EMAIL_SHA256"], [[{"id": email_id(0), "audience_ids": []}]]),
        (["EMAIL_SHA256"], [[{"id": "", "audience_ids": [seg]}]]),
        (["EMAIL_SHA256"], [[{"id": email_id(0), "audience_ids": ["abc"]}]]),
    ]
    for schema, batch in cases:
        body = mapping(srv, token, [adv], schema, batch)
        assert body["code"] == 40002, (schema, batch, body)


def test_file_audience_is_not_a_segment(srv: Server) -> None:
    load_users(srv)
    adv, token = srv.advertiser()
    content = "\n".join(EMAILS).encode()
    path = srv.upload(token, adv, content)["data"]["file_path"]
    created = srv.call(
        "POST",
        "/dmp/custom_audience/create/",
        token,
        json={
            "advertiser_id": adv,
            "custom_audience_name": "File",
            "calculate_type": "EMAIL_SHA256",
            "file_paths": [path],
        },
    )
    file_audience = created["data"]["custom_audience_id"]
    srv.wait_jobs()
    body = mapping(
        srv,
        token,
        [adv],
        ["EMAIL_SHA256"],
        [[{"id": email_id(0), "audience_ids": [file_audience]}]],
    )
    assert body["code"] == 40002, body
    assert cover(srv, token, adv, file_audience) == N
