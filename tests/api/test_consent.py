"""Consent and erasure through the admin API (DESIGN invariants: consent is honoured, small
audiences are not revealed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from likewise.identity import normalize_email_file, sha256_hex
from likewise.store.models import Audience
from tests.conftest import ADMIN_TOKEN, Server, start_server

N = 10
EMAILS = [f"Person.{i}+news@Example.com" for i in range(N)]
PHONES = [f"+1 657 777 00{i:02d}" for i in range(N)]


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    """Every size is reported exactly (minimum audience size 1)."""
    yield from start_server(tmp_path / "data", min_audience_size=1)


def users_csv(ids: list[int], *, opted_out: tuple[int, ...] = ()) -> bytes:
    lines = ["user_id,email,phone,country,personalized_ads"]
    for i in ids:
        consent = "false" if i in opted_out else "true"
        lines.append(f"u{i},{EMAILS[i]},{PHONES[i]},US,{consent}")
    return ("\n".join(lines) + "\n").encode()


def import_csv(server: Server, content: bytes) -> dict[str, Any]:
    body = server.admin("POST", "/users/import", files={"file": ("users.csv", content)})
    assert body["code"] == 0, body
    return body["data"]  # type: ignore[no-any-return]


def consent(server: Server, user_ids: list[str], personalized_ads: bool) -> dict[str, Any]:
    body = server.admin(
        "POST",
        "/users/consent",
        json={"user_ids": user_ids, "personalized_ads": personalized_ads},
    )
    assert body["code"] == 0, body
    return body["data"]  # type: ignore[no-any-return]


def erase(server: Server, user_ids: list[str]) -> dict[str, Any]:
    body = server.admin("POST", "/users/erase", json={"user_ids": user_ids})
    assert body["code"] == 0, body
    return body["data"]  # type: ignore[no-any-return]


def file_audience(server: Server, token: str, adv: str, emails: list[str], name: str) -> str:
    upload = server.upload(token, adv, ("\n".join(emails) + "\n").encode())
    assert upload["code"] == 0, upload
    created = server.call(
        "POST",
        "/dmp/custom_audience/create/",
        token,
        json={
            "advertiser_id": adv,
            "custom_audience_name": name,
            "calculate_type": "EMAIL_SHA256",
            "file_paths": [upload["data"]["file_path"]],
        },
    )
    assert created["code"] == 0, created
    server.wait_jobs()
    return created["data"]["custom_audience_id"]  # type: ignore[no-any-return]


def segment(server: Server, token: str, adv: str, user_numbers: list[int]) -> str:
    created = server.call(
        "POST",
        "/segment/audience/",
        token,
        json={"advertiser_id": adv, "custom_audience_name": "Streamed"},
    )
    seg = created["data"]["audience_id"]
    batch = []
    for i in user_numbers:
        norm = normalize_email_file(EMAILS[i])
        assert norm is not None
        batch.append([{"id": sha256_hex(norm), "audience_ids": [seg]}])
    body = server.call(
        "POST",
        "/segment/mapping/",
        token,
        json={"advertiser_ids": [adv], "id_schema": ["EMAIL_SHA256"], "batch_data": batch},
    )
    assert body["code"] == 0, body
    return seg  # type: ignore[no-any-return]


def details(server: Server, token: str, adv: str, audience_id: str) -> dict[str, Any]:
    return server.audience(token, adv, audience_id)


def cover(server: Server, token: str, adv: str, audience_id: str) -> int:
    return int(details(server, token, adv, audience_id)["audience_details"]["cover_num"])


def matched_uids(server: Server, audience_id: str) -> set[int]:
    """Every matched user of the current version, consent not applied."""
    with server.runtime.db.session() as s:
        row = s.get(Audience, int(audience_id))
        assert row is not None
        return set(server.runtime.audiences.members(row.id, row.version))


def uid_of(server: Server, ext_id: str) -> int:
    with server.runtime.graph.connect() as con:
        row = con.execute(
            "SELECT uid FROM users WHERE ext_id = ? AND NOT erased", [ext_id]
        ).fetchone()
    assert row is not None
    return int(row[0])


class NoRecompute:
    """Asserts that no audience job ran and no membership version was written meanwhile."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def _state(self) -> tuple[int, ...]:
        with self.server.runtime.db.session() as s:
            return tuple(a.version for a in s.query(Audience).order_by(Audience.id))

    def __enter__(self) -> NoRecompute:
        self.before = self._state()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._state() == self.before


def test_consent_changes_cover_at_once(srv: Server) -> None:
    import_csv(srv, users_csv(list(range(N))))
    adv, token = srv.advertiser()
    fa = file_audience(srv, token, adv, EMAILS, "Everyone")
    seg = segment(srv, token, adv, [0, 1, 2, 3, 4])
    assert cover(srv, token, adv, fa) == N and cover(srv, token, adv, seg) == 5

    with NoRecompute(srv):
        out = consent(srv, ["u0", "u5", "nobody"], False)
        assert out == {"updated": 2, "not_found": ["nobody"]}
        assert cover(srv, token, adv, fa) == N - 2
        assert cover(srv, token, adv, seg) == 4
        assert srv.runtime.graph.counts()["users_reachable"] == N - 2

        assert consent(srv, ["u0"], True)["updated"] == 1
        assert cover(srv, token, adv, fa) == N - 1
        assert cover(srv, token, adv, seg) == 5
        # Opting out twice is harmless.
        consent(srv, ["u5"], False)
        assert cover(srv, token, adv, fa) == N - 1


def test_opted_out_at_import_are_never_counted(srv: Server) -> None:
    import_csv(srv, users_csv(list(range(N)), opted_out=(2, 3)))
    adv, token = srv.advertiser()
    fa = file_audience(srv, token, adv, EMAILS, "Everyone")
    assert len(matched_uids(srv, fa)) == N  # matched, but not counted
    assert cover(srv, token, adv, fa) == N - 2
    # A later import with consent given counts them at once.
    import_csv(srv, users_csv([2, 3]))
    assert cover(srv, token, adv, fa) == N


def test_erasure_removes_everywhere_and_forgets_identifiers(srv: Server) -> None:
    import_csv(srv, users_csv(list(range(N))))
    adv, token = srv.advertiser()
    fa = file_audience(srv, token, adv, EMAILS, "Everyone")
    seg = segment(srv, token, adv, [1, 2, 3])
    old_uid = uid_of(srv, "u1")
    before = srv.runtime.graph.counts()

    with NoRecompute(srv):
        out = erase(srv, ["u1", "ghost"])
        assert out == {"erased": 1, "not_found": ["ghost"]}
        assert cover(srv, token, adv, fa) == N - 1
        assert cover(srv, token, adv, seg) == 2

    after = srv.runtime.graph.counts()
    assert after["users"] == before["users"] - 1
    assert after["users_reachable"] == before["users_reachable"] - 1
    # The platform kept 3 e-mail forms (as given, without the tag, without tag and dots) and 2
    # phone forms (with and without "+"); all are gone.
    assert after["keys_email"] == before["keys_email"] - 3
    assert after["keys_phone"] == before["keys_phone"] - 2

    # Their identifiers match nobody now: a new file with their e-mail is empty.
    again = file_audience(srv, token, adv, [EMAILS[1]], "Only u1")
    assert matched_uids(srv, again) == set()
    got = details(srv, token, adv, again)
    assert got["audience_details"]["cover_num"] == 0
    assert "0 matched" in got["audience_history"][0]["msg"]

    # Consent cannot bring an erased user back.
    assert consent(srv, ["u1"], True) == {"updated": 0, "not_found": ["u1"]}
    assert cover(srv, token, adv, fa) == N - 1
    assert erase(srv, ["u1"]) == {"erased": 0, "not_found": ["u1"]}

    # Importing the same user_id again creates a new person, not in the old audiences.
    summary = import_csv(srv, users_csv([1]))
    assert summary["new_users"] == 1
    new_uid = uid_of(srv, "u1")
    assert new_uid != old_uid
    assert cover(srv, token, adv, fa) == N - 1
    assert new_uid not in matched_uids(srv, fa)
    assert srv.runtime.graph.counts()["keys_email"] == before["keys_email"]
    fresh = file_audience(srv, token, adv, [EMAILS[1]], "u1 again")
    assert matched_uids(srv, fresh) == {new_uid}
    assert cover(srv, token, adv, fresh) == 1


def test_admin_api_needs_the_token(srv: Server) -> None:
    for headers, code in (({}, 40104), ({"X-Admin-Token": ADMIN_TOKEN + "x"}, 40105)):
        r = httpx.post(
            srv.url + "/admin/v1/users/erase", json={"user_ids": ["u0"]}, headers=headers
        )
        assert r.json()["code"] == code, r.text


def test_small_audiences_are_not_revealed(server: Server) -> None:
    """The shared fixture's minimum is 10 reachable users."""
    minimum = server.runtime.settings.min_audience_size
    assert minimum == 10 == N
    import_csv(server, users_csv(list(range(N)), opted_out=(9,)))
    adv, token = server.advertiser()
    fa = file_audience(server, token, adv, EMAILS, "Almost")

    got = details(server, token, adv, fa)["audience_details"]
    assert got["is_valid"] is False
    assert got["cover_num"] == 0
    assert str(minimum) in got["msg"] and "Fewer than" in got["msg"]

    consent(server, ["u9"], True)
    got = details(server, token, adv, fa)["audience_details"]
    assert (got["is_valid"], got["cover_num"], got["msg"]) == (True, N, "")

    erase(server, ["u4"])
    got = details(server, token, adv, fa)["audience_details"]
    assert (got["is_valid"], got["cover_num"]) == (False, 0)
    assert "Fewer than" in got["msg"]
