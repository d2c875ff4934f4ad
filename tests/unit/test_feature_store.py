"""The lookalike feature store over real Parquet files and DuckDB: deltas folded into an
aggregated base with a stable vocabulary, erasure, retention by month, crash safety of merges;
and the feature rows engagement events make."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from likewise.ingest.features import WEIGHTS, feature_rows
from likewise.store.features import DELTA_SCHEMA, MANIFEST, FeatureStore, month_of

M0 = 670  # a month (months since January 1970)


def delta(*rows: tuple[int, str, int, float]) -> pa.Table:
    uid, item, month, w = zip(*rows, strict=True) if rows else ((), (), (), ())
    return pa.table(
        {"uid": list(uid), "item": list(item), "month": list(month), "w": list(w)},
        schema=DELTA_SCHEMA,
    )


def weights(store: FeatureStore, *, min_month: int | None = None) -> dict[tuple[int, str], float]:
    """Merged weights per ``(uid, item)``, summed over months."""
    m = store.read(min_month=min_month)
    rows = zip(m.uid, m.item, m.w, strict=True)
    got = {(int(u), m.items[i]): round(float(w), 4) for u, i, w in rows}
    assert len(got) == len(m.uid), "one row per user and item"
    return got


def vocabulary(store: FeatureStore) -> dict[str, int]:
    return {item: i for i, item in enumerate(store.read().items)}


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore(tmp_path / "features", threads=1)


# --- append, merge, read ------------------------------------------------------------------


def test_merge_sums_weights_across_deltas_and_months(store: FeatureStore) -> None:
    assert store.generation == 0
    assert weights(store) == {}
    store.append(delta((1, "category:pets", M0, 1.0), (1, "creator:c1", M0, 2.0)))
    store.append(delta((1, "category:pets", M0 + 1, 1.5), (2, "category:pets", M0, 4.0)))
    store.append(delta())  # nothing: no file
    assert store.pending() == 2
    assert store.merge() == 1
    assert store.generation == 1 and store.pending() == 0
    assert weights(store) == {
        (1, "category:pets"): 2.5,
        (1, "creator:c1"): 2.0,
        (2, "category:pets"): 4.0,
    }
    # Items are numbered in name order at first.
    assert vocabulary(store) == {"category:pets": 0, "creator:c1": 1}
    store.append(delta((2, "account:a9", M0, 3.0), (1, "category:pets", M0, 0.5)))
    store.append(delta((3, "creator:c1", M0 + 2, 1.0), (3, "account:a1", M0, 1.0)))
    assert store.merge() == 2
    assert weights(store) == {
        (1, "category:pets"): 3.0,
        (1, "creator:c1"): 2.0,
        (2, "category:pets"): 4.0,
        (2, "account:a9"): 3.0,
        (3, "creator:c1"): 1.0,
        (3, "account:a1"): 1.0,
    }
    # Existing items keep their ids; new ones get the next ids (in name order).
    assert vocabulary(store) == {
        "category:pets": 0,
        "creator:c1": 1,
        "account:a1": 2,
        "account:a9": 3,
    }
    # Only the current generation is on disk, and no delta is left.
    assert files(store.folder) == {MANIFEST, "base-2.parquet", "items-2.parquet"}
    matrix = store.read()
    assert (matrix.uid.dtype, matrix.item.dtype, matrix.w.dtype) == (
        np.uint32,
        np.uint32,
        np.float32,
    )
    assert matrix.generation == 2


def test_a_new_store_object_reads_what_was_merged(store: FeatureStore) -> None:
    store.append(delta((5, "creator:x", M0, 1.0)))
    store.merge()
    again = FeatureStore(store.folder)
    assert again.generation == 1
    assert weights(again) == {(5, "creator:x"): 1.0}


def test_nothing_pending_keeps_the_generation_and_the_files(store: FeatureStore) -> None:
    assert store.merge() == 0  # an empty store stays empty
    assert store.generation == 0 and store.read().items == []
    store.append(delta((1, "category:a", M0, 1.0)))
    store.append(delta((2, "category:b", M0, 1.0)))
    store.append_erased([7])
    store.append_erased([])  # nothing: no file
    assert store.pending() == 3
    assert store.merge() == 1
    before = {p: (store.folder / p).stat().st_mtime_ns for p in files(store.folder)}
    assert store.merge() == 1
    assert store.merge(min_month=M0) == 1  # nothing older than M0 to drop either
    assert {p: (store.folder / p).stat().st_mtime_ns for p in files(store.folder)} == before
    assert store.pending() == 0
    store.append(delta((1, "category:a", M0, 1.0)))
    assert store.pending() == 1
    assert store.merge() == 2


# --- erasure ------------------------------------------------------------------------------


def test_erasure_removes_the_users_rows_only(store: FeatureStore) -> None:
    store.append(delta((1, "category:a", M0, 1.0), (2, "category:a", M0, 2.0)))
    store.append(delta((3, "creator:c", M0, 1.0), (2, "creator:c", M0 - 3, 5.0)))
    store.merge()
    store.append_erased([2, 99])  # 99 never had features
    assert store.pending() == 1
    assert store.merge() == 2
    assert weights(store) == {(1, "category:a"): 1.0, (3, "creator:c"): 1.0}
    # The vocabulary keeps its ids (another user may engage with them again).
    assert vocabulary(store) == {"category:a": 0, "creator:c": 1}
    assert not list((store.folder / "erased").iterdir())


def test_erasure_removes_deltas_of_the_same_merge(store: FeatureStore) -> None:
    store.append(delta((1, "category:a", M0, 1.0)))
    store.merge()
    # Rows of user 4 and their erasure arrive between two merges, in either order.
    store.append(delta((4, "category:a", M0, 1.0), (1, "category:a", M0, 1.0)))
    store.append_erased([4, 1])
    store.append(delta((4, "creator:late", M0, 1.0), (5, "category:a", M0, 2.0)))
    store.merge()
    assert weights(store) == {(5, "category:a"): 2.0}


# --- retention ----------------------------------------------------------------------------


def test_retention_drops_old_months_even_with_nothing_pending(store: FeatureStore) -> None:
    store.append(
        delta(
            (1, "category:a", M0 - 2, 1.0),
            (1, "category:a", M0, 2.0),
            (2, "creator:c", M0 - 1, 4.0),
            (3, "category:a", M0 + 1, 8.0),
        )
    )
    assert store.merge() == 1
    assert weights(store) == {(1, "category:a"): 3.0, (2, "creator:c"): 4.0, (3, "category:a"): 8.0}
    assert weights(store, min_month=M0) == {(1, "category:a"): 2.0, (3, "category:a"): 8.0}
    assert weights(store, min_month=M0 + 2) == {}
    assert store.generation == 1  # reading with a filter changes nothing
    assert store.merge(min_month=M0 - 2) == 1  # nothing that old: no new generation
    assert store.merge(min_month=M0 - 1) == 2  # nothing pending, one month to drop
    assert weights(store) == {(1, "category:a"): 2.0, (2, "creator:c"): 4.0, (3, "category:a"): 8.0}
    # Pending rows older than the retention are dropped as they are merged.
    store.append(delta((4, "creator:c", M0 - 5, 1.0), (4, "category:a", M0, 1.0)))
    assert store.merge(min_month=M0) == 3
    assert weights(store) == {
        (1, "category:a"): 2.0,
        (3, "category:a"): 8.0,
        (4, "category:a"): 1.0,
    }
    assert store.merge(min_month=M0) == 3


# --- crash safety -------------------------------------------------------------------------


def test_consumed_deltas_left_behind_are_deleted_not_counted_twice(
    store: FeatureStore, tmp_path: Path
) -> None:
    store.append(delta((1, "category:a", M0, 1.0)))
    store.append_erased([9])
    saved = tmp_path / "saved"
    shutil.copytree(store.folder, saved)
    assert store.merge() == 1
    # A merge that published its manifest and crashed before deleting what it consumed.
    for sub in ("delta", "erased"):
        for p in (saved / sub).glob("*.parquet"):
            shutil.copy(p, store.folder / sub / p.name)
    assert len(list(store.folder.glob("*/*.parquet"))) == 2
    assert store.pending() == 0
    assert weights(store) == {(1, "category:a"): 1.0}
    assert store.merge() == 1  # nothing new: the leftovers go, the base stays
    assert not list(store.folder.glob("*/*.parquet"))
    assert weights(store) == {(1, "category:a"): 1.0}
    # Again, now with a new delta pending: only the new one counts.
    for p in (saved / "delta").glob("*.parquet"):
        shutil.copy(p, store.folder / "delta" / p.name)
    store.append(delta((1, "category:a", M0, 0.25), (2, "creator:b", M0, 1.0)))
    assert store.pending() == 1
    assert store.merge() == 2
    assert weights(store) == {(1, "category:a"): 1.25, (2, "creator:b"): 1.0}
    assert not list(store.folder.glob("*/*.parquet"))


def test_a_merge_interrupted_before_its_manifest_never_happened(store: FeatureStore) -> None:
    store.append(delta((1, "category:a", M0, 1.0), (2, "creator:b", M0, 2.0)))
    store.merge()
    store.append(delta((1, "category:a", M0, 1.0), (3, "account:z", M0, 1.0)))
    store.append_erased([2])
    # The next merge wrote its base and vocabulary, then the process died: no manifest.
    deltas = sorted((store.folder / "delta").glob("*.parquet"))
    erased = sorted((store.folder / "erased").glob("*.parquet"))
    store._write_generation(2, store.folder / "base-1.parquet", deltas, erased, None)
    assert (store.folder / "base-2.parquet").exists()
    # ... or died while writing them, or while writing the manifest.
    for leftover in (".base-2.parquet.tmp", ".items-2.parquet.tmp", "manifest.tmp"):
        (store.folder / leftover).write_bytes(b"torn")
    (store.folder / "delta" / ".torn.parquet.tmp").write_bytes(b"torn")
    # The previous generation is what is read; nothing was consumed.
    assert store.generation == 1
    assert weights(store) == {(1, "category:a"): 1.0, (2, "creator:b"): 2.0}
    assert vocabulary(store) == {"category:a": 0, "creator:b": 1}
    assert store.pending() == 2
    # The next merge counts every pending file once.
    assert store.merge() == 2
    assert weights(store) == {(1, "category:a"): 2.0, (3, "account:z"): 1.0}
    assert vocabulary(store) == {"category:a": 0, "creator:b": 1, "account:z": 2}
    assert store.pending() == 0
    assert store.merge() == 2


def test_only_the_newest_generation_stays_on_disk(store: FeatureStore) -> None:
    store.append(delta((1, "category:a", M0, 1.0)))
    store.merge()
    # A merge that published generation 2 and died before deleting generation 1.
    kept = {n: (store.folder / n).read_bytes() for n in ("base-1.parquet", "items-1.parquet")}
    store.append(delta((1, "category:a", M0, 1.0)))
    store.merge()
    for name, data in kept.items():
        (store.folder / name).write_bytes(data)
    store.append(delta((2, "category:a", M0, 1.0)))
    assert store.merge() == 3
    assert weights(store) == {(1, "category:a"): 2.0, (2, "category:a"): 1.0}
    assert sorted(p.name for p in store.folder.glob("*.parquet")) == [
        "base-3.parquet",
        "items-3.parquet",
    ]


def test_reading_while_merging(store: FeatureStore) -> None:
    """Lookalike builds read while the background merges: a read sees one whole generation
    (a merge never deletes the files under it)."""
    store.append(delta((0, "category:a", M0, 1.0)))
    store.merge()
    stop = threading.Event()

    def merge() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            store.append(delta((i % 7, f"category:{i % 3}", M0, 1.0)))
            store.merge()

    merger = threading.Thread(target=merge)
    merger.start()
    try:
        reads = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            m = store.read()
            reads.append(m.generation)
            # Every generation added exactly one row of weight 1.
            assert float(m.w.sum()) == m.generation
            assert set(m.items) <= {"category:a", "category:0", "category:1", "category:2"}
    finally:
        stop.set()
        merger.join()
    assert len(set(reads)) > 1, "the merges ran while reading"


# --- months -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "month"),
    [
        (0, 0),
        (14 * 86400, 0),  # 1970-01-15
        (31 * 86400 - 1, 0),  # 1970-01-31 23:59:59
        (31 * 86400, 1),  # 1970-02-01
        (946_684_799, 359),  # 1999-12-31 23:59:59
        (946_684_800, 360),  # 2000-01-01
        (1_796_083_200, 683),  # 2026-12-01
        (1_796_083_200 - 0.5, 682),  # 2026-11-30 23:59:59.5
    ],
)
def test_month_of(seconds: float, month: int) -> None:
    assert month_of(seconds) == month


# --- feature rows -------------------------------------------------------------------------

T = 1_796_083_200.0  # 2026-12-01, month 683


def events(*rows: dict[str, object]) -> pa.Table:
    """Stored event columns plus ``uid``, typed as the event processing delivers them."""
    types = {
        "uid": pa.uint32(),
        "channel": pa.string(),
        "event": pa.string(),
        "event_time": pa.float64(),
        "watched_percent": pa.float64(),
        "category": pa.string(),
        "creator_id": pa.string(),
        "account_id": pa.string(),
        "content_id": pa.string(),
        "ad_id": pa.string(),
    }
    return pa.table({c: pa.array([r.get(c) for r in rows], t) for c, t in types.items()})


def made(table: pa.Table) -> list[tuple[int, str, int, float]]:
    out = feature_rows(table)
    assert out.schema == DELTA_SCHEMA
    return sorted((r["uid"], r["item"], r["month"], round(r["w"], 4)) for r in out.to_pylist())


def test_feature_rows_of_engagement(tmp_path: Path) -> None:
    eng = {"channel": "engagement", "event_time": T}
    table = events(
        {**eng, "uid": 1, "event": "video_play", "category": "pets", "creator_id": "c1"},
        {**eng, "uid": 1, "event": "like", "creator_id": "c1", "content_id": "v1"},
        {**eng, "uid": 2, "event": "comment", "category": "food"},
        {**eng, "uid": 2, "event": "share", "category": "food", "event_time": T - 86400},
        {**eng, "uid": 3, "event": "follow", "account_id": "acct-3"},
        {**eng, "uid": 3, "event": "profile_visit", "account_id": "acct-3"},
        {**eng, "uid": 4, "event": "live_view", "creator_id": "c9"},
        # Not about taste: ads, lead forms, shop events.
        {**eng, "uid": 5, "event": "ad_click", "category": "pets", "ad_id": "ad-1"},
        {**eng, "uid": 5, "event": "ad_impression", "category": "pets", "ad_id": "ad-1"},
        {**eng, "uid": 5, "event": "shop_purchase", "category": "pets"},
        {**eng, "uid": 5, "event": "lead_form_submit", "account_id": "acct-3"},
        # An advertiser's own events never count, whatever they name.
        {"channel": "web", "uid": 6, "event": "like", "category": "pets", "event_time": T},
        {"channel": "pixel", "uid": 6, "event": "follow", "account_id": "a", "event_time": T},
        {"channel": None, "uid": 6, "event": "like", "category": "pets", "event_time": T},
        {**eng, "uid": 6, "event": None, "category": "pets"},
        # Nothing named: no row.
        {**eng, "uid": 7, "event": "like", "content_id": "v1"},
        {**eng, "uid": 7, "event": "like", "category": "", "creator_id": "", "account_id": ""},
    )
    assert made(table) == [
        (1, "category:pets", 683, 1.0),
        (1, "creator:c1", 683, 1.0),
        (1, "creator:c1", 683, WEIGHTS["like"]),
        (2, "category:food", 682, WEIGHTS["share"]),
        (2, "category:food", 683, WEIGHTS["comment"]),
        (3, "account:acct-3", 683, WEIGHTS["profile_visit"]),
        (3, "account:acct-3", 683, WEIGHTS["follow"]),
        (4, "creator:c9", 683, WEIGHTS["live_view"]),
    ]
    # Through the store: summed per user and item.
    store = FeatureStore(tmp_path / "features")
    store.append(feature_rows(table))
    store.merge()
    assert weights(store) == {
        (1, "category:pets"): 1.0,
        (1, "creator:c1"): 3.0,
        (2, "category:food"): 6.0,
        (3, "account:acct-3"): 5.0,
        (4, "creator:c9"): 1.5,
    }


def test_play_weight_grows_with_how_much_was_watched() -> None:
    plays = events(
        *(
            {
                "uid": i,
                "channel": "engagement",
                "event": "video_play",
                "event_time": T,
                "category": "pets",
                "watched_percent": pct,
            }
            for i, pct in enumerate([None, 0.0, 25.0, 50.0, 100.0, 250.0, -10.0])
        )
    )
    got = {uid: w for uid, _item, _month, w in made(plays)}
    assert got == {0: 1.0, 1: 1.0, 2: 1.25, 3: 1.5, 4: 2.0, 5: 2.0, 6: 1.0}
    # Other events do not take it into account.
    like = events(
        {
            "uid": 1,
            "channel": "engagement",
            "event": "like",
            "event_time": T,
            "category": "pets",
            "watched_percent": 80.0,
        }
    )
    assert made(like) == [(1, "category:pets", 683, 2.0)]


def test_feature_rows_of_nothing() -> None:
    assert made(events()) == []
    assert made(pa.table({})) == []
    only_web = events({"uid": 1, "channel": "web", "event": "like", "category": "x"})
    only_web = only_web.set_column(3, "event_time", pa.array([T]))
    assert made(only_web) == []
    # Without the columns features need: nothing (and no error).
    base = {"uid": [1], "channel": ["engagement"], "event": ["like"], "event_time": [T]}
    for missing in ("uid", "channel", "event", "event_time"):
        table = pa.table({**{k: v for k, v in base.items() if k != missing}, "category": ["x"]})
        assert made(table) == []
    assert made(pa.table(base)) == []  # no item column at all
    # Some item columns and no play depth: the others still count.
    assert made(pa.table({**base, "account_id": ["a"]})) == [(1, "account:a", 683, 2.0)]


# --- backfill staging and erased users known to the graph -----------------------------------


def test_a_backfill_counts_once_whatever_the_crash(store: FeatureStore) -> None:
    # Crash before it was marked done: the staged rows are dropped and it starts again.
    store.stage(delta((1, "category:pets", M0, 1.0)))
    assert store.merge() == 0 and weights(store) == {}  # staged rows are not merged
    assert not store.backfilled()
    assert not (store.folder / "backfill").exists()
    # Done: staged rows become deltas.
    store.stage(delta((1, "category:pets", M0, 1.0)))
    store.stage(delta((2, "category:pets", M0, 2.0)))
    store.mark_backfilled()
    assert store.backfilled()
    store.merge()
    assert weights(store) == {(1, "category:pets"): 1.0, (2, "category:pets"): 2.0}


def test_a_backfill_marked_but_not_published_is_published_once(store: FeatureStore) -> None:
    store.stage(delta((3, "creator:c9", M0, 4.0)))
    (store.folder / "backfilled").touch()  # marked, then the process died before moving
    assert store.backfilled()  # publishes what was staged
    assert store.backfilled()
    store.merge()
    assert weights(store) == {(3, "creator:c9"): 4.0}


def test_merge_forgets_users_the_graph_knows_are_erased(store: FeatureStore) -> None:
    store.append(delta((1, "category:pets", M0, 1.0), (2, "category:pets", M0, 2.0)))
    generation = store.merge()
    assert store.merge(forget=[7]) == generation  # nobody to forget: nothing rewritten
    assert store.merge(forget=[1]) == generation + 1
    assert weights(store) == {(2, "category:pets"): 2.0}
    # Rows of an erased user arriving late (after their erasure file was merged) go too.
    store.append(delta((1, "category:pets", M0, 5.0), (2, "category:pets", M0, 1.0)))
    store.merge(forget=[1])
    assert weights(store) == {(2, "category:pets"): 3.0}
