"""Event sources: pixels, apps, offline and CRM event sets, lead forms and platform accounts.

A source belongs to one advertiser. Senders name it by its ``code`` (a pixel code, an app id, the
decimal id of an event set), which is unique within a kind. Deleting is soft: a deleted source
disappears from every read and refuses events, but its id and code are never reused, so events
already stored under it keep meaning what they meant.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Collection, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from likewise.errors import InvalidParameter, LimitExceeded, NotFound
from likewise.store.db import Database
from likewise.store.models import Advertiser, EventSource


class SourceKind(StrEnum):
    PIXEL = "PIXEL"
    APP = "APP"
    OFFLINE = "OFFLINE"
    CRM = "CRM"
    LEAD_FORM = "LEAD_FORM"
    ACCOUNT = "ACCOUNT"


# The Events API 2.0 ``event_source`` of each kind (``lead_form`` and ``account`` are Likewise's
# own intakes), and back.
EVENT_SOURCE_KINDS: dict[str, SourceKind] = {
    "web": SourceKind.PIXEL,
    "app": SourceKind.APP,
    "offline": SourceKind.OFFLINE,
    "crm": SourceKind.CRM,
    "lead_form": SourceKind.LEAD_FORM,
    "account": SourceKind.ACCOUNT,
}
EVENT_SOURCE_OF: dict[SourceKind, str] = {k: v for v, k in EVENT_SOURCE_KINDS.items()}

# What a message calls a source of one kind.
NOUNS: dict[SourceKind, str] = {
    SourceKind.PIXEL: "pixel",
    SourceKind.APP: "app",
    SourceKind.OFFLINE: "offline event set",
    SourceKind.CRM: "CRM event set",
    SourceKind.LEAD_FORM: "lead form",
    SourceKind.ACCOUNT: "account",
}

# Ids of their own range (audiences 6.0e18, core users 6.9e18, advertisers 7.0e18): an id seen
# in a log says what it is. Offline and CRM event sets are named by this id on the wire.
SOURCE_ID_START = 7_300_000_000_000_000_000
NAME_MAX = 128
MAX_PER_KIND = 1_000  # live sources of one kind per advertiser: bounds every unpaged read
CODE_MAX = 64
_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# TikTok's pixel codes: 20 upper-case letters and digits, the first one "C".
PIXEL_CODE_ALPHABET = string.ascii_uppercase + string.digits
PIXEL_CODE_LENGTH = 20
# Offline and CRM event sets are named by their decimal id (what ``event_source_id`` carries),
# so only the other kinds may be given a code of their own (to mirror one a client already uses).
CODE_SETTABLE = frozenset(
    {SourceKind.PIXEL, SourceKind.APP, SourceKind.LEAD_FORM, SourceKind.ACCOUNT}
)
# A source that got an event within this window is ACTIVE; ``last_event_at`` is written at most
# once per ACTIVITY_STEP so that recording it costs the intake next to nothing.
ACTIVE_WITHIN = timedelta(days=7)
ACTIVITY_STEP = timedelta(minutes=1)
# ``resolve`` runs for every Events API request: a found source is reused this long. Changes made
# through this service take effect at once; a deletion made by another process within this time.
RESOLVE_CACHE_SECONDS = 5.0

PixelCategory = Literal[
    "CONTACTS", "CUSTOMIZE_EVENTS", "FILLING_FORM", "LANDING_PAGE", "ONLINE_STORE"
]
Description = Annotated[str, Field(max_length=1024)]


# --- settings per kind ---------------------------------------------------------------------------


class _Settings(BaseModel):
    # Unknown keys are refused so that a typo is an error, not a setting silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True)


class AdvancedMatching(_Settings):
    """Which advanced-matching keys a pixel uses (TikTok's defaults: both)."""

    email: bool = True
    phone_number: bool = True


class PixelSettings(_Settings):
    pixel_category: PixelCategory | None = None
    partner_name: Annotated[str, Field(max_length=256)] | None = None
    advanced_matching_fields: AdvancedMatching = AdvancedMatching()


class AppSettings(_Settings):
    platform: Literal["IOS", "ANDROID"] | None = None
    # The App Store id or Google Play package name that app events carry in ``app.app_id``.
    store_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None


class OfflineSettings(_Settings):
    description: Description = ""
    auto_tracking: bool = False


class DescribedSettings(_Settings):
    description: Description = ""


SETTINGS: dict[SourceKind, type[_Settings]] = {
    SourceKind.PIXEL: PixelSettings,
    SourceKind.APP: AppSettings,
    SourceKind.OFFLINE: OfflineSettings,
    SourceKind.CRM: DescribedSettings,
    SourceKind.LEAD_FORM: DescribedSettings,
    SourceKind.ACCOUNT: DescribedSettings,
}


def checked_settings(kind: SourceKind, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` completed with the kind's defaults, or an error naming the setting."""
    try:
        return SETTINGS[kind].model_validate(dict(values)).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(["settings", *(str(p) for p in err["loc"])])
        if err["type"] == "extra_forbidden":
            known = ", ".join(SETTINGS[kind].model_fields)
            message = f"{path} is not a setting of {kind.value} sources (known: {known})"
        else:
            message = f"{path}: {err['msg']}"
        raise InvalidParameter(message, field=path) from None


def merged(old: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``old`` with ``patch`` applied; nested objects are merged key by key, so changing one
    advanced-matching key keeps the other."""
    out = dict(old)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# --- small rules ---------------------------------------------------------------------------------


def as_kind(kind: SourceKind | str) -> SourceKind:
    try:
        return SourceKind(str(kind).upper())
    except ValueError:
        known = ", ".join(k.value for k in SourceKind)
        raise InvalidParameter(f"kind {kind!r} is not one of {known}", field="kind") from None


def check_name(name: str, field: str = "name") -> None:
    if not name or not name.strip():
        raise InvalidParameter(f"{field} must not be empty", field=field)
    if len(name) > NAME_MAX:
        raise InvalidParameter(
            f"{field} is {len(name)} characters; at most {NAME_MAX} allowed", field=field
        )


def new_pixel_code() -> str:
    rest = "".join(secrets.choice(PIXEL_CODE_ALPHABET) for _ in range(PIXEL_CODE_LENGTH - 1))
    return "C" + rest


def activity_status(last_event_at: datetime | None, now: datetime) -> str:
    """ACTIVE if the source received an event within ACTIVE_WITHIN, else INACTIVE."""
    if last_event_at is not None and now - last_event_at <= ACTIVE_WITHIN:
        return "ACTIVE"
    return "INACTIVE"


def _event_source_kind(event_source: str) -> SourceKind:
    kind = EVENT_SOURCE_KINDS.get(event_source)
    if kind is None:
        known = ", ".join(EVENT_SOURCE_KINDS)
        raise InvalidParameter(
            f"event_source {event_source!r} is not one of {known}", field="event_source"
        )
    return kind


def _missing_source(event_source: str, event_source_id: str) -> NotFound:
    # One message for unknown, deleted and other advertisers' sources alike.
    return NotFound(
        f"{event_source} event source {event_source_id[:CODE_MAX]!r} does not exist",
        field="event_source_id",
    )


def _noun(kinds: Collection[SourceKind] | None) -> str:
    if kinds is not None and len(kinds) == 1:
        return NOUNS[next(iter(kinds))]
    return "event source"


# --- the service ---------------------------------------------------------------------------------


class EventSources:
    def __init__(
        self, db: Database, clock: Callable[[], datetime], *, max_per_kind: int = MAX_PER_KIND
    ) -> None:
        self.db = db
        self.clock = clock
        self.max_per_kind = max_per_kind
        self._resolved: dict[tuple[str, str], tuple[float, EventSource]] = {}
        self._resolved_lock = threading.Lock()

    # --- create --------------------------------------------------------------------------------

    def create(
        self,
        *,
        advertiser_id: int,
        kind: SourceKind | str,
        name: str,
        code: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> EventSource:
        kind = as_kind(kind)
        check_name(name)
        values = checked_settings(kind, settings or {})
        if code is not None:
            if kind not in CODE_SETTABLE:
                raise InvalidParameter(
                    f"code cannot be set for {kind.value} sources: they are named by their id",
                    field="code",
                )
            if not _CODE.fullmatch(code):
                raise InvalidParameter(
                    f"code must be 1 to {CODE_MAX} letters, digits, '.', '_' or '-'",
                    field="code",
                )
        with self.db.session() as s:
            if s.get(Advertiser, advertiser_id) is None:
                raise NotFound(f"advertiser {advertiser_id} does not exist", field="advertiser_id")
            live = s.execute(
                select(func.count())
                .select_from(EventSource)
                .where(
                    EventSource.advertiser_id == advertiser_id,
                    EventSource.kind == kind.value,
                    EventSource.deleted.is_(False),
                )
            ).scalar_one()
            if live >= self.max_per_kind:
                raise LimitExceeded(
                    f"advertiser {advertiser_id} already has {live} {NOUNS[kind]}s; at most "
                    f"{self.max_per_kind} are allowed: delete some first",
                    field="advertiser_id",
                )
            source_id = self.db.next_id(s, "event_source", SOURCE_ID_START)
            if code is None:
                code = self._free_pixel_code(s) if kind is SourceKind.PIXEL else str(source_id)
            elif self._code_taken(s, kind, code):
                raise InvalidParameter(
                    f"code {code!r} is already used by another {NOUNS[kind]}", field="code"
                )
            now = self.clock()
            row = EventSource(
                id=source_id,
                advertiser_id=advertiser_id,
                kind=kind.value,
                code=code,
                name=name,
                settings=values,
                created_at=now,
                modified_at=now,
                last_event_at=None,
                deleted=False,
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                # Two requests claimed the same code at once: the constraint decided.
                raise InvalidParameter(
                    f"code {code!r} is already used by another {NOUNS[kind]}", field="code"
                ) from None
        return row

    def _code_taken(self, s: Session, kind: SourceKind, code: str) -> bool:
        q = select(EventSource.id).where(EventSource.kind == kind.value, EventSource.code == code)
        return s.execute(q).first() is not None

    def _free_pixel_code(self, s: Session) -> str:
        while True:  # 36^19 codes: a clash is next to impossible, but it must not be an error
            code = new_pixel_code()
            if not self._code_taken(s, SourceKind.PIXEL, code):
                return code

    # --- read ----------------------------------------------------------------------------------

    def _live(
        self, advertiser_ids: Collection[int], kinds: Collection[SourceKind] | None
    ) -> Select:
        q = select(EventSource).where(
            EventSource.advertiser_id.in_(list(advertiser_ids)), EventSource.deleted.is_(False)
        )
        if kinds is not None:
            q = q.where(EventSource.kind.in_([k.value for k in kinds]))
        return q

    def list(
        self,
        *,
        advertiser_ids: Collection[int],
        kinds: Collection[SourceKind] | None = None,
        ids: Collection[int] | None = None,
        code: str | None = None,
        name_contains: str | None = None,
        newest_first: bool = False,
        page: int = 1,
        page_size: int | None = None,
    ) -> tuple[list[EventSource], int]:
        """Live sources of these advertisers, filtered, in creation order (or newest first),
        one page of them (all when ``page_size`` is None), and how many match in all."""
        q = self._live(advertiser_ids, kinds)
        if ids is not None:
            q = q.where(EventSource.id.in_(list(ids)))
        if code is not None:
            q = q.where(EventSource.code == code)
        if name_contains:
            # Case-insensitive substring; autoescape: '%' and '_' in a name are literal.
            q = q.where(
                func.lower(EventSource.name).contains(name_contains.lower(), autoescape=True)
            )
        with self.db.session() as s:
            total = s.execute(select(func.count()).select_from(q.subquery())).scalar_one()
            q = q.order_by(EventSource.id.desc() if newest_first else EventSource.id.asc())
            if page_size is not None:
                q = q.offset((page - 1) * page_size).limit(page_size)
            return list(s.execute(q).scalars()), int(total)

    def get(
        self,
        *,
        advertiser_id: int,
        source_id: int,
        kinds: Collection[SourceKind] | None = None,
        field: str = "event_source_id",
    ) -> EventSource:
        (row,) = self.get_many(
            advertiser_ids={advertiser_id}, ids=[source_id], kinds=kinds, field=field
        )
        return row

    def get_many(
        self,
        *,
        advertiser_ids: Collection[int],
        ids: Collection[int],
        kinds: Collection[SourceKind] | None = None,
        field: str = "event_source_id",
    ) -> list[EventSource]:
        """These sources in the order asked; all or nothing. Another advertiser's source is
        reported exactly like one that does not exist."""
        with self.db.session() as s:
            q = self._live(advertiser_ids, kinds).where(EventSource.id.in_(list(ids)))
            rows = {r.id: r for r in s.execute(q).scalars()}
        for source_id in ids:
            if source_id not in rows:
                raise NotFound(f"{_noun(kinds)} {source_id} does not exist", field=field)
        return [rows[i] for i in ids]

    def get_by_id(self, source_id: int, *, include_deleted: bool = False) -> EventSource | None:
        """Any advertiser's source by id (callers check ``advertiser_id``); None if there is
        none, or it was deleted and ``include_deleted`` is false."""
        with self.db.session() as s:
            row = s.get(EventSource, source_id)
        if row is None or (row.deleted and not include_deleted):
            return None
        return row

    def resolve(
        self, advertiser_ids: AbstractSet[int], event_source: str, event_source_id: str
    ) -> EventSource:
        """The live source an Events API request names (``event_source`` web | app | offline |
        crm | lead_form | account, ``event_source_id`` its code), if it belongs to one of
        ``advertiser_ids``. Unknown, deleted and another advertiser's sources all give the same
        NotFound, so the answer reveals nothing about other tenants."""
        kind = _event_source_kind(event_source)
        if not advertiser_ids or not event_source_id:
            raise _missing_source(event_source, event_source_id)
        row = self._lookup(kind, event_source_id)
        if row is None or row.deleted or row.advertiser_id not in advertiser_ids:
            raise _missing_source(event_source, event_source_id)
        return row

    def resolve_public(self, event_source: str, event_source_id: str) -> EventSource:
        """The live source named by a code that is itself the credential (a pixel code in a
        web page, sent by browsers that carry no token), whoever owns it. Use it only where the
        sender cannot authenticate; everywhere else use :meth:`resolve`."""
        kind = _event_source_kind(event_source)
        row = self._lookup(kind, event_source_id) if event_source_id else None
        if row is None or row.deleted:
            raise _missing_source(event_source, event_source_id)
        return row

    def _lookup(self, kind: SourceKind, code: str) -> EventSource | None:
        key = (kind.value, code)
        now = time.monotonic()
        with self._resolved_lock:
            hit = self._resolved.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.db.session() as s:
            row = s.execute(
                select(EventSource).where(EventSource.kind == kind.value, EventSource.code == code)
            ).scalar()
        if row is not None and not row.deleted:
            with self._resolved_lock:
                if len(self._resolved) > 10_000:
                    self._resolved.clear()
                self._resolved[key] = (now + RESOLVE_CACHE_SECONDS, row)
        return row

    def _forget(self, row: EventSource) -> None:
        with self._resolved_lock:
            self._resolved.pop((row.kind, row.code), None)

    # --- change --------------------------------------------------------------------------------

    def update(
        self,
        *,
        advertiser_id: int,
        source_id: int,
        kinds: Collection[SourceKind] | None = None,
        name: str | None = None,
        settings: Mapping[str, Any] | None = None,
        field: str = "event_source_id",
        name_field: str = "name",
    ) -> EventSource:
        """Rename and/or change settings (merged into the current ones); kind and code never
        change, since senders already use them."""
        if name is not None:
            check_name(name, name_field)
        with self.db.session() as s:
            row = self._owned(s, advertiser_id, source_id, kinds, field)
            before = (row.name, dict(row.settings))
            if settings is not None:
                row.settings = checked_settings(
                    SourceKind(row.kind), merged(row.settings, settings)
                )
            if name is not None:
                row.name = name
            if (row.name, row.settings) != before:  # a no-op update is not a modification
                row.modified_at = self.clock()
        self._forget(row)
        return row

    def delete(
        self,
        *,
        advertiser_id: int,
        source_id: int,
        kinds: Collection[SourceKind] | None = None,
        field: str = "event_source_id",
    ) -> None:
        with self.db.session() as s:
            row = self._owned(s, advertiser_id, source_id, kinds, field)
            row.deleted = True
            row.modified_at = self.clock()
        self._forget(row)

    def _owned(
        self,
        s: Session,
        advertiser_id: int,
        source_id: int,
        kinds: Collection[SourceKind] | None,
        field: str,
    ) -> EventSource:
        q = self._live({advertiser_id}, kinds).where(EventSource.id == source_id)
        row = s.execute(q.with_for_update()).scalar()
        if row is None:
            raise NotFound(f"{_noun(kinds)} {source_id} does not exist", field=field)
        return row

    def record_activity(self, source_ids: Collection[int], at: datetime) -> None:
        """Note that these sources received events at ``at`` (for activity_status). Writes only
        when the stored time is more than ACTIVITY_STEP older, so calling it for every accepted
        request is cheap."""
        if not source_ids:
            return
        with self.db.session() as s:
            s.execute(
                update(EventSource)
                .where(
                    EventSource.id.in_(list(source_ids)),
                    (EventSource.last_event_at.is_(None))
                    | (EventSource.last_event_at < at - ACTIVITY_STEP),
                )
                .values(last_event_at=at)
            )
