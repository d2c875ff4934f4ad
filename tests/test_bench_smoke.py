"""The benchmarks still run (tiny sizes) and Likewise's answer equals the simulator's truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    start = result.stdout.index("{")
    return json.loads(result.stdout[start:])  # type: ignore[no-any-return]


def test_match_benchmark_smoke() -> None:
    out = run("match.py", "--users", "4000", "--rows", "4000")
    assert out["likewise_email_cover_num"] == out["expected_email_cover_num"]
    assert out["likewise_mixed_cover_num"] == out["expected_mixed_cover_num"]
    for key in ("ratio_to_c", "a_hashes_per_second"):
        assert isinstance(out[key], (int, float)) and out[key] > 0
    # At tiny sizes fixed costs dominate, so the speed-up may round to 0.
    assert isinstance(out["speedup_vs_b"], (int, float)) and out["speedup_vs_b"] >= 0


def test_users_import_benchmark_smoke() -> None:
    out = run("users_import.py", "--users", "3000")
    assert out["users"] == 3000
    assert isinstance(out["ratio_to_floor"], (int, float)) and out["ratio_to_floor"] > 0


def test_events_benchmark_smoke() -> None:
    out = run(
        "events.py",
        *("--seconds", "1", "--batch-senders", "2", "--single-senders", "2"),
        *("--users", "2000", "--settle", "0.5"),
    )
    for load in ("bare_batched", "bare_single", "likewise_batched", "likewise_single"):
        result = out[load]
        assert isinstance(result, dict) and result["requests"] > 0 and result["failed"] == 0
    assert isinstance(out["batched_ratio_to_bare"], float) and out["batched_ratio_to_bare"] > 0
    trickle = out["trickle"]
    assert isinstance(trickle, dict) and trickle["acknowledged"] == 20
    assert "server" in trickle["cpu_percent"] and out["key_index"] is True
    cpu = out["likewise_batched_cpu_us_per_event"]
    assert isinstance(cpu, dict) and cpu["server"] > 0
    processed, acknowledged = out["batched_processed_events_per_second"], out["likewise_batched"]
    assert isinstance(processed, int) and isinstance(acknowledged, dict)
    assert 0 < processed <= acknowledged["events_per_second"]
    assert out["events_stored"] == out["events_acknowledged"]  # unique ids: none dropped


def test_rules_batch_benchmark_smoke(tmp_path: Path) -> None:
    out = run(
        "rules_batch.py",
        "--events", "200000", "--audiences", "10", "--advertisers", "5", "--days", "30",
        "--dir", str(tmp_path),
    )  # fmt: skip
    assert out["agree"] is True and out["audiences"] == 10 and out["empty_audiences"] == 0


def test_rules_live_benchmark_smoke() -> None:
    out = run(
        "rules_live.py",
        "--seconds", "3", "--rate", "2000", "--audiences", "10", "--advertisers", "2",
        "--users", "2000", "--senders", "1", "--live-only",
    )  # fmt: skip
    live = out["live"]
    assert live["failed_requests"] == 0 and live["probes"] > 0
    assert live["probes_seen"] == live["probes"]  # every probe joined its audience


def test_lookalike_benchmark_smoke() -> None:
    out = run("lookalike.py", "--users", "20000", "--seed-size", "300", "--chunk", "8000")
    assert out["users"] == 20000 and out["seed_size"] == 300
    assert out["positives"] > 0 and out["engaged_users"] > 0 and out["lookalike_size"] > 0
    quality = out["quality"]
    assert set(quality) == {"random", "demographics", "centroid", "pu", "ensemble"}
    for lifts in quality.values():
        assert all(isinstance(lifts[k], (int, float)) for k in ("lift_1", "lift_5", "lift_10"))
    assert out["chosen_model"] in ("centroid", "pu", "ensemble")
    # Engagement says far more about future buyers than chance, even at this size.
    assert out["ratio_to_random"][out["chosen_model"]]["lift_10"] > 1.5
    for key in ("build_features_seconds", "build_lookalike_seconds", "peak_rss_gib"):
        assert isinstance(out[key], (int, float)) and out[key] > 0
    assert isinstance(out["targets"]["seconds_met"], bool)


def test_serving_benchmark_smoke() -> None:
    out = run(
        "serving.py",
        "--users", "20000", "--audiences", "60", "--ad-groups", "20", "--requests", "200",
        "--checks", "20000",
    )  # fmt: skip
    assert out["memberships"]["members"] > 0 and out["load_seconds"] >= 0
    inner = out["in_process"]
    assert inner["contains_per_second_all_audiences"] > 0
    assert inner["baseline_python_sets"]["contains_per_second"] > 0
    assert inner["mean_eligible_ad_groups"] > 0  # ad groups without targeting match someone
    assert inner["audiences_of_per_second"] > 0 and out["memberships"]["user_index_gib"] >= 0
    assert out["http"]["serving"]["requests"] == 200
    assert isinstance(out["targets"]["http_p99<=3ms"], bool)
    assert inner["single_bitmap_lookups_per_second"] > inner["contains_per_second_all_audiences"]


def test_lookalike_benchmark_features_match_the_intake() -> None:
    """The event columns the benchmark derives from the simulator's streams make the same
    feature rows as the engagement bodies a server would receive, through the real intake."""
    import msgspec
    import pyarrow as pa

    from bench.lookalike import ADVERTISER, engagement_events
    from likewise.ingest.engagement import EngagementBody, records
    from likewise.ingest.events import Window
    from likewise.ingest.features import COLUMNS, feature_rows
    from likewise.sim import generate_users, simulate_activity

    users = generate_users(400, seed=2)
    start = 1_767_225_600  # 2026-01-01
    act = simulate_activity(
        users, [ADVERTISER], start=start, end=start + 45 * 86_400, seed=3, retention_days=None
    )
    window = Window(now=act.end + 1.0, max_age_days=100_000)
    row_of = {u: i for i, u in enumerate(users.column("user_id").to_pylist())}
    got = []
    for body in act.bodies("engagement"):
        for r in records(msgspec.convert(body, EngagementBody), window):
            got.append({c: getattr(r, c, None) for c in COLUMNS if c != "uid"})
            got[-1]["uid"] = row_of[r.user_ref]
    intake = pa.Table.from_pylist(got).select(list(COLUMNS))
    offset = 1000  # uids are the users' rows plus the chunk's offset

    def rows(table: pa.Table, shift: int = 0) -> list[tuple[int, str, int, float]]:
        out = feature_rows(table).to_pylist()
        return sorted((r["uid"] - shift, r["item"], r["month"], round(r["w"], 5)) for r in out)

    expected = rows(intake)
    assert len(expected) > 1000
    assert {r[1].split(":")[0] for r in expected} == {"category", "creator", "account"}
    assert rows(engagement_events(act, offset), offset) == expected


def test_dedup_index_benchmark_smoke() -> None:
    """The bench itself checks that the index drops exactly the repeated key of each pass."""
    out = run("dedup_index.py", "--keys", "20000", "--pass-size", "50")
    assert out["keys"] == 20000
    for case in ("new_keys", "one_recent_repeat", "one_oldest_repeat"):
        result = out[case]
        assert isinstance(result, dict) and result["index_ms"] > 0 and result["full_scan_ms"] > 0
