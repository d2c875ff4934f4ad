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
    out = run("events.py", "--seconds", "1", "--batch-senders", "2", "--single-senders", "2")
    for load in ("bare_batched", "bare_single", "likewise_batched", "likewise_single"):
        result = out[load]
        assert isinstance(result, dict) and result["requests"] > 0 and result["failed"] == 0
    assert isinstance(out["batched_ratio_to_bare"], float) and out["batched_ratio_to_bare"] > 0


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
