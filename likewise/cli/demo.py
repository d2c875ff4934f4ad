"""``likewise demo``: a synthetic platform, a demo advertiser and a ready-to-upload file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from likewise.runtime import Runtime
from likewise.settings import Settings

DEMO_NAME = "Likewise Demo Advertiser"


def build_demo(
    settings: Settings,
    *,
    users: int,
    seed: int,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    from likewise.ingest.users import import_users
    from likewise.sim import generate_customer_file, generate_users

    rt = Runtime(settings)
    try:
        summary: dict[str, Any] | None = None
        if rt.graph.counts()["users"] == 0:
            table = generate_users(users, seed=seed)
            summary = import_users(rt.graph, table, progress=progress)
            # A hashed customer file (no raw identifiers at rest) to try the upload with.
            sample = generate_customer_file(
                table,
                n_rows=min(5_000, users),
                seed=seed + 1,
                kind="EMAIL_SHA256",
                hashed_rate=1.0,
                invalid_rate=0.0,
            )
            sample.write(settings.data_dir / "demo-customers.csv")
        existing = [a for a in rt.tenants.all_advertisers() if a.name == DEMO_NAME]
        adv = (
            existing[0]
            if existing
            else rt.tenants.create_advertiser(
                name=DEMO_NAME, now=rt.clock(), business_center_id="demo-bc", country="US"
            )
        )
        token = rt.tenants.create_token(
            advertiser_ids=[adv.id], now=rt.clock(), display_name="demo"
        )
    finally:
        rt.close()
    base = f"http://{settings.host}:{settings.port}/open_api/v1.3"
    sample_path = settings.data_dir / "demo-customers.csv"
    example = f"""
Demo advertiser {adv.id}, token {token}

  md5=$(md5sum {sample_path} | cut -d' ' -f1)
  curl -s -H 'Access-Token: {token}' {base}/dmp/custom_audience/file/upload/ \\
       -F advertiser_id={adv.id} -F calculate_type=EMAIL_SHA256 \\
       -F file_signature=$md5 -F file=@{sample_path}
  curl -s -H 'Access-Token: {token}' -H 'Content-Type: application/json' \\
       {base}/dmp/custom_audience/create/ -d '{{"advertiser_id": "{adv.id}",
       "custom_audience_name": "Demo buyers", "calculate_type": "EMAIL_SHA256",
       "file_paths": ["<file_path from the upload>"]}}'
  curl -s -H 'Access-Token: {token}' \\
       '{base}/dmp/custom_audience/list/?advertiser_id={adv.id}'
"""
    return {
        "advertiser_id": str(adv.id),
        "access_token": token,
        "users_import": summary,
        "sample_file": str(sample_path),
        "example": example,
    }
