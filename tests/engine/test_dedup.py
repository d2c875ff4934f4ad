"""Deduplication with the in-memory key index: the key hashes, the index itself, and the
processor's outcome on generated streams against a plain model of TikTok's rules, across
restarts and purges, and with every key forced onto a few hashes (collisions must cost only
time)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from likewise.ingest import dedup
from likewise.ingest.dedup import DEDUP_SECONDS, MERGE_SECONDS, SeenKeys, key_hashes
from likewise.ingest.processor import EventProcessor
from likewise.ingest.records import EventRecord, encode_batch
from likewise.store.eventlog import EventLog
from likewise.store.events import EventStore

T0 = 1_780_000_000.0

texts = st.text(alphabet=st.sampled_from("ab\x00é🙂"), max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), texts, texts), min_size=1, max_size=30))
def test_equal_keys_hash_equal_and_different_keys_differ(keys: list[tuple[int, str, str]]) -> None:
    hi, lo = key_hashes(
        pa.array([k[0] for k in keys]),
        pa.array([k[1] for k in keys]),
        pa.array([k[2] for k in keys]),
    )
    by_key: dict[tuple[int, str, str], tuple[int, int]] = {}
    for key, h in zip(keys, zip(hi.tolist(), lo.tolist(), strict=True), strict=True):
        assert by_key.setdefault(key, h) == h
    # No collision among a few keys, in either half on its own.
    assert (
        len({h for h, _ in by_key.values()}) == len({h for _, h in by_key.values()}) == len(by_key)
    )


def test_hashes_do_not_depend_on_how_the_columns_are_laid_out() -> None:
    events = pa.array(["x", "ab", "a", ""])
    ids = pa.array(["q", "c", "bc", ""])
    plain = np.stack(key_hashes(pa.array([1, 1, 1, 1]), events, ids), axis=1)
    assert (plain[1] != plain[2]).all()  # "ab"+"c" is not "a"+"bc", in either half
    sliced = np.stack(key_hashes(pa.array([1, 1, 1]), events.slice(1), ids.slice(1)), axis=1)
    chunked = np.stack(
        key_hashes(
            pa.chunked_array([[1, 1], [1, 1]]),
            pa.chunked_array([events[:1], events[1:]]),
            pa.chunked_array([ids.cast(pa.large_string())]),
        ),
        axis=1,
    )
    assert sliced.tolist() == plain[1:].tolist()
    assert chunked.tolist() == plain.tolist()
    empty = key_hashes(
        pa.array([], pa.int64()), pa.array([], pa.string()), pa.array([], pa.string())
    )
    assert empty[0].size == empty[1].size == 0


def test_seen_keys_give_the_earliest_time_of_each_hash() -> None:
    keys = SeenKeys()
    h = np.array([5, 9, 5], dtype=np.uint64)
    keys.add(h, np.array([30.0, 20.0, 10.0]))
    keys.add(np.array([9, 7], dtype=np.uint64), np.array([5.0, 40.0]))
    assert len(keys) == 5
    found = keys.earliest(np.array([5, 6, 7, 9], dtype=np.uint64))
    assert found[[0, 2, 3]].tolist() == [10.0, 40.0, 5.0] and np.isnan(found[1])
    keys.forget_before(15.0)
    found = keys.earliest(np.array([5, 7, 9], dtype=np.uint64))
    assert found.tolist() == [30.0, 40.0, 20.0] and len(keys) == 3


def test_many_small_additions_are_merged_and_still_found() -> None:
    keys = SeenKeys()
    rng = np.random.default_rng(1)
    every = rng.integers(0, 2**63, size=200_000, dtype=np.int64).astype(np.uint64)
    for start in range(0, len(every), 1_000):
        keys.add(every[start : start + 1_000], np.full(1_000, float(start)))
    assert len(keys._recent) < 100  # merged along the way (200 additions)
    order = np.argsort(every)
    found = keys.earliest(every[order])
    assert found.tolist() == (order // 1_000 * 1_000).astype(float).tolist()
    assert np.isnan(keys.earliest(np.array([1, 2, 3], dtype=np.uint64))).all()


# --- the processor against a model ---------------------------------------------------------

events = st.tuples(
    # Few keys, mostly one, so that keys come again across passes, restarts and purges.
    st.sampled_from([11, 11, 11, 12]),  # source
    st.sampled_from(["Purchase", "Purchase", "Purchase", "ViewContent"]),
    st.sampled_from(["a", "a", "a", "b", None]),  # event_id
    st.sampled_from(["pixel", "web"]),
    st.sampled_from([0.0, 60.0, MERGE_SECONDS + 1, 3600.0, DEDUP_SECONDS - 60, DEDUP_SECONDS + 1]),
    st.booleans(),  # test event
)
passes = st.lists(
    st.tuples(
        st.lists(st.lists(events, min_size=1, max_size=6), min_size=1, max_size=3),  # segments
        st.sampled_from(["", "", "restart", "purge"]),
    ),
    min_size=1,
    max_size=6,
)


def model(stream: list[tuple[Any, ...]]) -> tuple[dict[int, int | None], int, int]:
    """TikTok's rules, one event at a time: stored row -> the row it merges into (or None),
    and the numbers dropped and merged."""
    first: dict[tuple[Any, ...], tuple[int, str, float]] = {}
    out: dict[int, int | None] = {}
    dropped = merged = 0
    for i, (source, event, event_id, channel, received, test) in enumerate(stream):
        if test:
            continue
        key = (source, event, event_id)
        f = first.get(key) if event_id is not None else None
        if f is not None and received - f[2] <= DEDUP_SECONDS:
            if (f[1] == "pixel") != (channel == "pixel") and received - f[2] <= MERGE_SECONDS:
                out[i] = f[0]
                merged += 1
            else:
                dropped += 1
            continue
        out[i] = None
        if event_id is not None:
            first[key] = (i, channel, received)
    return out, dropped, merged


def run(plan: list[tuple[list[list[tuple[Any, ...]]], str]], folder: Path) -> tuple[Any, ...]:
    log = EventLog(folder / "log")
    store = EventStore(folder)
    proc = EventProcessor(log, store)
    stream: list[tuple[Any, ...]] = []
    now = T0
    try:
        for segments, then in plan:
            for segment in segments:
                records = []
                for source, event, event_id, channel, step, test in segment:
                    now += step
                    records.append(
                        EventRecord(
                            source_id=source,
                            advertiser_id=7,
                            channel=channel,
                            event=event,
                            event_time=now - 10,
                            received_at=now,
                            event_id=event_id,
                            test=test,
                            url=f"row-{len(stream) + len(records)}",
                        )
                    )
                stream += [
                    (r.source_id, r.event, r.event_id, r.channel, r.received_at, r.test)
                    for r in records
                ]
                log.append(encode_batch(records))
                log.rotate()
            proc.flush()
            if then == "restart":
                proc = EventProcessor(log, store)
            elif then == "purge":
                proc.purge_seen(now)
        source = store.sql_source()
        rows = (
            duckdb.sql(f"SELECT url, eid, merged_into FROM {source}").fetchall() if source else []
        )
        with store.state() as con:
            totals = con.execute("SELECT sum(deduplicated), sum(merged) FROM stats").fetchone()
    finally:
        log.close()
        store.close()
    row_of_eid = {eid: int(url[4:]) for url, eid, _ in rows}
    got = {int(url[4:]): (None if m is None else row_of_eid[m]) for url, _, m in rows}
    assert totals is not None
    return stream, got, int(totals[0] or 0), int(totals[1] or 0)


@settings(max_examples=60, deadline=None)
@given(passes)
def test_the_processor_follows_the_rules(
    plan: list[tuple[list[list[tuple[Any, ...]]], str]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        stream, got, dropped, merged = run(plan, Path(folder))
    assert (got, dropped, merged) == model(stream)


@settings(max_examples=30, deadline=None)
@given(passes)
def test_hash_collisions_cost_time_not_answers(
    plan: list[tuple[list[list[tuple[Any, ...]]], str]],
) -> None:
    """Every key on one of two high halves, the in-memory index's hashes: each lookup goes to
    the state database, which decides by the whole 128-bit hash."""
    real = dedup._key_hashes

    def colliding(source_ids: np.ndarray, *columns: np.ndarray) -> None:
        real(source_ids, *columns)
        columns[-2][:] = source_ids % 2  # the high halves

    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as folder:
        patch.setattr(dedup, "_key_hashes", colliding)
        stream, got, dropped, merged = run(plan, Path(folder))
    assert (got, dropped, merged) == model(stream)


def test_a_pass_that_fails_after_its_commit_leaves_no_key_behind(tmp_path: Path) -> None:
    """Keys a pass stored but did not add to the index (it failed in between) are found: the
    index is loaded again from ``seen`` after any failed pass."""
    log, store = EventLog(tmp_path / "log"), EventStore(tmp_path)
    proc = EventProcessor(log, store)
    try:

        def once(self: SeenKeys, hashes: np.ndarray, times: np.ndarray) -> None:
            raise MemoryError("no room for the keys")

        record = EventRecord(
            source_id=11, advertiser_id=7, channel="web", event="Purchase",
            event_time=T0, received_at=T0, event_id="a",
        )  # fmt: skip
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(SeenKeys, "add", once)
            log.append(encode_batch([record]))
            with pytest.raises(MemoryError):
                proc.flush()
        log.append(encode_batch([record]))
        proc.flush()
        with store.state() as con:
            assert con.execute("SELECT sum(received), sum(deduplicated) FROM stats").fetchone() == (
                2,
                1,
            )
    finally:
        log.close()
        store.close()
