"""Serving answers the same with the per-user index as without it: after the index is built,
after audiences change under it (answered from their bitmaps until the next build), after
consent changes, for users beyond it, and when the index round decides to build again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pyroaring import BitMap

from likewise.domain.audience import Source, Status
from likewise.ingest.users import import_users
from likewise.runtime import Runtime
from likewise.settings import Settings
from likewise.store.models import Audience
from likewise.targeting import user_index
from likewise.targeting.serving import MembershipServer

N = 3000
MIN = 50


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(Settings(data_dir=tmp_path / "data", min_audience_size=MIN, event_worker=False))
    rng = np.random.default_rng(0)
    import_users(
        rt.graph,
        pa.table(
            {
                "user_id": [f"u{i}" for i in range(N)],
                "country": rng.choice(["US", "GB", "DE"], N).tolist(),
                "os": rng.choice(["ios", "android"], N).tolist(),
                "age": rng.integers(14, 70, N).tolist(),
                "gender": rng.choice(["female", "male"], N).tolist(),
                "personalized_ads": (rng.random(N) > 0.05).tolist(),
            }
        ),
    )
    try:
        yield rt
    finally:
        rt.close()


def make_world(rt: Runtime) -> tuple[int, list[int]]:
    """One advertiser, 40 audiences (a few too small to target), 12 ad groups."""
    rng = np.random.default_rng(1)
    adv = rt.tenants.create_advertiser(name="adv", now=datetime.now()).id
    ids = []
    for i in range(40):
        size = 10 if i % 9 == 4 else int(rng.integers(MIN, N // 2))
        ids.append(new_audience(rt, adv, f"a{i}", rng.choice(N, size, replace=False)))
    usable = [a for i, a in enumerate(ids) if i % 9 != 4]
    for g in range(12):
        body: dict[str, object] = {
            "adgroup_name": f"g{g}",
            "audience_ids": usable[g : g + 1 + g % 2],
        }
        if g % 3 == 0:
            body["excluded_audience_ids"] = [usable[g + 5]]
        if g % 4 == 1:
            body["operating_systems"] = ["IOS"]
        rt.ad_groups.create(advertiser_id=adv, body=body)
    return adv, ids


def new_audience(rt: Runtime, adv: int, name: str, uids: np.ndarray) -> int:
    with rt.db.session() as s:
        a = rt.audiences.new_audience(
            s, advertiser_id=adv, name=name, source=Source.SEGMENT, status=Status.READY
        )
        rt.audiences.new_version(s, a, BitMap(np.asarray(uids, np.uint32)))
        return int(a.id)


def new_members(rt: Runtime, audience_id: int, uids: np.ndarray) -> None:
    with rt.db.session() as s:
        a = s.get(Audience, audience_id)
        rt.audiences.new_version(s, a, BitMap(np.asarray(uids, np.uint32)))


def assert_agrees(serving: MembershipServer, reference: MembershipServer) -> None:
    """Every answer of ``serving`` against the snapshot's own bitmaps and, for eligibility,
    against ``reference`` (the same server without the index)."""
    snap = serving.snapshot
    for uid in [*range(0, N, 3), N + 7]:
        expected = sorted(
            a for a in snap.usable if uid in snap.members[a] and uid not in snap.excluded
        )
        assert serving.audiences_of(uid) == expected, uid
        assert serving.audiences_of(uid, among=[*expected[:2], -5]) == expected[:2]
        for a in sorted(snap.members):
            assert serving.contains(a, uid) == (a in expected), (a, uid)
        assert serving.eligible_ad_groups(uid) == reference.eligible_ad_groups(uid), uid


def test_index_agrees_through_changes(rt: Runtime) -> None:
    _, ids = make_world(rt)
    serving = rt.serving
    reference = MembershipServer(
        audiences=rt.audiences, ad_groups=rt.ad_groups, graph=rt.graph, index=False
    )
    serving.reload()
    reference.reload()
    assert serving.snapshot.view.index is None
    assert_agrees(serving, reference)  # before the index exists: bitmaps only

    index = serving.build_index()
    view = serving.snapshot.view
    assert index.audiences.tolist() == sorted(ids)
    assert len(view.current) == len(ids) and not view.stale_servable
    # Single checks: the index for every current usable audience, those of ad groups too.
    plan = serving.snapshot.plan.columns
    assert set(plan) <= set(view.checks)
    assert set(view.checks) == {a for a in view.current if a in serving.snapshot.usable}
    assert_agrees(serving, reference)

    # New members of one used and one unused audience: answered from their bitmaps.
    rng = np.random.default_rng(2)
    changed = [ids[0], ids[30]]
    for a in changed:
        new_members(rt, a, rng.choice(N, 700, replace=False))
    view = serving.snapshot.view
    assert view.index is index  # not built again yet
    assert set(view.stale_servable) == set(changed)
    assert all(a not in view.current for a in changed)
    assert any(j == serving.snapshot.plan.columns[ids[0]] for j, _ in view.plan_stale)
    assert_agrees(serving, reference)

    # An audience that falls below the minimum leaves every answer.
    new_members(rt, ids[1], np.arange(5))
    assert ids[1] not in serving.snapshot.usable
    assert_agrees(serving, reference)

    # Consent: an opt-out leaves every audience at once, index or not.
    uid = next(u for u in range(N) if serving.audiences_of(u))
    rt.graph.set_consent([f"u{uid}"], False)
    serving._excluded_changed()
    reference._excluded_changed()
    assert serving.audiences_of(uid) == [] and serving.eligible_ad_groups(uid) == (
        reference.eligible_ad_groups(uid)
    )
    assert_agrees(serving, reference)

    # The index round: nothing to do while the changes are small and recent...
    serving.index_rebuild_seconds = 3600
    assert 0 < serving.snapshot.view.stale_size <= 0.1 * index.size
    serving._maybe_build_index()
    assert serving.snapshot.view.index is index
    # ... and a new build once they are old enough, covering every audience again.
    serving.index_rebuild_seconds = 0.0
    serving._maybe_build_index()
    view = serving.snapshot.view
    assert view.index is not index and len(view.current) == len(serving.snapshot.members)
    assert_agrees(serving, reference)

    # Big changes (more than a tenth of the memberships) do not wait.
    serving.index_rebuild_seconds = 3600
    built = serving.snapshot.view.index
    assert built is not None
    for a in ids[2:8]:
        new_members(rt, a, rng.choice(N, N // 2, replace=False))
    assert serving.snapshot.view.stale_size > 0.1 * built.size
    serving._maybe_build_index()
    assert serving.snapshot.view.index is not built and not serving.snapshot.view.stale_servable
    assert_agrees(serving, reference)

    # A full reload: the same versions, so the index still answers for them.
    serving.reload()
    assert_agrees(serving, reference)
    serving._maybe_build_index()
    assert len(serving.snapshot.view.current) == len(serving.snapshot.members)
    assert_agrees(serving, reference)
    reference.stop()


def test_narrow_rows_and_overflow_agree(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    # Rows far narrower than most users' audiences: the overflow answers the rest.
    monkeypatch.setattr(user_index, "MAX_ROW_FACTOR", 0.3)
    make_world(rt)
    serving = rt.serving
    reference = MembershipServer(
        audiences=rt.audiences, ad_groups=rt.ad_groups, graph=rt.graph, index=False
    )
    serving.reload()
    reference.reload()
    index = serving.build_index()
    assert index.width <= 4 and len(index.overflow) > N // 4
    assert_agrees(serving, reference)
    reference.stop()


def test_index_off(rt: Runtime) -> None:
    make_world(rt)
    serving = MembershipServer(
        audiences=rt.audiences, ad_groups=rt.ad_groups, graph=rt.graph, index=False
    )
    serving.start()
    try:
        assert serving.snapshot.view.index is None
        assert serving._index_rounds._thread is None  # never started
        index = serving.status()["index"]
        members = sum(len(b) for b in serving.snapshot.members.values())
        assert index["enabled"] is False and index["built"] is False
        assert index["memberships"] == 0 and index["row_width"] is None
        assert index["stale_audiences"] == 40 and index["stale_memberships"] == members > 0
    finally:
        serving.stop()


def test_idle_without_users(tmp_path: Path) -> None:
    """A platform nobody has imported users into yet has no exclusion file. Its poll must see
    nothing new: it once took a fresh empty bitmap for a change on every round, republished,
    and woke itself again at once, spinning a core (half the CPU of the event benchmark)."""
    rt = Runtime(Settings(data_dir=tmp_path / "data", event_worker=False))
    try:
        assert not rt.graph.excluded_file.exists()
        assert rt.graph.excluded() is rt.graph.excluded()
        polls = 0
        serving = rt.serving
        poll = serving._poll

        def counted() -> None:
            nonlocal polls
            polls += 1
            poll()

        serving._rounds.work = counted
        serving.start()  # creates the graph's file: the first round reads the users again
        serving._rounds.wake()
        time.sleep(0.5)
        snap, before = serving.snapshot, polls
        serving._rounds.wake()
        time.sleep(1.0)
        assert serving.snapshot is snap  # nothing republished
        assert 1 <= polls - before <= 2  # the wake-up, perhaps one timed round: not a busy loop
    finally:
        rt.close()
