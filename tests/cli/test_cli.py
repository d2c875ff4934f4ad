"""The CLI as operators run it: a real process over a real data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from likewise.runtime import Runtime
from likewise.settings import Settings


def run(data_dir: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    """``likewise ARGS`` over ``data_dir``, with ``env_vars`` added to the environment
    (``LIKEWISE_ADMIN_TOKEN`` only when given there)."""
    env = {k: v for k, v in os.environ.items() if k != "LIKEWISE_ADMIN_TOKEN"}
    env.update(LIKEWISE_DATA_DIR=str(data_dir), **env_vars)
    return subprocess.run(
        [sys.executable, "-m", "likewise.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_users_import_csv_prints_summary(tmp_path: Path) -> None:
    csv = tmp_path / "users.csv"
    csv.write_text(
        "user_id,email,phone,idfa,country,os,personalized_ads\n"
        "u1,Ann.Lee+x@Example.com,(415) 555-2671,6D92078A-8246-4BA4-AE5B-76104861E7DC,US,ios,true\n"
        "u1,ann2@example.com,,,,,\n"
        "u2,bob@example.com,12,,GB,android,false\n"
        ",nobody@example.com,,,,,\n"
        "u3,not-an-email,,,DE,android,maybe\n"
    )
    result = run(tmp_path / "data", "users", "import", str(csv))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == 5
    assert summary["users"] == 2
    assert summary["new_users"] == 2
    assert summary["identifiers"] == {"email": 3, "phone": 1, "idfa": 1}
    assert summary["rejected"] == {
        "missing_user_id": 1,
        "invalid_personalized_ads": 1,
        "invalid_phone": 1,
    }
    # Re-import updates and adds nothing new.
    again = json.loads(run(tmp_path / "data", "users", "import", str(csv)).stdout)
    assert again["new_users"] == 0 and again["updated_users"] == 2


def test_users_import_parquet(tmp_path: Path) -> None:
    path = tmp_path / "users.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["a", "b"],
                "email": ["a@x.com", None],
                "age": [30, 40],
                "personalized_ads": [True, False],
            }
        ),
        path,
    )
    result = run(tmp_path / "data", "users", "import", str(path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["users"] == 2 and summary["identifiers"] == {"email": 1}


def test_bad_input_is_one_readable_line(tmp_path: Path) -> None:
    missing = run(tmp_path / "data", "users", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1
    assert "error: no such file" in missing.stderr and "Traceback" not in missing.stderr
    no_id = tmp_path / "x.csv"
    no_id.write_text("email\na@b.com\n")
    result = run(tmp_path / "data", "users", "import", str(no_id))
    assert result.returncode == 1
    assert "no user_id column" in result.stderr and "Traceback" not in result.stderr
    wrong = tmp_path / "x.xlsx"
    wrong.write_bytes(b"PK\x03\x04")
    result = run(tmp_path / "data", "users", "import", str(wrong))
    assert result.returncode == 1 and "unsupported file type" in result.stderr


def test_advertiser_token_works_with_get(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run(data, "advertisers", "create", "--name", "Acme", "--business-center", "bc1")
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    assert set(info) == {"advertiser_id", "access_token"}
    path = f'/open_api/v1.3/advertiser/info/?advertiser_ids=["{info["advertiser_id"]}"]'
    got = run(data, "get", path, "--token", info["access_token"])
    body = json.loads(got.stdout)
    assert body["code"] == 0 and body["data"]["list"][0]["name"] == "Acme"
    bad = json.loads(run(data, "get", path, "--token", "wrong").stdout)
    assert bad["code"] == 40105


def test_consent_and_erase_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    csv = tmp_path / "u.csv"
    csv.write_text("user_id,email\nu1,a@x.com\nu2,b@x.com\n")
    assert run(data, "users", "import", str(csv)).returncode == 0
    out = json.loads(run(data, "users", "consent", "u1", "zz", "--opt-out").stdout)
    assert out == {"updated": 1, "not_found": ["zz"]}
    out = json.loads(run(data, "users", "erase", "u2").stdout)
    assert out == {"erased": 1, "not_found": []}


def test_demo_builds_platform_and_prints_a_working_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run(data, "demo", "--users", "3000", "--no-serve", LIKEWISE_ADMIN_TOKEN="t0ken")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["users_import"]["new_users"] == 3000
    assert "curl" in result.stderr and info["access_token"] in result.stderr
    assert info["admin_token"] is None  # LIKEWISE_ADMIN_TOKEN was set: nothing generated
    sample = Path(info["sample_file"]).read_text()
    assert "@" not in sample  # hashed: no raw identifiers at rest, even in the demo
    path = f"/open_api/v1.3/dmp/custom_audience/list/?advertiser_id={info['advertiser_id']}"
    body = json.loads(run(data, "get", path, "--token", info["access_token"]).stdout)
    assert body["code"] == 0 and body["message"] == "OK"
    # A second run keeps the platform, the advertiser and its sources, with a new token.
    again = json.loads(run(data, "demo", "--users", "3000", "--no-serve", "--events", "300").stdout)
    assert again["advertiser_id"] == info["advertiser_id"]
    assert again["access_token"] != info["access_token"]
    assert again["users_import"] is None
    assert (again["pixel_id"], again["pixel_code"]) == (info["pixel_id"], info["pixel_code"])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """One ``likewise demo --no-serve`` with a small platform: its data directory, its JSON
    output and its standard error."""
    data = tmp_path_factory.mktemp("demo") / "data"
    result = run(data, "demo", "--users", "2000", "--events", "1500", "--no-serve")
    assert result.returncode == 0, result.stderr
    return data, json.loads(result.stdout), result.stderr


def test_demo_replays_web_and_app_events(demo_run: tuple[Path, dict[str, Any], str]) -> None:
    """Shop (server and pixel) and app events of the last 30 days go through event/track/ and
    /pixel/v1/collect, and are stored and counted exactly as the simulation expects."""
    data, info, stderr = demo_run
    replay = info["replay"]
    sent, stored, expected = replay["sent"], replay["stored"], replay["expected"]
    for kind in ("web", "pixel", "app"):
        assert sent[kind]["events"] > 0 and sent[kind]["accepted"] == sent[kind]["events"], kind
    assert 1000 < sum(s["events"] for s in sent.values()) < 2000  # about --events
    assert stored["web"] == expected["web"] and stored["app"] == expected["app"]
    # A website audience of the replay's purchasers, made through rule/create/.
    rule = info["rule_audience"]
    assert rule["status"] == "READY" and rule["members"] > 0, rule
    # A lookalike of them when they are enough to seed one (100), made through lookalike/create/.
    lookalike = info["lookalike_audience"]
    if rule["members"] >= 100:
        assert lookalike["status"] == "READY" and lookalike["members"] > 0, lookalike
    else:
        assert lookalike["status"] == "NOT_CREATED", lookalike
    assert expected["web"]["deduplicated"] > 0 and expected["web"]["merged"] > 0
    low = expected["resolved"]
    assert 0 < low <= stored["resolved"] <= low + expected["click_only"]
    # The session's admin token is printed for the admin API.
    assert info["admin_token"] and info["admin_token"] in stderr
    assert "Replayed simulated events" in stderr
    # TikTok's stats endpoint, in a new process, counts the same.
    start, end = replay["start"][:10], datetime.now(UTC).date().isoformat()
    query = urlencode(
        {
            "advertiser_id": info["advertiser_id"],
            "pixel_ids": json.dumps([info["pixel_id"]]),
            "date_range": json.dumps({"start_date": start, "end_date": end}),
        }
    )
    got = run(
        data, "get", f"/open_api/v1.3/pixel/event/stats/?{query}", "--token", info["access_token"]
    )
    body = json.loads(got.stdout)
    assert body["code"] == 0, body
    received = sum(row["received"] for row in body["data"]["list"][0]["stats"])
    assert received == expected["web"]["received"]
    # In the Parquet parts: every event but the duplicates (merged copies are kept, linked).
    rt = Runtime(Settings(data_dir=data))
    try:
        rt.events.flush()
        source = rt.events.store.sql_source(int(info["advertiser_id"]))
        assert source is not None
        rows = duckdb.sql(
            f"SELECT count(*) FROM {source} WHERE channel IN ('web', 'pixel', 'app')"
        ).fetchall()[0][0]
    finally:
        rt.close()
    web, app = expected["web"], expected["app"]
    assert rows == web["received"] - web["deduplicated"] + app["received"]


def test_demo_replays_platform_engagement(demo_run: tuple[Path, dict[str, Any], str]) -> None:
    """Needs the engagement intake (``POST /admin/v1/engagement/track``): ad, account, shop,
    lead and organic engagement is accepted, and ad clicks let ``ttclid``-only shop events
    resolve."""
    _, info, _ = demo_run
    replay = info["replay"]
    engagement = replay["sent"]["engagement"]
    assert engagement["events"] > 0 and engagement["accepted"] == engagement["events"]
    assert engagement["errors"] == {}
    expected = replay["expected"]
    assert replay["stored"]["resolved"] == expected["resolved"] + expected["click_only"]
    assert info["events_replayed"] == sum(s["events"] for s in replay["sent"].values())
