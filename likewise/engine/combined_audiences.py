"""Combined audiences (Likewise's own API): any or all of a list of audiences, minus others,
kept up to date when their parts change.

``members = (∪ any_of) ∩ (∩ all_of) − (∪ exclude)``, by bitmap algebra over each part's
current membership (live membership when a rule audience has published one, else its stored
version). Without ``any_of`` the first factor is left out, and likewise ``all_of``. Consent is
applied where every audience's is: when it is counted or served.

A part may itself be combined. Parts exist before the audience made of them and a definition
never changes, so the parts form a DAG and audience ids grow along it: recomputing the
audiences affected by a change in id order settles it in one pass, and nothing can recurse.

Updates: :meth:`Audiences.add_listener` calls :meth:`CombinedAudiences.changed` after any
membership change (a stored version, live membership, a deletion). It only notes the id and
wakes a worker thread, which waits :data:`DEBOUNCE_SECONDS` (a burst of changes is one update),
finds the combined audiences built on the changed ones (directly or through other combined
audiences) and recomputes those whose inputs changed. New members are stored as a new version
(only when they differ), at most once every :data:`STORE_SECONDS` per audience (a version is an
fsynced bitmap file, and a live rule part may change every second); in between they are
published as live membership (``Audiences.publish_live``), which readers see at once, and the
sweep stores the newest once the interval has passed. Either fires the listener again, for
audiences built on this one in turn.

The listener may fire before the change it reports is committed, so the worker also sweeps
every :data:`SWEEP_SECONDS`: a combined audience whose parts' versions, live membership or states
differ from those it was computed from is recomputed (this also catches changes made while the
server was down, and parts that failed or stopped being shared with the advertiser).

States: a part that is gone (deleted, or no longer shared with the advertiser) or that failed
makes the combined audience FAILED, its message naming the part; a part still being calculated
for the first time keeps it CALCULATING. Those clear by themselves when the part recovers (or
is shared again); a deleted part is final, as definitions never change.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pyroaring import BitMap
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from likewise.domain.audience import Source, Status
from likewise.engine.audiences import Audiences
from likewise.errors import InvalidParameter
from likewise.store.db import Database
from likewise.store.models import (
    Audience,
    AudienceCombination,
    AudienceCombinationPart,
    AudienceShare,
)

log = logging.getLogger(__name__)

SPEC = "combination_spec"
KEYS = ("any_of", "all_of", "exclude")
MAX_PARTS = 20  # audiences named by one combined audience, all lists together
MAX_ID = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
DEBOUNCE_SECONDS = 0.1
SWEEP_SECONDS = 2.0
STORE_SECONDS = 5.0  # at most one stored version per combined audience in this time


def _bad(field: str, problem: str) -> InvalidParameter:
    return InvalidParameter(f"{field} {problem}", field=field)


@dataclass(frozen=True)
class Combination:
    """Which audiences a combined audience is made of (ids, each list without repeats)."""

    any_of: tuple[int, ...] = ()
    all_of: tuple[int, ...] = ()
    exclude: tuple[int, ...] = ()

    @property
    def parts(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys((*self.any_of, *self.all_of, *self.exclude)))

    def members(self, of: Callable[[int], BitMap]) -> BitMap:
        """The members, given each part's (never modified: they may be cached)."""
        result: BitMap | None = None
        if self.any_of:
            result = BitMap.union(*(of(i) for i in self.any_of))
        for i in self.all_of:
            result = of(i) & result if result is not None else BitMap(of(i))
        assert result is not None  # a combination includes something (checked when parsed)
        if self.exclude:
            result = result - BitMap.union(*(of(i) for i in self.exclude))
        return result

    def to_json(self) -> dict[str, list[str]]:
        return {key: [str(i) for i in getattr(self, key)] for key in KEYS}

    @classmethod
    def from_json(cls, spec: Mapping[str, Sequence[str]]) -> Combination:
        return cls(**{key: tuple(int(i) for i in spec.get(key, ())) for key in KEYS})

    def describe(self) -> str:
        return "; ".join(
            f"{key}: {', '.join(map(str, ids))}" for key in KEYS if (ids := getattr(self, key))
        )


def parse_combination(
    value: object, *, visible: Callable[[Sequence[int]], set[int]]
) -> Combination:
    """``combination_spec`` as a :class:`Combination`, or 40002 naming the field and problem.
    ``visible(ids)`` gives those of ``ids`` the advertiser may use (its own or shared with it,
    not deleted); any other id is answered as unknown, whoever owns it."""
    if value is None:
        raise _bad(SPEC, "is required: an object with any_of, all_of and exclude")
    if not isinstance(value, Mapping):
        raise _bad(SPEC, "must be an object with any_of, all_of and exclude")
    for key in value:
        if key not in KEYS:
            raise _bad(f"{SPEC}.{str(key)[:40]}", "is not a field; use any_of, all_of or exclude")
    named: list[tuple[str, int]] = []  # (field, id) in the order given
    lists: dict[str, list[int]] = {}
    for key in KEYS:
        raw = value.get(key)
        ids: list[int] = []
        if raw is not None:
            if not isinstance(raw, list):
                raise _bad(f"{SPEC}.{key}", "must be a list of audience ids")
            for i, item in enumerate(raw):
                at = f"{SPEC}.{key}[{i}]"
                audience_id = _audience_id(item, at)
                named.append((at, audience_id))
                if audience_id not in ids:  # a repeat means nothing more
                    ids.append(audience_id)
        lists[key] = ids
    if not lists["any_of"] and not lists["all_of"]:
        raise _bad(SPEC, "needs a non-empty any_of or all_of (lists of audience ids)")
    total = sum(len(ids) for ids in lists.values())
    if total > MAX_PARTS:
        raise _bad(SPEC, f"names {total} audiences; at most {MAX_PARTS} allowed")
    included = {*lists["any_of"], *lists["all_of"]}
    for at, audience_id in named:
        if at.startswith(f"{SPEC}.exclude[") and audience_id in included:
            raise _bad(
                at,
                f"names custom audience {audience_id}, which is also included; "
                "the audience would leave it out whole",
            )
    known = visible([audience_id for _, audience_id in named])
    for at, audience_id in named:
        if audience_id not in known:
            raise _bad(at, f"names custom audience {audience_id}, which does not exist")
    return Combination(**{key: tuple(ids) for key, ids in lists.items()})


def _audience_id(value: object, at: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise _bad(at, "must be an audience id (a string of digits)")
    if not _DIGITS.fullmatch(text) or int(text) > MAX_ID:
        raise _bad(at, f"is {text[:40]!r}; it must be an audience id (a string of digits)")
    return int(text)


@dataclass(frozen=True)
class _Part:
    """A part as last read: what decides whether the combined audience must be recomputed."""

    id: int
    name: str
    version: int
    status: str
    deleted: bool
    visible: bool  # its owner's, or shared with the combined audience's owner
    error_msg: str
    live: BitMap | None  # membership published ahead of the stored version

    def key(self) -> tuple[object, ...]:
        # Live bitmaps are replaced whole on each change: the same object is the same members.
        return (self.id, self.version, self.status, self.deleted, self.visible, id(self.live))


class CombinedAudiences:
    def __init__(
        self,
        *,
        db: Database,
        audiences: Audiences,
        debounce_seconds: float = DEBOUNCE_SECONDS,
        sweep_seconds: float = SWEEP_SECONDS,
        store_seconds: float = STORE_SECONDS,
    ) -> None:
        self.db = db
        self.audiences = audiences
        self.debounce_seconds = debounce_seconds
        self.sweep_seconds = sweep_seconds
        self.store_seconds = store_seconds
        self._dirty: set[int] = set()
        self._dirty_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # One computation at a time (the worker, and create on a request thread); under it,
        # what each combined audience was last computed from.
        self._compute = threading.Lock()
        self._inputs: dict[int, tuple[tuple[object, ...], ...]] = {}
        # Held so that id() of a live bitmap in _inputs cannot be reused by another object.
        self._held: dict[int, list[BitMap]] = {}
        self._specs: dict[int, Combination] = {}  # definitions never change
        self._failing: set[int] = set()  # logged once until they succeed again
        self._stored_at: dict[int, float] = {}  # monotonic time of the last stored version
        self._unstored: set[int] = set()  # live membership newer than the stored version
        audiences.add_listener(self.changed)

    # --- create ------------------------------------------------------------------------------

    def create(self, *, advertiser_id: int, name: str, spec: object) -> int:
        """Check the parts (visible to the advertiser, at most 20), store the definition and
        compute the members."""
        combination = parse_combination(spec, visible=lambda ids: self._visible(advertiser_id, ids))
        with self.db.session() as s:
            audience = self.audiences.new_audience(
                s,
                advertiser_id=advertiser_id,
                name=name,
                source=Source.COMBINED,
                status=Status.CALCULATING,
            )
            s.add(AudienceCombination(audience_id=audience.id, spec=combination.to_json()))
            for part in combination.parts:
                s.add(AudienceCombinationPart(audience_id=audience.id, part_id=part))
            self.audiences.history(s, audience.id, "CREATE", combination.describe())
            audience_id = audience.id
        self._specs[audience_id] = combination
        try:
            self.update([audience_id])
        except Exception:  # the worker's sweep tries again
            log.exception("combined audience %s could not be computed", audience_id)
        return audience_id

    def _visible(self, advertiser_id: int, ids: Sequence[int]) -> set[int]:
        with self.db.session() as s:
            return set(
                s.execute(
                    select(Audience.id).where(
                        self.audiences.visible_to(advertiser_id), Audience.id.in_(set(ids))
                    )
                ).scalars()
            )

    # --- updates -----------------------------------------------------------------------------

    def changed(self, audience_id: int) -> None:
        """The listener: note the change and wake the worker (quick; any thread)."""
        with self._dirty_lock:
            self._dirty.add(audience_id)
        self._wake.set()

    def dependents(self, changed: Iterable[int]) -> list[int]:
        """Combined audiences (not deleted) built on any of ``changed``, directly or through
        other combined audiences, in id order (parts before what is made of them)."""
        found: set[int] = set()
        frontier = set(changed)
        with self.db.session() as s:
            while frontier:
                rows = s.execute(
                    select(AudienceCombinationPart.audience_id)
                    .join(Audience, Audience.id == AudienceCombinationPart.audience_id)
                    .where(
                        AudienceCombinationPart.part_id.in_(frontier), Audience.deleted.is_(False)
                    )
                ).scalars()
                frontier = set(rows) - found
                found |= frontier
        return sorted(found)

    def update(self, audience_ids: Iterable[int] | None = None) -> int:
        """Recompute the given combined audiences (None: every one) whose inputs changed since
        they were last computed, in id order; returns how many were recomputed."""
        done = 0
        with self._compute:
            inputs = self._read_inputs(None if audience_ids is None else list(audience_ids))
            if audience_ids is None:  # forget deleted ones
                for gone in set(self._inputs) - set(inputs):
                    self._inputs.pop(gone, None)
                    self._held.pop(gone, None)
                    self._stored_at.pop(gone, None)
                    self._unstored.discard(gone)
            for audience_id in sorted(inputs):
                parts = inputs[audience_id]
                key = tuple(p.key() for p in parts)
                if self._inputs.get(audience_id) == key:
                    continue
                try:
                    self._recompute(audience_id, parts)
                except Exception:
                    if audience_id not in self._failing:
                        log.exception("combined audience %s could not be computed", audience_id)
                    self._failing.add(audience_id)
                    continue
                self._failing.discard(audience_id)
                self._inputs[audience_id] = key
                self._held[audience_id] = [p.live for p in parts if p.live is not None]
                done += 1
            if audience_ids is None:
                self._store_due()
        return done

    def _store_due(self) -> None:
        """Store live membership as a version where the last one is old enough."""
        now = time.monotonic()
        for audience_id in sorted(self._unstored):
            if now - self._stored_at.get(audience_id, 0.0) < self.store_seconds:
                continue
            live = self.audiences.live_members(audience_id)
            with self.db.session() as s:
                row = s.get(Audience, audience_id)
                # Back to the stored members: nothing to store (the live copy is the same).
                if (
                    live is not None
                    and row is not None
                    and not row.deleted
                    and (not row.version or live != self.audiences.members(row.id, row.version))
                ):
                    self._store(s, row, live)
            self._unstored.discard(audience_id)

    def _read_inputs(self, audience_ids: list[int] | None) -> dict[int, list[_Part]]:
        """Per combined audience (not deleted): its parts as they are now."""
        combined = aliased(Audience)
        part = aliased(Audience)
        shared = aliased(AudienceShare)
        q = (
            select(
                AudienceCombinationPart.audience_id,
                combined.advertiser_id,
                part.id,
                part.name,
                part.version,
                part.status,
                part.deleted,
                part.advertiser_id,
                part.error_msg,
                shared.advertiser_id,
            )
            .join(combined, combined.id == AudienceCombinationPart.audience_id)
            .join(part, part.id == AudienceCombinationPart.part_id)
            .outerjoin(
                shared,
                (shared.audience_id == part.id) & (shared.advertiser_id == combined.advertiser_id),
            )
            .where(combined.deleted.is_(False))
        )
        if audience_ids is not None:
            if not audience_ids:
                return {}
            q = q.where(AudienceCombinationPart.audience_id.in_(audience_ids))
        out: dict[int, list[_Part]] = {}
        with self.db.session() as s:
            for cid, owner, pid, name, version, pstatus, deleted, powner, err, share in s.execute(
                q
            ).all():
                out.setdefault(cid, []).append(
                    _Part(
                        id=pid,
                        name=name,
                        version=version,
                        status=pstatus,
                        deleted=deleted,
                        visible=not deleted and (powner == owner or share is not None),
                        error_msg=err or "",
                        live=self.audiences.live_members(pid),
                    )
                )
        for parts in out.values():
            parts.sort(key=lambda p: p.id)
        return out

    def _spec(self, s: Session, audience_id: int) -> Combination | None:
        spec = self._specs.get(audience_id)
        if spec is None:
            row = s.get(AudienceCombination, audience_id)
            if row is None:
                return None
            spec = self._specs[audience_id] = Combination.from_json(row.spec)
        return spec

    def _recompute(self, audience_id: int, parts: list[_Part]) -> None:
        problem = _problem(parts)
        waiting = [
            p for p in parts if p.status == Status.CALCULATING and p.version == 0 and p.live is None
        ]
        by_id = {p.id: p for p in parts}
        members: BitMap | None = None
        if problem is None and not waiting:
            with self.db.session() as s:
                spec = self._spec(s, audience_id)
            if spec is None:
                return
            members = spec.members(lambda i: self._members_of(by_id[i]))
        with self.db.session() as s:
            row = s.get(Audience, audience_id)
            if row is None or row.deleted:
                return
            if problem is not None:
                if row.status != Status.FAILED or row.error_msg != problem:
                    row.status = Status.FAILED.value
                    row.error_msg = problem[:500]
                    self.audiences.history(s, row.id, "FAILED", problem[:500], msg=row.error_msg)
                return
            if members is None:
                row.status = Status.CALCULATING.value  # a part's first result is still to come
                row.error_msg = ""
                return
            row.status = Status.READY.value
            row.error_msg = ""
            current = self.audiences.live_members(row.id)
            if current is None and row.version:
                current = self.audiences.members(row.id, row.version)
            if current is not None and members == current:
                return
            last = self._stored_at.get(row.id)
            if row.version == 0 or last is None or time.monotonic() - last >= self.store_seconds:
                self._store(s, row, members)
                return
        # Stored lately: readers (and audiences built on this one) see it now, stored later.
        self.audiences.publish_live(audience_id, members)
        self._unstored.add(audience_id)

    def _store(self, s: Session, row: Audience, members: BitMap) -> None:
        self.audiences.new_version(s, row, members)
        self.audiences.history(s, row.id, "CALCULATED", f"version {row.version}")
        self._stored_at[row.id] = time.monotonic()
        self._unstored.discard(row.id)

    def _members_of(self, part: _Part) -> BitMap:
        # The version read with the part's state (not a second read that could be newer), so
        # the inputs recorded are exactly those computed from.
        if part.live is not None:
            return part.live
        return self.audiences.members(part.id, part.version)

    # --- the worker --------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="combined-audiences", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        next_sweep = 0.0  # at once: catch up with changes made while the server was down
        while not self._stop.is_set():
            timeout = max(0.0, next_sweep - time.monotonic())
            woke = self._wake.wait(timeout)
            if self._stop.is_set():
                return
            try:
                if woke:
                    self._stop.wait(self.debounce_seconds)  # one update for a burst
                    self._wake.clear()
                    with self._dirty_lock:
                        dirty, self._dirty = self._dirty, set()
                    affected = self.dependents(dirty)
                    if affected:
                        self.update(affected)
                if time.monotonic() >= next_sweep:
                    self.update()
                    next_sweep = time.monotonic() + self.sweep_seconds
            except Exception:  # the next round tries again
                log.exception("combined audience update failed")
                self._stop.wait(self.sweep_seconds)


def _problem(parts: list[_Part]) -> str | None:
    """Why the combined audience cannot be computed now, naming the part; None if it can."""
    for p in parts:
        if p.deleted:
            return (
                f"custom audience {p.id} ({p.name}), a part of this combined audience, was "
                "deleted; create the combined audience again without it"
            )
        if not p.visible:
            return (
                f"custom audience {p.id} ({p.name}), a part of this combined audience, is no "
                "longer shared with this advertiser"
            )
        if p.status == Status.FAILED:
            reason = f": {p.error_msg}" if p.error_msg else ""
            return (
                f"custom audience {p.id} ({p.name}), a part of this combined audience, "
                f"failed{reason}"
            )[:500]
    return None
