"""The event processor over a real log and store: dedup and merge windows, test events,
statistics, and replay after a crash between writing parts and committing."""

from __future__ import annotations

import json
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from likewise.ingest import processor
from likewise.ingest.processor import EventProcessor
from likewise.ingest.records import EventRecord, encode_batch
from likewise.store.eventlog import LEGACY_HEADER, EventLog
from likewise.store.events import COMPACT_MIN_PARTS, MANIFEST, EventStore, part_seq

T0 = 1_780_000_000.0  # 2026-05-28


def ev(
    event_id: str | None,
    *,
    received: float,
    channel: str = "web",
    event: str = "Purchase",
    source: int = 11,
    advertiser: int = 7,
    test: bool = False,
    email: list[str] | None = None,
) -> EventRecord:
    return EventRecord(
        source_id=source,
        advertiser_id=advertiser,
        channel=channel,
        event=event,
        event_time=received - 10,
        received_at=received,
        event_id=event_id,
        test=test,
        email=email or [],
    )


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[tuple[EventLog, EventStore, EventProcessor]]:
    log = EventLog(tmp_path / "log")
    store = EventStore(tmp_path)
    yield log, store, EventProcessor(log, store)
    log.close()
    store.close()


def stored(store: EventStore) -> list[tuple[object, ...]]:
    source = store.sql_source()
    if source is None:
        return []
    return duckdb.sql(
        f"SELECT event_id, channel, eid, merged_into, email FROM {source} ORDER BY eid"
    ).fetchall()


def stats(store: EventStore) -> dict[str, int]:
    with store.state() as con:
        row = con.execute(
            "SELECT sum(received), sum(test), sum(deduplicated), sum(merged) FROM stats"
        ).fetchone()
    assert row is not None
    return dict(zip(("received", "test", "deduplicated", "merged"), map(int, row), strict=True))


def test_duplicates_within_48_hours_are_dropped(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    log.append(encode_batch([ev("a", received=T0), ev("a", received=T0 + 3600)]))
    proc.flush()
    log.append(encode_batch([ev("a", received=T0 + 47 * 3600), ev(None, received=T0)]))
    proc.flush()
    log.append(encode_batch([ev("a", received=T0 + 49 * 3600)]))  # outside the window: new
    proc.flush()
    rows = stored(store)
    assert [r[0] for r in rows] == ["a", None, "a"]
    assert stats(store) == {"received": 5, "test": 0, "deduplicated": 2, "merged": 0}


def test_copies_48_hours_apart_in_one_pass_keep_the_later_as_the_key(pipeline) -> None:  # type: ignore[no-untyped-def]
    """A backlog can put copies more than 48 hours apart into one pass: both are stored as first
    copies, and the dedup key remembers the later one."""
    log, store, proc = pipeline
    log.append(encode_batch([ev("a", received=T0), ev("a", received=T0 + 49 * 3600)]))
    log.append(encode_batch([ev("a", received=T0 + 50 * 3600)]))  # within 48 h of the later
    proc.flush()
    assert [r[0] for r in stored(store)] == ["a", "a"]
    assert stats(store) == {"received": 3, "test": 0, "deduplicated": 1, "merged": 0}
    with store.state() as con:  # both are first copies; the later one counts
        assert con.execute("SELECT max_by(eid, eid), max(received_at) FROM seen").fetchall() == [
            (stored(store)[1][2], T0 + 49 * 3600)
        ]


def test_browser_and_server_copies_merge_within_5_minutes(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    h = "a" * 64
    log.append(encode_batch([ev("p1", received=T0, channel="pixel")]))
    log.append(encode_batch([ev("p1", received=T0 + 120, channel="web", email=[h])]))
    log.append(encode_batch([ev("p2", received=T0, channel="pixel")]))
    log.append(encode_batch([ev("p2", received=T0 + 600, channel="web")]))  # too late: dropped
    proc.flush()
    rows = stored(store)
    first = next(r for r in rows if r[0] == "p1" and r[1] == "pixel")
    merged = next(r for r in rows if r[0] == "p1" and r[1] == "web")
    assert merged[3] == first[2] and merged[4] == [h]
    assert next(r for r in rows if r[0] == "p2")[1] == "pixel"
    assert len(rows) == 3
    assert stats(store) == {"received": 4, "test": 0, "deduplicated": 1, "merged": 1}


def test_same_event_id_differs_by_event_and_source(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    log.append(
        encode_batch(
            [
                ev("x", received=T0),
                ev("x", received=T0, event="AddToCart"),
                ev("x", received=T0, source=12),
            ]
        )
    )
    proc.flush()
    assert len(stored(store)) == 3


def test_test_events_are_counted_not_stored(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    log.append(encode_batch([ev("t", received=T0, test=True), ev("t", received=T0, test=True)]))
    proc.flush()
    assert stored(store) == []
    assert stats(store) == {"received": 2, "test": 2, "deduplicated": 0, "merged": 0}


def test_partitions_by_advertiser_and_day(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    log.append(
        encode_batch(
            [ev("1", received=T0), ev("2", received=T0 + 86400), ev("3", received=T0, advertiser=8)]
        )
    )
    proc.flush()
    folders = sorted(p.parent.relative_to(store.data).as_posix() for p in store.parts())
    assert folders == [
        "advertiser_id=7/day=2026-05-28",
        "advertiser_id=7/day=2026-05-29",
        "advertiser_id=8/day=2026-05-28",
    ]


def test_replay_after_a_crash_before_commit_stores_nothing_twice(
    pipeline,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log, store, proc = pipeline
    log.append(encode_batch([ev("a", received=T0), ev("b", received=T0)]))
    log.rotate()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk went away")

    # Parts are written, then the state commit fails: the segment must stay for a retry.
    monkeypatch.setattr(store, "set_meta", crash)
    with pytest.raises(OSError):
        proc.run_once()
    assert log.sealed(), "the segment is kept until its state is committed"
    monkeypatch.undo()
    proc.run_once()
    assert [r[0] for r in stored(store)] == ["a", "b"]
    assert stats(store)["received"] == 2
    assert not log.sealed()


def test_dedup_keys_past_the_window_are_forgotten(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    log.append(encode_batch([ev("old", received=T0), ev("new", received=T0 + 47 * 3600)]))
    proc.flush()
    proc.purge_seen(T0 + 48 * 3600 + 1)
    with store.state() as con:
        kept = con.execute("SELECT eid, received_at FROM seen").fetchall()
    assert kept == [(2, T0 + 47 * 3600)]  # "new"


def test_days_past_the_retention_are_purged(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    old = ev("old", received=T0)
    old.event_time = T0 - 40 * 86400
    log.append(encode_batch([old, ev("recent", received=T0)]))
    proc.flush()
    assert {r[0] for r in stored(store)} == {"old", "recent"}
    with store.state() as con:  # links learned long ago and recently
        con.execute(
            "INSERT INTO links VALUES (1, 'ttp', 'old', 7, ?), (1, 'ttclid', 'new', 8, ?)",
            [T0 - 31 * 86400, T0 - 86400],
        )
    assert proc.purge_expired(T0, retention_days=30) == 1
    assert [r[0] for r in stored(store)] == ["recent"]
    with store.state() as con:
        assert con.execute("SELECT value FROM links").fetchall() == [("new",)]
    assert proc.purge_expired(T0, retention_days=30) == 0


def test_small_parts_are_merged_without_loss_or_copies(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    n = COMPACT_MIN_PARTS + 3
    for i in range(n):  # one segment (one small part) each
        log.append(encode_batch([ev(f"e{i}", received=T0 + i)]))
        proc.flush()
    folder = next(store.data.glob("advertiser_id=7/day=*"))
    assert len(list(folder.glob("*.parquet"))) == n
    before = stored(store)
    assert proc.compact() == n
    assert [p.name for p in folder.glob("*.parquet")] == [f"{n}-m{n}.parquet"]
    assert stored(store) == before
    assert proc.compact() == 0  # one file left: nothing to merge


def test_an_interrupted_merge_is_finished_or_forgotten(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    for i in range(COMPACT_MIN_PARTS):
        log.append(encode_batch([ev(f"e{i}", received=T0 + i)]))
        proc.flush()
    folder = next(store.data.glob("advertiser_id=7/day=*"))
    before = stored(store)
    parts = sorted(folder.glob("*.parquet"))
    # Crashed before publishing: the manifest is forgotten, the parts stay.
    (folder / MANIFEST).write_text(json.dumps({"target": "x-m2.parquet", "parts": ["1.parquet"]}))
    assert store.compactable(10**9) == [sorted(parts, key=part_seq)]
    assert not (folder / MANIFEST).exists()
    # Crashed after publishing: the parts it replaced go.
    merged = store.compact(parts)
    for part in parts[:3]:
        part.write_bytes(b"stale copy")  # as if never removed
    (folder / MANIFEST).write_text(
        json.dumps({"target": merged.name, "parts": [p.name for p in parts]})
    )
    store.compactable(10**9)
    assert [p.name for p in folder.glob("*.parquet")] == [merged.name]
    assert stored(store) == before


def test_parts_of_unfinished_segments_are_not_merged(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    for i in range(COMPACT_MIN_PARTS):
        log.append(encode_batch([ev(f"e{i}", received=T0 + i)]))
        proc.flush()
    # The watermark says segment COMPACT_MIN_PARTS is not done (a retried one rewrites its part).
    with store.state() as con:
        store.set_meta(con, "last_segment", COMPACT_MIN_PARTS - 1)
    assert store.compactable(COMPACT_MIN_PARTS - 1) == []


def test_a_backlog_is_stored_in_one_pass_and_a_failed_pass_leaves_no_copies(
    pipeline,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log, store, proc = pipeline
    for i in range(3):
        log.append(encode_batch([ev(f"e{i}", received=T0 + i)]))
        log.rotate()
    assert len(log.sealed()) == 3

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(store, "set_meta", crash)
    with pytest.raises(OSError):
        proc.run_once()  # one pass over the three segments writes their parts, then fails
    monkeypatch.undo()
    log.append(encode_batch([ev("e3", received=T0 + 3)]))  # the retry groups four segments
    log.rotate()
    passes: list[int] = []
    run = proc._segments

    def counting(segments):  # type: ignore[no-untyped-def]
        passes.append(len(segments))
        return run(segments)

    monkeypatch.setattr(proc, "_segments", counting)
    assert proc.run_once() == 4
    assert passes == [4]
    assert [r[0] for r in stored(store)] == ["e0", "e1", "e2", "e3"]
    assert stats(store)["received"] == 4
    assert not log.sealed()


def test_a_merge_is_dropped_if_a_part_changed_meanwhile(pipeline) -> None:  # type: ignore[no-untyped-def]
    log, store, proc = pipeline
    for i in range(COMPACT_MIN_PARTS):
        log.append(encode_batch([ev(f"e{i}", received=T0 + i)]))
        proc.flush()
    folder = next(store.data.glob("advertiser_id=7/day=*"))
    parts = sorted(folder.glob("*.parquet"), key=part_seq)
    staged = store.stage_merge(parts)
    assert not list(folder.glob("*-m*.parquet")), "nothing visible before it is published"
    parts[0].unlink()  # as an erasure would (it rewrites or removes the parts it touches)
    assert store.publish_merge(staged) is None
    assert not staged.tmp.exists()
    assert len(list(folder.glob("*.parquet"))) == COMPACT_MIN_PARTS - 1


# --- reading the log: Arrow's reader for small passes, DuckDB's for large ones -----------------

_texts = st.one_of(
    st.none(),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.sampled_from(['quote " back \\ slash', "tab\there\nnewline", "ünïcødé ☕ 😀", ""]),
)
_floats = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))
_lists = st.lists(st.text(max_size=6), max_size=3)
_records = st.builds(
    EventRecord,
    source_id=st.integers(1, 2**40),
    advertiser_id=st.integers(1, 2**40),
    channel=st.sampled_from(["web", "app", "pixel", "engagement"]),
    event=st.text(min_size=1, max_size=10),
    event_time=st.floats(0, 2e9),
    received_at=st.floats(0, 2e9),
    event_id=_texts,
    test=st.booleans(),
    limited=st.booleans(),
    email=_lists,
    external_id=_lists,
    ttp=_texts,
    url=_texts,
    value=_floats,
    currency=_texts,
    content_ids=_lists,
    prices=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3),
    properties=st.one_of(st.none(), st.dictionaries(st.text(max_size=4), _texts).map(json.dumps)),
    user_ref=_texts,
    watched_seconds=_floats,
)


@settings(max_examples=60, deadline=None)
@given(records=st.lists(_records, min_size=1, max_size=30))
def test_both_log_readers_give_the_same_table(records: list[EventRecord]) -> None:
    """Arrow's reader (small passes) and DuckDB's (large ones) read the same lines into equal
    tables: texts with escapes and any Unicode, floats to the last bit, absent lists as []."""
    with tempfile.TemporaryDirectory() as tmp:
        # DuckDB reads the log's segment as it lies: header lines between the records.
        log = EventLog(Path(tmp))
        for start in range(0, len(records), 7):
            log.append(encode_batch(records[start : start + 7]))
        log.rotate()
        (segment,) = log.sealed()
        log.close()
        con = duckdb.connect()
        by_duckdb = processor._read_with_duckdb(con, [segment])
        by_arrow = processor._read_with_arrow(b"".join(EventLog.records(segment)))
        con.close()
    assert by_duckdb.schema == by_arrow.schema == processor.SCHEMA
    assert by_duckdb.to_pylist() == by_arrow.to_pylist()
    assert by_arrow.num_rows == len(records)
    assert by_arrow.column("event").to_pylist() == [r.event for r in records]


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """Which reader each pass used, with what it read (DuckDB: the files)."""
    used: list[tuple[str, object]] = []
    for name in ("_read_with_duckdb", "_read_with_arrow"):
        real = getattr(processor, name)
        monkeypatch.setattr(
            processor,
            name,
            lambda *a, _real=real, _name=name: used.append((_name, a[-1])) or _real(*a),
        )
    monkeypatch.setattr(processor, "DUCKDB_READ_BYTES", 2000)
    return used


def test_large_passes_are_read_by_duckdb_in_place(
    tmp_path: Path, readers: list[tuple[str, object]]
) -> None:
    """A pass larger than DUCKDB_READ_BYTES takes the DuckDB reader, which reads the log's
    segments where they lie, and stores the same events."""
    log = EventLog(tmp_path / "log")
    store = EventStore(tmp_path / "events")
    proc = EventProcessor(log, store, clock=lambda: T0)
    log.append(encode_batch([ev(f"e{i}", received=T0) for i in range(3)]))
    assert proc.flush() == 3 and [r[0] for r in readers] == ["_read_with_arrow"]
    for part in range(4):
        log.append(encode_batch([ev(f"f{part}-{i}", received=T0 + i) for i in range(10)]))
    segment = log.segments()[-1]
    assert proc.flush() == 40 and readers[-1] == ("_read_with_duckdb", [segment])
    assert sorted(row[0] for row in stored(store)) == sorted(
        ["e0", "e1", "e2", *(f"f{p}-{i}" for p in range(4) for i in range(10))]
    )
    assert not (tmp_path / "events" / "reading.jsonl").exists()
    log.close()
    store.close()


def test_a_torn_segment_is_read_from_a_copy_of_its_intact_records(
    tmp_path: Path, readers: list[tuple[str, object]]
) -> None:
    """A crash left a torn record at the end of a large segment: DuckDB cannot read the file
    as it is, so it reads a copy of the intact records, and the torn one is not stored."""
    log = EventLog(tmp_path / "log")
    for part in range(3):
        log.append(encode_batch([ev(f"g{part}-{i}", received=T0) for i in range(20)]))
    log.close()
    (segment,) = log.segments()
    data = segment.read_bytes()
    segment.write_bytes(data[:-50])  # the third record, half written
    log = EventLog(tmp_path / "log")  # after the crash: a new segment, the torn one sealed
    store = EventStore(tmp_path / "events")
    proc = EventProcessor(log, store, clock=lambda: T0)
    assert proc.flush() == 40
    assert readers[-1] == ("_read_with_duckdb", [tmp_path / "events" / "reading.jsonl"])
    assert sorted(row[0] for row in stored(store)) == sorted(
        f"g{p}-{i}" for p in range(2) for i in range(20)
    )
    assert not (tmp_path / "events" / "reading.jsonl").exists()  # the scratch copy is gone
    log.close()
    store.close()


@pytest.mark.parametrize("events", [5, 60])  # read by Arrow; by DuckDB
def test_segments_of_the_first_log_format_are_still_read(
    tmp_path: Path, readers: list[tuple[str, object]], events: int
) -> None:
    """A segment left by a version whose records had binary headers (length, zlib CRC-32) is
    read after an upgrade: its events are stored once, beside new ones."""
    (tmp_path / "log").mkdir()
    payload = encode_batch([ev(f"old{i}", received=T0) for i in range(events)])
    legacy = LEGACY_HEADER.pack(len(payload), zlib.crc32(payload)) + payload
    (tmp_path / "log" / "000000000001.log").write_bytes(legacy)
    log = EventLog(tmp_path / "log")
    store = EventStore(tmp_path / "events")
    proc = EventProcessor(log, store, clock=lambda: T0)
    log.append(encode_batch([ev("new", received=T0)]))
    assert proc.flush() == events + 1
    assert sorted(row[0] for row in stored(store)) == sorted(
        ["new", *(f"old{i}" for i in range(events))]
    )
    if events > 10:
        assert readers[-1] == ("_read_with_duckdb", [tmp_path / "events" / "reading.jsonl"])
    log.close()
    store.close()


@pytest.mark.parametrize("keyed", [True, False])
def test_a_state_database_with_seen_keyed_by_texts_is_converted(
    tmp_path: Path, keyed: bool
) -> None:
    """State databases from before held ``seen`` by the key's texts (and, before the in-memory
    index, with a primary key on them): at the first pass the table is rebuilt by the keys'
    128-bit hashes, the keys are kept, and they still deduplicate."""
    con = duckdb.connect(str(tmp_path / "state.duckdb"))
    primary_key = ", PRIMARY KEY (source_id, event, event_id)" if keyed else ""
    con.execute(
        f"""CREATE TABLE seen (
          source_id BIGINT NOT NULL, event VARCHAR NOT NULL, event_id VARCHAR NOT NULL,
          eid BIGINT NOT NULL, channel VARCHAR NOT NULL, received_at DOUBLE NOT NULL
          {primary_key})"""
    )
    con.execute("INSERT INTO seen VALUES (11, 'Purchase', 'a', 1001, 'web', ?)", [T0])
    con.execute("INSERT INTO seen VALUES (11, 'Purchase', 'z', 1002, 'pixel', ?)", [T0 + 1])
    con.close()
    log, store = EventLog(tmp_path / "log"), EventStore(tmp_path)
    try:
        log.append(encode_batch([ev("a", received=T0 + 60), ev("b", received=T0 + 60)]))
        EventProcessor(log, store).flush()
        with store.state() as con:
            constraints = con.execute(
                "SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'seen'"
            ).fetchall()
            assert ("PRIMARY KEY",) not in constraints
            assert ("NOT NULL",) in constraints  # the table as new stores create it
            columns = [row[0] for row in con.execute("DESCRIBE seen").fetchall()]
            assert columns == ["key_hi", "key_lo", "eid", "channel", "received_at"]
            rows = con.execute(
                "SELECT eid, channel, received_at FROM seen ORDER BY received_at"
            ).fetchall()
            assert rows == [(1001, "web", T0), (1002, "pixel", T0 + 1), (1, "web", T0 + 60)]
        assert [r[0] for r in stored(store)] == ["b"]  # a: a repeat of the converted key
        log.append(encode_batch([ev("z", received=T0 + 120, channel="pixel")]))
        EventProcessor(log, store).flush()  # a new processor: the index loaded from seen
        assert [r[0] for r in stored(store)] == ["b"]  # z: a repeat too
    finally:
        log.close()
        store.close()
