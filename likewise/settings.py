"""Every setting, defined once. Read from ``LIKEWISE_*`` environment variables.

Build a ``Settings`` in a factory (``create_app``, the CLI); never at import time, so tests can
point each app at its own data directory.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIKEWISE_", extra="ignore")

    data_dir: Path = Field(
        default=Path("./likewise-data"),
        description="Directory holding the metadata database, identity graph and bitmaps.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; default SQLite in data_dir.",
    )
    host: str = Field(default="127.0.0.1", description="Address the server listens on.")
    port: int = Field(default=8080, description="Port the server listens on.")
    admin_token: str | None = Field(
        default=None,
        description="Token for the platform admin API (header X-Admin-Token); unset disables it.",
    )
    min_audience_size: int = Field(
        default=1000, description="Audiences smaller than this are not targetable or exact."
    )
    min_lookalike_seed: int = Field(default=100, description="Minimum lookalike seed size.")
    max_upload_bytes: int = Field(
        default=1024 * 1024 * 1024, description="Largest customer file accepted, in bytes."
    )
    max_audiences_per_advertiser: int = Field(
        default=400, description="Custom audiences one advertiser may hold at once."
    )
    event_retention_days: int = Field(
        default=180,
        description="Events older than this are refused on intake and purged from the store "
        "(the longest rule lookback).",
    )
    max_event_body_bytes: int = Field(
        default=8 * 1024 * 1024, description="Largest Events API request body, in bytes."
    )
    event_worker: bool = Field(
        default=True,
        description="Process events (compaction, dedup, identity resolution) in a separate "
        "worker process, off the request path; false keeps it in a thread of the server.",
    )
    event_seal_seconds: float = Field(
        default=0.35,
        gt=0,
        description="With the event worker: how often the server hands the events it "
        "acknowledged to the worker (seals a log segment). Bounds how long an event waits "
        "before it is processed and reaches live audiences; shorter means more, smaller "
        "segments.",
    )
    event_key_index: bool = Field(
        default=True,
        description="Resolve events against an in-memory copy of the identity graph's keys "
        "(about 21 bytes a key in the event processor, built in seconds when events first "
        "arrive and after each import or erasure) instead of scanning the graph for every "
        "batch, which costs about a second of CPU a batch at 10M users.",
    )
    rule_refresh_seconds: float = Field(
        default=60.0,
        description="How often live rule audiences are stored as a new version (their members "
        "change within seconds of an event either way); without live audiences, how often "
        "auto-refresh rule audiences are evaluated again over their rolling window.",
    )
    rule_live: bool = Field(
        default=True,
        description="Keep auto-refresh rule audiences live: each usable event updates them "
        "within seconds. False: they are evaluated again every rule_refresh_seconds.",
    )
    lookalike_narrow_share: float = Field(
        default=0.02,
        gt=0,
        le=1,
        description="Size of a NARROW lookalike: this share of the eligible users (in its "
        "locations and OS, allowing personalised ads), the seed not counted.",
    )
    lookalike_balanced_share: float = Field(
        default=0.05, gt=0, le=1, description="Size of a BALANCED lookalike (see NARROW)."
    )
    lookalike_broad_share: float = Field(
        default=0.10, gt=0, le=1, description="Size of a BROAD lookalike (see NARROW)."
    )
    lookalike_holdout: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Share of a lookalike's seed held out to measure its quality.",
    )
    lookalike_refresh_days: float = Field(
        default=3.5,
        gt=0,
        description="Lookalikes applied to an active ad group are built again this often "
        "(twice a week).",
    )
    feature_merge_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often new engagement is merged into the lookalike features (a "
        "lookalike build merges first too).",
    )
    serving_index: bool = Field(
        default=True,
        description="Keep a per-user index of audience memberships for serving (2-4 bytes per "
        "membership more; single checks over many audiences 2-3 times as fast).",
    )
    serving_index_rebuild_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Audiences changed since the serving index was built are answered from "
        "their bitmaps; the index is built again after this long (or sooner when they are big).",
    )
    job_workers: int = Field(default=2, description="Threads running audience jobs.")
    duckdb_threads: int = Field(
        default=2,
        description="Threads for matching, reading customer files and importing users.",
    )
    duckdb_memory_limit: str = Field(default="3GB", description="DuckDB memory limit.")

    @property
    def metadata_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'metadata.sqlite').resolve()}"

    def ensure_dirs(self) -> None:
        for sub in ("", "uploads", "bitmaps", "tmp"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
