"""Automatic refresh of lookalikes (issue 5): twice a week while applied to an active ad
group, never otherwise, and never once the seed is deleted. The server's clock is injected and
moved forward; the refresh round (what the background thread runs) is called directly."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from likewise.domain.locations import location_of_country
from likewise.sim import generate_users, ground_truth_identifiers
from tests.conftest import Server, start_server

serve = contextmanager(start_server)
US = location_of_country("US").location_id  # type: ignore[union-attr]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, 0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Server, Clock, str, str, str]]:
    """A server on a clock the test moves, a platform, an advertiser and a seed:
    ``(server, clock, advertiser_id, token, seed_id)``."""
    clock = Clock()
    with serve(tmp_path / "data", clock=clock, min_audience_size=20) as server:
        users = generate_users(3000, seed=5)
        server.import_users(users)
        advertiser_id, token = server.advertiser("Refresh")
        emails = ground_truth_identifiers(users).column("email_basic").to_pylist()
        content = "\n".join(hashlib.sha256(e.encode()).hexdigest() for e in emails[:400] if e)
        seed = server.file_audience(token, advertiser_id, content.encode(), "seed")
        yield server, clock, advertiser_id, token, seed


def _lookalike(server: Server, token: str, advertiser_id: str, seed: str) -> str:
    made = server.call(
        "POST",
        "/dmp/custom_audience/lookalike/create/",
        token,
        json={
            "advertiser_id": advertiser_id,
            "custom_audience_name": "lal",
            "lookalike_spec": {
                "source_audience_id": seed,
                "location_ids": [US],
                "audience_size": "BROAD",
                "include_source": False,
                "mobile_os": "ALL",
                "placements": ["TikTok"],
            },
        },
    )
    assert made["code"] == 0, made
    server.wait_jobs()
    return str(made["data"]["custom_audience_id"])


def _ad_group(server: Server, token: str, advertiser_id: str, status: str = "ACTIVE") -> str:
    made = server.likewise(
        "POST",
        "/adgroup/create/",
        token,
        json={"advertiser_id": advertiser_id, "adgroup_name": "g", "status": status},
    )
    assert made["code"] == 0, made
    return str(made["data"]["adgroup_id"])


def _apply(server: Server, token: str, advertiser_id: str, audience: str, group: str) -> None:
    answer = server.call(
        "POST",
        "/dmp/custom_audience/apply/",
        token,
        json={
            "advertiser_id": advertiser_id,
            "custom_audience_id": audience,
            "adgroup_ids": [group],
            "action_mode": "Apply",
            "usage_mode": "Include",
        },
    )
    assert answer["code"] == 0, answer


def _builds(server: Server, token: str, advertiser_id: str, audience: str) -> list[str]:
    history = server.audience(token, advertiser_id, audience)["audience_history"]
    return [h["action_detail"] for h in history if h["action"] == "CALCULATED"]


def test_refreshed_twice_a_week_only_while_applied_to_an_active_ad_group(
    setup: tuple[Server, Clock, str, str, str],
) -> None:
    server, clock, advertiser_id, token, seed = setup
    applied = _lookalike(server, token, advertiser_id, seed)
    idle = _lookalike(server, token, advertiser_id, seed)
    paused_lal = _lookalike(server, token, advertiser_id, seed)
    _apply(server, token, advertiser_id, applied, _ad_group(server, token, advertiser_id))
    paused = _ad_group(server, token, advertiser_id, status="PAUSED")
    _apply(server, token, advertiser_id, paused_lal, paused)
    lookalikes = server.runtime.lookalikes

    clock.now += timedelta(days=3)
    assert lookalikes.refresh_due() == 0  # not yet half a week
    clock.now += timedelta(days=1)
    assert lookalikes.refresh_due() == 1  # only the one on an active ad group
    server.wait_jobs()
    assert _builds(server, token, advertiser_id, applied)[0].endswith("(AUTO_REFRESH)")
    assert len(_builds(server, token, advertiser_id, idle)) == 1
    assert len(_builds(server, token, advertiser_id, paused_lal)) == 1
    assert lookalikes.refresh_due() == 0  # just built: the next one in 3.5 days

    # Resuming the paused ad group makes its lookalike due too.
    answer = server.likewise(
        "POST",
        "/adgroup/update/",
        token,
        json={"advertiser_id": advertiser_id, "adgroup_id": paused, "status": "ACTIVE"},
    )
    assert answer["code"] == 0, answer
    assert lookalikes.refresh_due() == 1
    server.wait_jobs()
    assert len(_builds(server, token, advertiser_id, paused_lal)) == 2

    # A deleted seed stops it: nothing is queued any more.
    clock.now += timedelta(days=4)
    gone = server.call(
        "POST",
        "/dmp/custom_audience/delete/",
        token,
        json={"advertiser_id": advertiser_id, "custom_audience_ids": [seed]},
    )
    assert gone["code"] == 0, gone
    assert lookalikes.refresh_due() == 0
    server.wait_jobs()
    assert len(_builds(server, token, advertiser_id, applied)) == 2
