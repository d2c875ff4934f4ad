"""Metadata tables (SQLAlchemy 2). Portable SQL only: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Advertiser(Base):
    __tablename__ = "advertisers"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(256))
    business_center_id: Mapped[str | None] = mapped_column(String(64), index=True)
    country: Mapped[str] = mapped_column(String(2), default="US")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    timezone: Mapped[str] = mapped_column(String(64), default="Etc/GMT")
    created_at: Mapped[datetime] = mapped_column(DateTime)


class AccessToken(Base):
    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    core_user_id: Mapped[int] = mapped_column(BigInteger)
    display_name: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class TokenScope(Base):
    """Which advertisers a token may act for."""

    __tablename__ = "token_scopes"

    token_id: Mapped[int] = mapped_column(ForeignKey("access_tokens.id"), primary_key=True)
    advertiser_id: Mapped[int] = mapped_column(ForeignKey("advertisers.id"), primary_key=True)


class Upload(Base):
    """A customer file after parsing: hashed keys on disk, the raw file already deleted."""

    __tablename__ = "uploads"

    file_path: Mapped[str] = mapped_column(String(16), primary_key=True)
    advertiser_id: Mapped[int] = mapped_column(ForeignKey("advertisers.id"), index=True)
    calculate_type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(256), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    rows_total: Mapped[int] = mapped_column(BigInteger)
    rows_valid: Mapped[int] = mapped_column(BigInteger)
    rows_rejected: Mapped[int] = mapped_column(BigInteger)
    rejects: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    keys_file: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Audience(Base):
    __tablename__ = "audiences"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    advertiser_id: Mapped[int] = mapped_column(ForeignKey("advertisers.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(32))  # CUSTOMER_FILE | SEGMENT
    calculate_type: Mapped[str | None] = mapped_column(String(32))
    audience_sub_type: Mapped[str] = mapped_column(String(32), default="NORMAL")
    retention_in_days: Mapped[int | None] = mapped_column(Integer)
    audience_enhancement: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))  # CALCULATING | READY | FAILED
    version: Mapped[int] = mapped_column(Integer, default=0)
    matched_num: Mapped[int] = mapped_column(BigInteger, default=0)
    msg: Mapped[str] = mapped_column(Text, default="")
    error_msg: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    modified_at: Mapped[datetime] = mapped_column(DateTime)
    last_used_at: Mapped[datetime] = mapped_column(DateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class AudienceVersion(Base):
    """One persisted membership bitmap."""

    __tablename__ = "audience_versions"

    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    bitmap_file: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class AudienceRule(Base):
    """The definition of a rule audience: TikTok's ``rule_spec`` as sent, re-read (and its
    sources checked again) at every evaluation."""

    __tablename__ = "audience_rules"

    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), primary_key=True)
    audience_type: Mapped[str] = mapped_column(String(32))
    rule_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    auto_refresh: Mapped[bool] = mapped_column(Boolean, default=True)
    evaluated_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Which dialect ``rule_spec`` is in: TikTok's (false) or Likewise's own (true: AND between
    # rules, min_count, min_value, top_share); it is parsed again with the same one.
    extended: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AudienceLookalike(Base):
    """The definition of a lookalike audience and its last build's quality report."""

    __tablename__ = "audience_lookalikes"

    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), primary_key=True)
    seed_id: Mapped[int] = mapped_column(BigInteger, index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # lookalike_spec, TikTok field names
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    built_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Why it no longer refreshes (its seed was deleted); empty while it does.
    refresh_stopped: Mapped[str] = mapped_column(Text, default="", server_default="")


class AudienceCombination(Base):
    """The definition of a combined audience (Likewise's own API): ``spec`` holds ``any_of``,
    ``all_of`` and ``exclude``, lists of audience ids (strings), as checked at creation."""

    __tablename__ = "audience_combinations"

    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)


class AudienceCombinationPart(Base):
    """One audience a combined audience is made of: what finds the combined audiences to
    update when a part changes (indexed by the part)."""

    __tablename__ = "audience_combination_parts"

    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), primary_key=True)
    part_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), primary_key=True, index=True)


class AudienceFile(Base):
    """Which uploads make up a customer-file audience (the current set)."""

    __tablename__ = "audience_files"

    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), primary_key=True)
    file_path: Mapped[str] = mapped_column(ForeignKey("uploads.file_path"), primary_key=True)


class AudienceHistory(Base):
    __tablename__ = "audience_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    action_detail: Mapped[str] = mapped_column(Text, default="")
    editor: Mapped[str] = mapped_column(String(64), default="open_api")
    msg: Mapped[str] = mapped_column(Text, default="")
    opt_time: Mapped[datetime] = mapped_column(DateTime)


class Job(Base):
    """An asynchronous audience computation; survives restarts (re-queued at start-up)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)  # QUEUED|RUNNING|DONE|FAILED
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Counter(Base):
    """Id allocation that works the same on SQLite and PostgreSQL."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class AudienceShare(Base):
    """An audience shared by its owner with another advertiser of the same business center."""

    __tablename__ = "audience_shares"

    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), primary_key=True)
    advertiser_id: Mapped[int] = mapped_column(ForeignKey("advertisers.id"), primary_key=True)
    shared_at: Mapped[datetime] = mapped_column(DateTime)


class EventSource(Base):
    """Where an advertiser's events come from: a pixel, an app, an offline or CRM event set, a
    lead form, or its own platform account. Only the owner may send to or read a source."""

    __tablename__ = "event_sources"
    # What senders name a source by is unique within a kind (a pixel code names one pixel), and
    # it is the lookup of every Events API request: the constraint is also that index.
    __table_args__ = (UniqueConstraint("kind", "code", name="uq_event_sources_kind_code"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    advertiser_id: Mapped[int] = mapped_column(ForeignKey("advertisers.id"), index=True)
    kind: Mapped[str] = mapped_column(
        String(16)
    )  # PIXEL | APP | OFFLINE | CRM | LEAD_FORM | ACCOUNT
    # What senders name the source by: the pixel code of a pixel, the app id of an app, the
    # decimal id of an event set.
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(256))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    modified_at: Mapped[datetime] = mapped_column(DateTime)
    # When the source last received an event (coarse: see EventSources.record_activity); it is
    # what pixel/list reports as activity_status.
    last_event_at: Mapped[datetime | None] = mapped_column(DateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class AdGroup(Base):
    """An advertiser's ad group: status and targeting (TikTok's field names, as JSON)."""

    __tablename__ = "ad_groups"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    advertiser_id: Mapped[int] = mapped_column(BigInteger, index=True)
    name: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))
    reach_frequency: Mapped[bool] = mapped_column(Boolean, default=False)
    targeting: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    modified_at: Mapped[datetime] = mapped_column(DateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class AdGroupAudience(Base):
    """An audience applied to an ad group, included or excluded (never both)."""

    __tablename__ = "ad_group_audiences"

    ad_group_id: Mapped[int] = mapped_column(ForeignKey("ad_groups.id"), primary_key=True)
    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), primary_key=True)
    usage_mode: Mapped[str] = mapped_column(String(16))


class ApplyLog(Base):
    """``apply/log/``: every Apply and Disconnect of an audience."""

    __tablename__ = "audience_apply_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audience_id: Mapped[int] = mapped_column(BigInteger, index=True)
    ad_group_id: Mapped[int] = mapped_column(BigInteger)
    advertiser_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))  # APPLY | DISCONNECT
    usage_mode: Mapped[str] = mapped_column(String(16))
    editor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime)


class ShareLog(Base):
    """``share/log/``: every share and cancellation of an audience."""

    __tablename__ = "audience_share_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audience_id: Mapped[int] = mapped_column(BigInteger, index=True)
    owner_id: Mapped[int] = mapped_column(BigInteger)
    advertiser_id: Mapped[int] = mapped_column(BigInteger)  # shared with
    action: Mapped[str] = mapped_column(String(16))  # SHARE | CANCEL
    at: Mapped[datetime] = mapped_column(DateTime)


class SavedAudience(Base):
    """``dmp/saved_audience/*``: a saved targeting bundle (TikTok's field names, as JSON)."""

    __tablename__ = "saved_audiences"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    advertiser_id: Mapped[int] = mapped_column(BigInteger, index=True)
    name: Mapped[str] = mapped_column(String(512))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
