"""Membership serving: what the operator's ad server asks on every ad request.

* ``contains(audience_id, uid)``: is the user in the audience (consent applied)?
* ``audiences_of(uid)``: every audience the user is in;
* ``eligible_ad_groups(uid)``: the active ad groups that may be shown to the user: in the ad
  group's targeting (location, OS, age, gender), in one of its included audiences (when it has
  any), in none of its excluded audiences (exclusion wins);
* and batch forms of each.

Everything a request reads is one immutable :class:`Snapshot`, replaced whole when something
changes (an audience's members, an ad group, the platform's users): readers take the current
one and never wait, and a change is visible to the next request. Audience changes arrive
through the audience service's listeners (live rule audiences within about a second of an
event); ad group changes through the ad group service's.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pyroaring import BitMap
from sqlalchemy import select

from likewise.domain.audience import Lifecycle, Status
from likewise.domain.targeting import AGE_GROUPS, GENDERS
from likewise.engine.audiences import Audiences
from likewise.lookalike.features import Demographics, demographics, user_count
from likewise.store.graph import PlatformGraph
from likewise.store.models import Audience
from likewise.targeting.ad_groups import AdGroups, AdGroupView

log = logging.getLogger(__name__)

GRAPH_POLL_SECONDS = 2.0
AGE_BAND = {g: i + 1 for i, g in enumerate(AGE_GROUPS)}  # lookalike.features' band codes
_NO_BITMAPS: tuple[BitMap, ...] = ()


@dataclass(frozen=True)
class Users:
    """Per uid, codes of the attributes targeting reads (0: unknown)."""

    country: np.ndarray  # uint16, into ``countries``
    os: np.ndarray  # uint8, into ``os_labels``
    age: np.ndarray  # uint8 band 1..6 (AGE_13_17 .. AGE_55_100)
    gender: np.ndarray  # uint8, into ``gender_labels``
    countries: dict[str, int]
    os_labels: dict[str, int]
    gender_labels: dict[str, int]
    # The platform's own user ids (the graph's ext_id) -> uid: 64 bits of their MD5, sorted,
    # and the uids in the same order; ids whose 64 bits collide are kept whole in ``clashes``.
    id_hash: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    id_uid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    clashes: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def empty() -> Users:
        z8 = np.zeros(0, np.uint8)
        return Users(np.zeros(0, np.uint16), z8, z8, z8, {}, {}, {})

    def uid_of(self, user_id: str) -> int | None:
        """The uid of the platform's user id, or None if unknown."""
        if user_id in self.clashes:
            return self.clashes[user_id]
        h = np.uint64(int.from_bytes(hashlib.md5(user_id.encode()).digest()[:8], "little"))
        i = int(np.searchsorted(self.id_hash, h))
        if i < len(self.id_hash) and self.id_hash[i] == h:
            return int(self.id_uid[i])
        return None

    @staticmethod
    def of(demo: Demographics, ids: tuple[np.ndarray, np.ndarray, dict[str, int]]) -> Users:
        labels = dict(zip(("country", "os", "age", "gender", "language"), demo.labels, strict=True))
        return Users(
            country=demo.country,
            os=np.ascontiguousarray(demo.codes[:, 1]),
            age=np.ascontiguousarray(demo.codes[:, 2]),
            gender=np.ascontiguousarray(demo.codes[:, 3]),
            countries={c: i for i, c in enumerate(demo.countries)},
            os_labels={o.upper(): i for i, o in enumerate(labels["os"])},
            gender_labels={g: i for i, g in enumerate(labels["gender"])},
            id_hash=ids[0],
            id_uid=ids[1],
            clashes=ids[2],
        )

    def __len__(self) -> int:
        return len(self.country)


@dataclass(frozen=True)
class Compiled:
    """An active ad group, ready to check: attribute codes allowed (None: any) and the
    membership bitmaps of its audiences."""

    id: int
    advertiser_id: int
    os: frozenset[int] | None
    ages: frozenset[int] | None
    gender: int | None  # None: any; -1: a gender no user has
    include: tuple[BitMap, ...]
    has_include: bool
    exclude: tuple[BitMap, ...]


@dataclass(frozen=True)
class Snapshot:
    members: dict[int, BitMap]  # audience -> members (all, before consent)
    usable: frozenset[int]  # audiences that may be targeted (valid)
    excluded: BitMap  # opted out or erased: in no audience
    users: Users
    by_country: dict[int, tuple[Compiled, ...]]  # country code -> ad groups that may apply
    anywhere: tuple[Compiled, ...]  # ad groups without a location (for unknown countries)
    ad_groups: tuple[AdGroupView, ...] = field(default=())


class MembershipServer:
    def __init__(
        self,
        *,
        audiences: Audiences,
        ad_groups: AdGroups,
        graph: PlatformGraph,
    ) -> None:
        self.audiences = audiences
        self.ad_groups = ad_groups
        self.graph = graph
        self._groups: tuple[AdGroupView, ...] = ()  # active ad groups, as last read
        self._compiled: dict[int, Compiled] = {}
        self._lock = threading.Lock()  # writers; readers never take it
        self._snap = Snapshot({}, frozenset(), BitMap(), Users.empty(), {}, ())
        self._graph_mark: int | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # the graph changed here: look now, not in 2 s
        self._thread: threading.Thread | None = None
        audiences.add_listener(self._audience_changed)
        ad_groups.add_listener(self._ad_groups_changed)
        graph.excluded_listeners.append(self._excluded_changed)

    # --- reads (the hot path) ----------------------------------------------------------------

    def contains(self, audience_id: int, uid: int) -> bool:
        snap = self._snap
        members = snap.members.get(audience_id)
        return (
            members is not None
            and audience_id in snap.usable
            and uid in members
            and uid not in snap.excluded
        )

    def contains_many(self, audience_id: int, uids: Iterable[int]) -> BitMap:
        """Those of ``uids`` in the audience."""
        snap = self._snap
        members = snap.members.get(audience_id)
        if members is None or audience_id not in snap.usable:
            return BitMap()
        return (BitMap(uids) & members) - snap.excluded

    def audiences_of(self, uid: int, among: Iterable[int] | None = None) -> list[int]:
        """The usable audiences the user is in (of ``among`` only, if given)."""
        snap = self._snap
        if uid in snap.excluded:
            return []
        members = snap.members
        ids = snap.usable if among is None else (a for a in among if a in snap.usable)
        return sorted(a for a in ids if uid in members[a])

    def eligible_ad_groups(self, uid: int) -> list[int]:
        snap = self._snap
        users = snap.users
        known = 0 <= uid < len(users)
        country = int(users.country[uid]) if known else 0
        os = int(users.os[uid]) if known else 0
        age = int(users.age[uid]) if known else 0
        gender = int(users.gender[uid]) if known else 0
        outside = uid in snap.excluded  # opted out or erased: in no audience
        out = []
        for g in snap.by_country.get(country, snap.anywhere):  # in location order
            if g.os is not None and os not in g.os:
                continue
            if g.ages is not None and age not in g.ages:
                continue
            if g.gender is not None and gender != g.gender:
                continue
            if outside:
                if g.has_include:
                    continue
            else:
                if any(uid in b for b in g.exclude):
                    continue
                if g.has_include and not any(uid in b for b in g.include):
                    continue
            out.append(g.id)
        return out

    def eligible_ad_groups_many(self, uids: Sequence[int]) -> dict[int, list[int]]:
        return {uid: self.eligible_ad_groups(uid) for uid in uids}

    def uid_of(self, user_id: str) -> int | None:
        """The uid of one of the platform's own user ids (as imported), or None."""
        return self._snap.users.uid_of(user_id)

    @property
    def snapshot(self) -> Snapshot:
        return self._snap

    # --- building ----------------------------------------------------------------------------

    def start(self) -> None:
        self.reload()
        self._thread = threading.Thread(target=self._run, name="serving", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(GRAPH_POLL_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self.graph.excluded() is not self._snap.excluded:  # another process
                    self._excluded_changed()
                if self.graph.change_mark() != self._graph_mark:
                    self.reload_users()
            except Exception:  # the next round tries again
                log.exception("serving: reloading the platform's users failed")

    def reload(self) -> None:
        """Everything again: users, every audience's members, ad groups."""
        with self.audiences.db.session() as s:
            ids = list(
                s.execute(
                    select(Audience.id).where(
                        Audience.deleted.is_(False), Audience.status == Status.READY.value
                    )
                ).scalars()
            )
        users = self._load_users()
        with self._lock:
            self._groups = tuple(self.ad_groups.active())
            members = {a: self.audiences.current_members(a) for a in ids}
            excluded = self.graph.excluded()
            usable = frozenset(a for a in ids if self._usable(a, members[a], excluded))
            self._swap(members=members, usable=usable, excluded=excluded, users=users)

    def reload_users(self) -> None:
        users = self._load_users()
        with self._lock:
            excluded = self.graph.excluded()
            snap = self._snap
            usable = frozenset(
                a for a in snap.members if self._usable(a, snap.members[a], excluded)
            )
            self._swap(usable=usable, excluded=excluded, users=users)

    def _load_users(self) -> Users:
        mark = self.graph.change_mark()
        n = user_count(self.graph)
        users = Users.of(demographics(self.graph, n), self._id_index()) if n else Users.empty()
        self._graph_mark = mark
        return users

    def _id_index(self) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """The platform's user ids as :attr:`Users.id_hash` / ``id_uid`` / ``clashes``
        (DuckDB's ``md5_number_upper`` is the MD5's first 8 bytes, little-endian)."""
        with self.graph.connect() as con:
            got = con.execute(
                """SELECT md5_number_upper(ext_id) AS h, uid FROM users
                WHERE ext_id IS NOT NULL ORDER BY h"""
            ).fetchnumpy()
            h = np.asarray(got["h"], np.uint64)
            uid = np.asarray(got["uid"], np.uint32)
            clash = np.zeros(len(h), bool)
            if len(h) > 1:
                same = h[1:] == h[:-1]
                clash[1:] |= same
                clash[:-1] |= same
            clashes: dict[str, int] = {}
            if clash.any():
                wanted = [int(u) for u in uid[clash]]
                rows = con.execute(
                    "SELECT ext_id, uid FROM users WHERE uid IN (SELECT unnest(?::UINTEGER[]))",
                    [wanted],
                ).fetchall()
                clashes = {str(e): int(u) for e, u in rows}
        return h[~clash], uid[~clash], clashes

    def _usable(self, audience_id: int, members: BitMap, excluded: BitMap) -> bool:
        with self.audiences.db.session() as s:
            a = s.get(Audience, audience_id)
            if a is None or a.deleted or a.status != Status.READY.value:
                return False
            life = Lifecycle(a.created_at, a.modified_at, a.last_used_at, a.retention_in_days)
            if life.is_expired(self.audiences.clock()):
                return False
        return members.difference_cardinality(excluded) >= self.audiences.settings.min_audience_size

    def _audience_changed(self, audience_id: int) -> None:
        with self._lock:
            snap = self._snap
            with self.audiences.db.session() as s:
                a = s.get(Audience, audience_id)
                gone = a is None or a.deleted or a.status != Status.READY.value
            members = dict(snap.members)
            usable = set(snap.usable)
            usable.discard(audience_id)
            if gone:
                members.pop(audience_id, None)
            else:
                members[audience_id] = self.audiences.current_members(audience_id)
                if self._usable(audience_id, members[audience_id], snap.excluded):
                    usable.add(audience_id)
            self._swap(touched=audience_id, members=members, usable=frozenset(usable))

    def _excluded_changed(self) -> None:
        """Consent or erasure: users leave (or rejoin) every audience at once. (Whether an
        audience is still large enough is looked at again when it next changes.)"""
        with self._lock:
            self._swap(excluded=self.graph.excluded())
        self._wake.set()  # new users (an import) are read in the background

    def _ad_groups_changed(self) -> None:
        with self._lock:
            self._groups = tuple(self.ad_groups.active())
            self._swap()

    def _swap(self, *, touched: int | None = None, **changes: object) -> None:
        """A new snapshot with ``changes``. Ad groups are compiled again over its members: all
        of them, or with ``touched`` (one audience changed) only those that use it."""
        snap = self._snap
        members = changes.get("members", snap.members)
        usable = changes.get("usable", snap.usable)
        excluded = changes.get("excluded", snap.excluded)
        users = changes.get("users", snap.users)
        assert isinstance(members, dict) and isinstance(usable, frozenset)
        assert isinstance(excluded, BitMap) and isinstance(users, Users)
        groups = self._groups
        compiled = self._compiled
        if touched is None or "users" in changes or len(compiled) != len(groups):
            compiled = {g.id: self._compile(g, members, usable, users) for g in groups}
        elif touched is not None:
            compiled = dict(compiled)
            for g in groups:
                if touched in g.included or touched in g.excluded:
                    compiled[g.id] = self._compile(g, members, usable, users)
        self._compiled = compiled
        anywhere = [compiled[g.id] for g in groups if not g.targeting.countries]
        lists: dict[int, list[Compiled]] = {}
        for g in groups:
            for iso in g.targeting.countries:
                code = users.countries.get(iso)
                if code is not None:
                    lists.setdefault(code, list(anywhere)).append(compiled[g.id])
        by_country = {code: tuple(v) for code, v in lists.items()}
        self._snap = Snapshot(members, usable, excluded, users, by_country, tuple(anywhere), groups)

    @staticmethod
    def _compile(
        g: AdGroupView, members: dict[int, BitMap], usable: frozenset[int], users: Users
    ) -> Compiled:
        t = g.targeting
        os = frozenset(users.os_labels.get(o, -1) for o in t.operating_systems) or None
        ages = frozenset(AGE_BAND[a] for a in t.age_groups) or None
        wanted = GENDERS[t.gender]
        gender = None if wanted is None else users.gender_labels.get(wanted, -1)
        # An included audience that is not usable (too small, expired) reaches nobody;
        # an excluded one still excludes its members.
        include = tuple(members[a] for a in g.included if a in members and a in usable)
        exclude = tuple(members[a] for a in g.excluded if a in members) or _NO_BITMAPS
        return Compiled(g.id, g.advertiser_id, os, ages, gender, include, bool(g.included), exclude)
