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
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from pyroaring import BitMap
from sqlalchemy import select

from likewise.background import Periodic
from likewise.domain.audience import Status
from likewise.domain.targeting import AGE_GROUPS, GENDERS
from likewise.engine.audiences import Audiences
from likewise.lookalike.features import Demographics, demographics, user_count
from likewise.store.graph import PlatformGraph
from likewise.store.models import Audience
from likewise.targeting._rows import Contains
from likewise.targeting.ad_groups import AdGroups, AdGroupView
from likewise.targeting.user_index import IndexView, UserIndex

log = logging.getLogger(__name__)

GRAPH_POLL_SECONDS = 2.0
INDEX_POLL_SECONDS = 2.0
# The per-user index is built again once the audiences it cannot answer for hold this share
# of its memberships, or are older than ``index_rebuild_seconds``.
INDEX_STALE_SHARE = 0.1
AGE_BAND = {g: i + 1 for i, g in enumerate(AGE_GROUPS)}  # lookalike.features' band codes
_NO_INDEX = UserIndex.build({})


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
class Plan:
    """The active ad groups as arrays, so that a user's eligibility is a few numpy operations
    over all of them plus one lookup per distinct audience they use. Rows of the ``*_ok``
    tables are the users' attribute codes (0: unknown), columns the ad groups."""

    ids: np.ndarray  # (G,) ad group ids
    country_ok: np.ndarray  # (countries, G) bool
    os_ok: np.ndarray  # (os labels, G)
    age_ok: np.ndarray  # (7, G): unknown, then the six age groups
    gender_ok: np.ndarray  # (gender labels, G)
    audiences: list[BitMap]  # (U,) members of the audiences the ad groups use
    include: np.ndarray  # (G, U) bool: included (and usable)
    has_include: np.ndarray  # (G,) bool: the ad group includes audiences (usable or not)
    exclude: np.ndarray  # (G, U) bool
    columns: dict[int, int] = field(default_factory=dict)  # audience id -> its column

    def with_members(self, audience_id: int, members: BitMap) -> Plan:
        """The same plan with one audience's members replaced."""
        audiences = list(self.audiences)
        audiences[self.columns[audience_id]] = members
        return replace(self, audiences=audiences)

    @staticmethod
    def empty() -> Plan:
        none = np.zeros((1, 0), bool)
        return Plan(
            np.zeros(0, np.int64),
            none,
            none,
            np.zeros((7, 0), bool),
            none,
            [],
            np.zeros((0, 0), bool),
            np.zeros(0, bool),
            np.zeros((0, 0), bool),
        )


@dataclass(frozen=True)
class Snapshot:
    members: dict[int, BitMap]  # audience -> members (all, before consent)
    usable: frozenset[int]  # audiences that may be targeted (valid)
    excluded: BitMap  # opted out or erased: in no audience
    users: Users
    plan: Plan
    ad_groups: tuple[AdGroupView, ...] = ()
    servable: dict[int, BitMap] = field(default_factory=dict)  # members of usable audiences
    view: IndexView = field(default_factory=IndexView.none)  # the per-user index, if built


class MembershipServer:
    def __init__(
        self,
        *,
        audiences: Audiences,
        ad_groups: AdGroups,
        graph: PlatformGraph,
        index: bool = True,
        index_rebuild_seconds: float = 600.0,
    ) -> None:
        self.audiences = audiences
        self.ad_groups = ad_groups
        self.graph = graph
        self.use_index = index
        self.index_rebuild_seconds = index_rebuild_seconds
        self._index: UserIndex | None = None
        self._groups: tuple[AdGroupView, ...] = ()  # active ad groups, as last read
        self._lock = threading.Lock()  # writers; readers never take it
        self._snap = Snapshot({}, frozenset(), BitMap(), Users.empty(), Plan.empty())
        self._hot: Contains  # what contains() reads
        self._publish(self._snap)
        self._graph_mark: int | None = None
        self._rounds = Periodic("serving", lambda: GRAPH_POLL_SECONDS, self._poll)
        self._index_rounds = Periodic(
            "serving-index", lambda: INDEX_POLL_SECONDS, self._maybe_build_index
        )
        audiences.add_listener(self._audience_changed)
        ad_groups.add_listener(self._ad_groups_changed)
        graph.excluded_listeners.append(self._excluded_changed)

    # --- reads (the hot path) ----------------------------------------------------------------

    def contains(self, audience_id: int, uid: int) -> bool:
        return self._hot(audience_id, uid)  # compiled, over one published state

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
        view = snap.view
        if view.index is not None:
            slots = view.index.slots_of(uid)
            found = view.index.audiences[slots[view.servable_slot[slots]]].tolist()
            found += [a for a in view.stale_servable if uid in members[a]]
            if among is not None:
                wanted = set(among)
                found = [a for a in found if a in wanted]
            return sorted(found)
        ids = snap.usable if among is None else (a for a in among if a in snap.usable)
        return sorted(a for a in ids if uid in members[a])

    def eligible_ad_groups(self, uid: int) -> list[int]:
        snap = self._snap
        p, users = snap.plan, snap.users
        if not len(p.ids):
            return []
        if 0 <= uid < len(users):
            c, o = users.country[uid], users.os[uid]
            a, g = users.age[uid], users.gender[uid]
        else:
            c = o = a = g = 0
        ok = p.country_ok[c] & p.os_ok[o] & p.age_ok[a] & p.gender_ok[g]
        hits: list[int] = []
        view = snap.view
        if uid in snap.excluded:  # opted out or erased: in no audience
            pass
        elif view.index is not None:
            columns = view.plan_column[view.index.slots_of(uid)]
            hits = columns[columns >= 0].tolist()
            hits += [j for j, b in view.plan_stale if uid in b]
        else:
            hits = [j for j, b in enumerate(p.audiences) if uid in b]
        if hits:
            ok &= ~p.exclude[:, hits].any(axis=1)
            ok &= p.include[:, hits].any(axis=1) | ~p.has_include
        else:
            ok &= ~p.has_include
        return p.ids[ok].tolist()  # type: ignore[no-any-return]

    def eligible_ad_groups_many(self, uids: Sequence[int]) -> dict[int, list[int]]:
        """:meth:`eligible_ad_groups` of many users at once: one intersection per audience
        for the whole batch, then matrix operations."""
        snap = self._snap
        p, users = snap.plan, snap.users
        rows = np.asarray(list(uids), np.int64)
        if not len(p.ids) or not len(rows):
            return {int(u): [] for u in rows}
        known = (rows >= 0) & (rows < len(users))
        at = np.where(known, rows, 0)
        code = lambda a: np.where(known, a[at], 0)  # noqa: E731
        ok = (
            p.country_ok[code(users.country)]
            & p.os_ok[code(users.os)]
            & p.age_ok[code(users.age)]
            & p.gender_ok[code(users.gender)]
        )  # (n, G)
        order = np.unique(rows[rows >= 0])
        batch = BitMap(order.astype(np.uint32)) - snap.excluded
        member = np.zeros((len(rows), len(p.audiences)), bool)
        where = {int(u): i for i, u in enumerate(rows)}
        for j, b in enumerate(p.audiences):
            for u in b & batch:
                member[where[u], j] = True
        if p.audiences:
            m = member.astype(np.float32)
            ok &= (m @ p.exclude.T.astype(np.float32)) == 0
            ok &= ((m @ p.include.T.astype(np.float32)) > 0) | ~p.has_include
        else:
            ok &= ~p.has_include
        return {int(u): p.ids[ok[i]].tolist() for i, u in enumerate(rows)}

    def uid_of(self, user_id: str) -> int | None:
        """The uid of one of the platform's own user ids (as imported), or None."""
        return self._snap.users.uid_of(user_id)

    @property
    def snapshot(self) -> Snapshot:
        return self._snap

    def status(self) -> dict[str, object]:
        """What is loaded, and how much of it the per-user index answers for."""
        snap = self._snap
        view = snap.view
        index = view.index
        built: dict[str, object] = {
            "memberships": 0,
            "bytes": 0,
            "row_width": None,
            "overflow_users": 0,
            "stale_memberships": sum(map(len, snap.members.values())),
            "age_seconds": None,
        }
        if index is not None:
            built = {
                "memberships": index.size,
                "bytes": index.nbytes,
                "row_width": index.width,
                "overflow_users": len(index.overflow),
                "stale_memberships": view.stale_size,
                "age_seconds": round(time.monotonic() - index.built_at, 1),
            }
        return {
            "audiences": len(snap.members),
            "usable_audiences": len(snap.usable),
            "active_ad_groups": len(snap.ad_groups),
            "users": len(snap.users),
            "excluded_users": len(snap.excluded),
            "index": {
                "enabled": self.use_index,
                "built": index is not None,
                "audiences": len(view.current),
                "stale_audiences": len(snap.members) - len(view.current),
                **built,
            },
        }

    # --- building ----------------------------------------------------------------------------

    def start(self) -> None:
        self.reload()
        self._rounds.start()
        if self.use_index:
            self._index_rounds.start()

    def stop(self) -> None:
        self._rounds.stop()
        self._index_rounds.stop()

    def build_index(self) -> UserIndex:
        """Index every audience's current members by user (:mod:`user_index`); the snapshot
        answers from it for every audience whose members have not changed since."""
        members = self._snap.members  # an immutable dict: a consistent set to index
        index = UserIndex.build(members)
        with self._lock:
            self._index = index
            self._publish(self._snap)
        log.info(
            "serving index: %d audiences, %d memberships, %.2f GiB",
            len(index.audiences),
            index.size,
            index.nbytes / 2**30,
        )
        return index

    def _maybe_build_index(self) -> None:
        snap = self._snap
        view = snap.view
        index = view.index
        if index is None:
            if snap.members:
                self.build_index()
            return
        if len(snap.members) == len(view.current):
            return
        if (
            view.stale_size > INDEX_STALE_SHARE * index.size
            or time.monotonic() - index.built_at > self.index_rebuild_seconds
        ):
            self.build_index()

    def _poll(self) -> None:
        """Changes of the platform's users made by another process (an import by the CLI), or
        announced here (:meth:`_excluded_changed` wakes this)."""
        if self.graph.excluded() is not self._snap.excluded:
            self._excluded_changed()
        if self.graph.change_mark() != self._graph_mark:
            self.reload_users()

    def reload(self) -> None:
        """Everything again: users, every audience's members, ad groups."""
        users = self._load_users()
        with self._lock:
            self._groups = tuple(self.ad_groups.active())
            members: dict[int, BitMap] = {}
            usable = set()
            for a in self._ready():
                members[a.id] = self.audiences.latest_members(a)
                if self.audiences.usable(a)[0]:
                    usable.add(a.id)
            excluded = self.graph.excluded()
            self._swap(members=members, usable=frozenset(usable), excluded=excluded, users=users)

    def reload_users(self) -> None:
        users = self._load_users()
        with self._lock:
            known = self._snap.members
            usable = frozenset(
                a.id for a in self._ready() if a.id in known and self.audiences.usable(a)[0]
            )
            self._swap(usable=usable, excluded=self.graph.excluded(), users=users)

    def _ready(self) -> list[Audience]:
        """Every audience with members to serve, in one query."""
        with self.audiences.db.session() as s:
            return list(
                s.execute(
                    select(Audience).where(
                        Audience.deleted.is_(False), Audience.status == Status.READY.value
                    )
                ).scalars()
            )

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

    def _audience_changed(self, audience_id: int) -> None:
        with self._lock:
            snap = self._snap
            with self.audiences.db.session() as s:
                a = s.get(Audience, audience_id)
            members = dict(snap.members)
            usable = set(snap.usable)
            usable.discard(audience_id)
            gone = a is None or a.deleted or a.status != Status.READY.value
            if gone:
                members.pop(audience_id, None)
            else:
                assert a is not None
                members[audience_id] = self.audiences.latest_members(a)
                if self.audiences.usable(a)[0]:
                    usable.add(audience_id)
            same = (audience_id in usable) == (audience_id in snap.usable)
            if same and not gone and audience_id in snap.plan.columns:
                # New members only (a live rule audience, every second or so): the plan's
                # arrays stay, one bitmap is replaced.
                plan = snap.plan.with_members(audience_id, members[audience_id])
                self._publish(
                    replace(
                        snap, members=members, plan=plan, servable=_servable(members, snap.usable)
                    )
                )
            elif same and not gone:  # no ad group uses it
                self._publish(
                    replace(snap, members=members, servable=_servable(members, snap.usable))
                )
            else:
                self._swap(members=members, usable=frozenset(usable))

    def _excluded_changed(self) -> None:
        """Consent or erasure: users leave (or rejoin) every audience at once. (Whether an
        audience is still large enough is looked at again when it next changes.)"""
        with self._lock:
            self._swap(excluded=self.graph.excluded())
        self._rounds.wake()  # new users (an import) are read in the background

    def _ad_groups_changed(self) -> None:
        with self._lock:
            self._groups = tuple(self.ad_groups.active())
            self._swap()

    def _swap(self, **changes: object) -> None:
        """A new snapshot with ``changes``; the ad groups planned again over its members."""
        snap = self._snap
        members = changes.get("members", snap.members)
        usable = changes.get("usable", snap.usable)
        excluded = changes.get("excluded", snap.excluded)
        users = changes.get("users", snap.users)
        assert isinstance(members, dict) and isinstance(usable, frozenset)
        assert isinstance(excluded, BitMap) and isinstance(users, Users)
        plan = self._plan(self._groups, members, usable, users)
        self._publish(
            Snapshot(
                members, usable, excluded, users, plan, self._groups, _servable(members, usable)
            )
        )

    def _publish(self, snap: Snapshot) -> None:
        """Make ``snap`` the one readers see, with what the index can answer for in it."""
        view = IndexView.of(
            self._index, snap.members, snap.usable, snap.plan.audiences, snap.plan.columns
        )
        self._snap = snap = replace(snap, view=view)
        index = view.index or _NO_INDEX
        self._hot = Contains(view.checks, index.lookup, snap.excluded, snap.servable)

    @staticmethod
    def _plan(
        groups: Sequence[AdGroupView],
        members: dict[int, BitMap],
        usable: frozenset[int],
        users: Users,
    ) -> Plan:
        n = len(groups)
        if not n:
            return Plan.empty()

        # One row per code the users have (labels may repeat "unknown": size by the codes too).
        def rows(labels: dict[str, int], codes: np.ndarray) -> int:
            return max(len(labels), int(codes.max(initial=0)) + 1, 1)

        country_ok = np.zeros((rows(users.countries, users.country), n), bool)
        os_ok = np.zeros((rows(users.os_labels, users.os), n), bool)
        age_ok = np.zeros((7, n), bool)
        gender_ok = np.zeros((rows(users.gender_labels, users.gender), n), bool)
        used = sorted({a for g in groups for a in (*g.included, *g.excluded) if a in members})
        column = {a: j for j, a in enumerate(used)}
        include = np.zeros((n, len(used)), bool)
        exclude = np.zeros((n, len(used)), bool)
        has_include = np.zeros(n, bool)
        for i, g in enumerate(groups):
            t = g.targeting
            if t.countries:
                for iso in t.countries:
                    if iso in users.countries:
                        country_ok[users.countries[iso], i] = True
            else:
                country_ok[:, i] = True
            if t.operating_systems:
                for o in t.operating_systems:
                    if o in users.os_labels:
                        os_ok[users.os_labels[o], i] = True
            else:
                os_ok[:, i] = True
            if t.age_groups:
                for age in t.age_groups:
                    age_ok[AGE_BAND[age], i] = True
            else:
                age_ok[:, i] = True
            wanted = GENDERS[t.gender]
            if wanted is None:
                gender_ok[:, i] = True
            elif wanted in users.gender_labels:
                gender_ok[users.gender_labels[wanted], i] = True
            has_include[i] = bool(g.included)
            # An included audience that is not usable (too small, expired) reaches nobody;
            # an excluded one still excludes its members.
            for a in g.included:
                if a in column and a in usable:
                    include[i, column[a]] = True
            for a in g.excluded:
                if a in column:
                    exclude[i, column[a]] = True
        ids = np.array([g.id for g in groups], np.int64)
        return Plan(
            ids,
            country_ok,
            os_ok,
            age_ok,
            gender_ok,
            [members[a] for a in used],
            include,
            has_include,
            exclude,
            column,
        )


def _servable(members: dict[int, BitMap], usable: frozenset[int]) -> dict[int, BitMap]:
    return {a: b for a, b in members.items() if a in usable}
