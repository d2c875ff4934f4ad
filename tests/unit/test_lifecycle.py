"""Audience lifecycle: expiry, "about to expire" and validity (reference 1.6 and 2.4).

TikTok: with ``retention_in_days`` the audience expires that many days after creation; without it,
12 months after it was last modified or used. "About to expire" is the last 60 days. Expired
audiences are invalid, report size 0 and can only be deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from likewise.domain.audience import (
    EXPIRING_WINDOW,
    EXPIRY_WITHOUT_RETENTION,
    Lifecycle,
    Status,
    validity,
)
from likewise.identity import normalize_email_file, sha256_hex
from likewise.ingest.users import import_users
from tests.conftest import Server, start_server

T0 = datetime(2025, 3, 1, 12, 0, 0)
US = timedelta(microseconds=1)
DAY = timedelta(days=1)

# --- Lifecycle --------------------------------------------------------------------------------


def test_window_constants() -> None:
    assert timedelta(days=365) == EXPIRY_WITHOUT_RETENTION
    assert timedelta(days=60) == EXPIRING_WINDOW


def test_retention_is_fixed_from_creation() -> None:
    life = Lifecycle(T0, T0 + 20 * DAY, T0 + 25 * DAY, retention_in_days=30)
    assert life.expires_at() == T0 + 30 * DAY  # changes and use do not move it
    assert not life.is_expired(T0 + 30 * DAY - US)
    assert life.is_expired(T0 + 30 * DAY)
    assert life.is_expired(T0 + 400 * DAY)


def test_without_retention_twelve_months_of_inactivity() -> None:
    idle = Lifecycle(T0, T0, T0, None)
    assert idle.expires_at() == T0 + 365 * DAY
    assert not idle.is_expired(T0 + 365 * DAY - US)
    assert idle.is_expired(T0 + 365 * DAY)
    modified = Lifecycle(T0, T0 + 100 * DAY, T0, None)
    assert modified.expires_at() == T0 + 465 * DAY
    assert not modified.is_expired(T0 + 400 * DAY)
    used = Lifecycle(T0, T0 + 10 * DAY, T0 + 200 * DAY, None)
    assert used.expires_at() == T0 + 565 * DAY  # the later of modification and use


def test_is_expiring_boundaries() -> None:
    life = Lifecycle(T0, T0, T0, retention_in_days=365)
    expiry = T0 + 365 * DAY
    assert not life.is_expiring(T0)
    assert not life.is_expiring(expiry - 60 * DAY - US)
    assert life.is_expiring(expiry - 60 * DAY)  # exactly 60 days before
    assert life.is_expiring(expiry - 30 * DAY)
    assert life.is_expiring(expiry - US)
    assert not life.is_expiring(expiry)  # expired, no longer "expiring"
    assert life.is_expired(expiry)
    # A short retention is "expiring" from the start.
    assert Lifecycle(T0, T0, T0, retention_in_days=1).is_expiring(T0)


times = st.integers(min_value=0, max_value=800 * 24 * 3600).map(
    lambda s: T0 + s * timedelta(1) / 86400
)


@settings(max_examples=300, deadline=None)
@given(times, times, times, st.one_of(st.none(), st.integers(1, 365)), times)
def test_lifecycle_properties(
    created: datetime,
    modified: datetime,
    used: datetime,
    retention: int | None,
    now: datetime,
) -> None:
    modified, used = max(created, modified), max(created, used)
    life = Lifecycle(created, modified, used, retention)
    expiry = (
        created + retention * DAY
        if retention is not None
        else max(modified, used) + timedelta(days=365)
    )
    assert life.expires_at() == expiry
    assert life.is_expired(now) == (now >= expiry)
    assert life.is_expiring(now) == (expiry - 60 * DAY <= now < expiry)
    assert not (life.is_expired(now) and life.is_expiring(now))
    # Once expired, an audience stays expired.
    if life.is_expired(now):
        assert life.is_expired(now + 1000 * DAY)


# --- validity ---------------------------------------------------------------------------------


def test_validity_messages() -> None:
    assert validity(
        status=Status.READY, reachable=5000, min_size=1000, expired=False, error_msg=""
    ) == (True, 5000, "")
    assert validity(
        status=Status.READY, reachable=1000, min_size=1000, expired=False, error_msg=""
    ) == (True, 1000, "")
    valid, cover, msg = validity(
        status=Status.READY, reachable=999, min_size=1000, expired=False, error_msg=""
    )
    assert (valid, cover) == (False, 0) and "Fewer than 1000" in msg
    valid, cover, msg = validity(
        status=Status.READY, reachable=5000, min_size=1000, expired=True, error_msg=""
    )
    assert (valid, cover) == (False, 0) and "expired" in msg
    valid, cover, msg = validity(
        status=Status.CALCULATING, reachable=5000, min_size=1000, expired=False, error_msg=""
    )
    assert (valid, cover) == (False, 0) and "calculated" in msg
    valid, cover, msg = validity(
        status=Status.FAILED, reachable=5000, min_size=1000, expired=False, error_msg="bad file"
    )
    assert (valid, cover, msg) == (False, 0, "bad file")
    # Expiry wins over every other state.
    valid, cover, msg = validity(
        status=Status.CALCULATING, reachable=0, min_size=1000, expired=True, error_msg=""
    )
    assert "expired" in msg


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(Status)),
    st.integers(0, 10_000),
    st.integers(1, 5_000),
    st.booleans(),
    st.text(max_size=20),
)
def test_small_sizes_are_never_revealed(
    status: Status, reachable: int, min_size: int, expired: bool, error: str
) -> None:
    valid, cover, msg = validity(
        status=status, reachable=reachable, min_size=min_size, expired=expired, error_msg=error
    )
    assert cover == 0 or cover >= min_size
    assert valid == (cover > 0)
    assert valid == (status is Status.READY and not expired and reachable >= min_size)
    assert (msg == "") == valid
    if valid:
        assert cover == reachable


# --- over HTTP, with a clock the test moves --------------------------------------------------


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def timed(tmp_path: Path, clock: Clock) -> Iterator[Server]:
    yield from start_server(tmp_path / "data", clock=clock, min_audience_size=1)


EMAILS = [f"user{i}@example.com" for i in range(5)]


def setup_users(server: Server) -> None:
    import_users(
        server.runtime.graph,
        pa.table({"user_id": [f"u{i}" for i in range(len(EMAILS))], "email": EMAILS}),
    )


def file_audience(server: Server, token: str, adv: str, **extra: Any) -> str:
    upload = server.upload(token, adv, "\n".join(EMAILS).encode())
    created = server.call(
        "POST",
        "/dmp/custom_audience/create/",
        token,
        json={
            "advertiser_id": adv,
            "custom_audience_name": "Buyers",
            "calculate_type": "EMAIL_SHA256",
            "file_paths": [upload["data"]["file_path"]],
            **extra,
        },
    )
    assert created["code"] == 0, created
    server.wait_jobs()
    return created["data"]["custom_audience_id"]  # type: ignore[no-any-return]


def details(server: Server, token: str, adv: str, audience_id: str) -> dict[str, Any]:
    return server.details(token, adv, audience_id)


def state(server: Server, token: str, adv: str, audience_id: str) -> tuple[bool, int, bool]:
    d = details(server, token, adv, audience_id)
    return d["is_valid"], d["cover_num"], d["is_expiring"]


def test_retention_of_one_day_expires(timed: Server, clock: Clock) -> None:
    setup_users(timed)
    adv, token = timed.advertiser()
    aid = file_audience(timed, token, adv, retention_in_days=1)
    got = details(timed, token, adv, aid)
    assert (got["is_valid"], got["cover_num"]) == (True, len(EMAILS))
    assert got["retention_in_days"] == 1
    assert got["create_time"] == "2025-03-01 12:00:00"
    assert got["expired_time"] == "2025-03-02 12:00:00"
    assert got["is_expiring"] is True  # one day left is within the last 60

    clock.advance(2 * DAY)
    got = details(timed, token, adv, aid)
    assert got["is_valid"] is False
    assert got["cover_num"] == 0
    assert got["is_expired"] is True and got["is_expiring"] is False
    assert "expired" in got["msg"]
    # Renaming or changing it does not bring it back to life.
    body = timed.call(
        "POST",
        "/dmp/custom_audience/update/",
        token,
        json={"advertiser_id": adv, "custom_audience_id": aid, "custom_audience_name": "again"},
    )
    assert body["code"] == 40002 and "expired" in body["message"], body
    assert details(timed, token, adv, aid)["is_valid"] is False
    # It still lists, and it can be deleted.
    body = timed.call(
        "POST",
        "/dmp/custom_audience/delete/",
        token,
        json={"advertiser_id": adv, "custom_audience_ids": [aid]},
    )
    assert body["code"] == 0, body


def test_is_expiring_within_sixty_days(timed: Server, clock: Clock) -> None:
    setup_users(timed)
    adv, token = timed.advertiser()
    aid = file_audience(timed, token, adv, retention_in_days=365)
    assert state(timed, token, adv, aid) == (True, len(EMAILS), False)
    clock.advance(304 * DAY)  # 61 days before expiry
    assert state(timed, token, adv, aid) == (True, len(EMAILS), False)
    clock.advance(1 * DAY)  # exactly 60 days before
    assert state(timed, token, adv, aid) == (True, len(EMAILS), True)
    clock.advance(30 * DAY)  # 30 days before
    assert state(timed, token, adv, aid) == (True, len(EMAILS), True)
    # Renaming does not move a fixed retention.
    body = timed.call(
        "POST",
        "/dmp/custom_audience/update/",
        token,
        json={"advertiser_id": adv, "custom_audience_id": aid, "custom_audience_name": "New"},
    )
    assert body["code"] == 0, body
    assert state(timed, token, adv, aid) == (True, len(EMAILS), True)
    clock.advance(30 * DAY)
    assert state(timed, token, adv, aid) == (False, 0, False)


def test_modification_resets_inactivity(timed: Server, clock: Clock) -> None:
    setup_users(timed)
    adv, token = timed.advertiser()
    kept = file_audience(timed, token, adv)
    idle = file_audience(timed, token, adv)
    clock.advance(300 * DAY)
    assert state(timed, token, adv, kept) == (True, len(EMAILS), False)  # 65 days left
    body = timed.call(
        "POST",
        "/dmp/custom_audience/update/",
        token,
        json={"advertiser_id": adv, "custom_audience_id": kept, "custom_audience_name": "Kept"},
    )
    assert body["code"] == 0, body
    clock.advance(100 * DAY)  # 400 days after creation, 100 after the rename
    assert state(timed, token, adv, kept) == (True, len(EMAILS), False)
    assert state(timed, token, adv, idle) == (False, 0, False)
    assert details(timed, token, adv, idle)["is_expired"] is True


def segment_with_members(server: Server, token: str, adv: str) -> str:
    seg = server.call(
        "POST",
        "/segment/audience/",
        token,
        json={"advertiser_id": adv, "custom_audience_name": "S"},
    )["data"]["audience_id"]
    assert mapping(server, token, adv, seg, EMAILS[:3])["code"] == 0
    return seg  # type: ignore[no-any-return]


def mapping(server: Server, token: str, adv: str, seg: str, emails: list[str]) -> dict[str, Any]:
    batch = []
    for e in emails:
        norm = normalize_email_file(e)
        assert norm is not None
        batch.append([{"id": sha256_hex(norm), "audience_ids": [seg]}])
    return server.call(
        "POST",
        "/segment/mapping/",
        token,
        json={"advertiser_ids": [adv], "id_schema": ["EMAIL_SHA256"], "batch_data": batch},
    )


def test_segment_mapping_counts_as_modification(timed: Server, clock: Clock) -> None:
    setup_users(timed)
    adv, token = timed.advertiser()
    seg = segment_with_members(timed, token, adv)
    clock.advance(300 * DAY)
    assert mapping(timed, token, adv, seg, EMAILS[3:4])["code"] == 0
    clock.advance(300 * DAY)  # 600 days after creation, 300 after the last mapping
    assert state(timed, token, adv, seg) == (True, 4, False)


def test_expired_segment_can_only_be_deleted(timed: Server, clock: Clock) -> None:
    setup_users(timed)
    adv, token = timed.advertiser()
    seg = segment_with_members(timed, token, adv)
    clock.advance(366 * DAY)
    assert state(timed, token, adv, seg) == (False, 0, False)
    # A late mapping does not bring it back to life.
    body = mapping(timed, token, adv, seg, EMAILS[3:4])
    assert body["code"] == 40002, body
    assert "expired" in body["message"]
    assert state(timed, token, adv, seg) == (False, 0, False)
    body = timed.call(
        "POST",
        "/segment/audience/",
        token,
        json={"advertiser_id": adv, "action": "delete", "delete_audience_id": seg},
    )
    assert body["code"] == 0, body
