"""Seeded platform and advertiser activity driven by latent user interests, with ground truth.

:func:`simulate_activity` draws what users do (the model: :mod:`likewise.sim.behaviour`) and
returns a :class:`SimActivity`: the wire bodies a shop's server, its pixel, an app and the
platform's engagement intake would send (rendered on first use by :mod:`likewise.sim.bodies`),
and the ground truth. The truth is exact by construction: :attr:`SimActivity.events` has one row
per logical event (who did it, when, how a server can resolve it) and :attr:`SimActivity.truth`
aggregates it per advertiser, user and event. Only the sim's own knowledge is used (users'
canonical identifiers from :func:`ground_truth_identifiers`, hashlib), never
``likewise.identity``. :meth:`SimActivity.split` cuts an activity in two at a time (e.g. the past
a server gets and the future it should predict).
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likewise.sim.behaviour import (
    APP_EVENTS,
    CATEGORIES,
    CHANNELS,
    ENGAGEMENT_EVENTS,
    EVENT_NAMES,
    MATCHES,
    MAX_EVENTS_PER_BODY,
    MAX_PIXEL_EVENTS_PER_BODY,
    WEB_FUNNEL,
    SimAdvertiser,
    Stream,
    catalog_prices,
    simulate_streams,
    user_interests,
)

__all__ = [
    "APP_EVENTS",
    "CATEGORIES",
    "CHANNELS",
    "ENGAGEMENT_EVENTS",
    "MATCHES",
    "MAX_EVENTS_PER_BODY",
    "MAX_PIXEL_EVENTS_PER_BODY",
    "WEB_FUNNEL",
    "SimActivity",
    "SimAdvertiser",
    "simulate_activity",
    "user_interests",
]

_DAY = 86400
_CATEGORY_SET = frozenset(CATEGORIES)


def _seconds(value: datetime | float | int, name: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # naive means UTC, as everywhere in Likewise
        return int(value.timestamp())
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite Unix time")
    return int(value)


def _first_second_from(value: datetime | float, name: str) -> int:
    """The first whole second at or after ``value``: event times (whole seconds) are before
    ``value`` exactly when they are before it."""
    if isinstance(value, datetime):
        return _seconds(value.replace(microsecond=0), name) + (value.microsecond > 0)
    _seconds(value, name)  # checks it is finite
    return math.ceil(value)


# Streams of a split activity carry the row number of each event in the stream as simulated (its
# event id is made of it), so that ids stay those of the whole; absent: the row's position.
_ROW = "row"
_PURCHASES = {"web": "CompletePayment", "app": "Purchase", "engagement": "shop_purchase"}


def _numbered(stream: Stream) -> Stream:
    if _ROW in stream.cols:
        return stream
    return Stream(stream.names, {**stream.cols, _ROW: np.arange(len(stream), dtype=np.int64)})


def simulate_activity(
    users: pa.Table,
    advertisers: Sequence[SimAdvertiser],
    *,
    start: datetime | float,
    end: datetime | float,
    seed: int = 0,
    scale: float = 1.0,
    organic: float = 1.0,
    retention_days: int | None = 180,
) -> SimActivity:
    """Activity of ``users`` (a :func:`generate_users` table) with ``advertisers`` between
    ``start`` and ``end`` (datetimes, naive = UTC, or Unix seconds).

    ``scale`` multiplies every volume (events grow about linearly with it), ``organic`` only
    organic content engagement. Event times are whole seconds within [start, end]. With
    ``retention_days`` set, the range must lie within that many days before now and not in the
    future (what a server accepts); the output depends only on the arguments, never on now.
    Same arguments -> identical output.
    """
    t0, t1 = _seconds(start, "start"), _seconds(end, "end")
    if t1 < t0:
        raise ValueError("end is before start")
    if retention_days is not None:
        now = time.time()
        if t0 < now - retention_days * _DAY:
            raise ValueError(f"start is more than {retention_days} days ago")
        if t1 > now + 1:
            raise ValueError("end is in the future")
    if scale < 0 or organic < 0:
        raise ValueError("scale and organic must not be negative")
    advs = tuple(advertisers)
    ids = [a.id for a in advs]
    if len(set(ids)) != len(ids):
        raise ValueError("advertiser ids must be distinct")
    for a in advs:
        if a.category not in _CATEGORY_SET:
            raise ValueError(f"category {a.category!r} is not one of {', '.join(CATEGORIES)}")
        if a.reach < 0:
            raise ValueError("reach must not be negative")

    interests, web, app, engagement = simulate_streams(
        users, advs, t0=t0, t1=t1, seed=seed, scale=scale, organic=organic
    )
    return SimActivity(
        users=users,
        advertisers=advs,
        seed=seed,
        start=t0,
        end=t1,
        interests=interests,
        web=web,
        app=app,
        engagement=engagement,
    )


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class SimActivity:
    """Generated activity, its wire bodies and its ground truth.

    Bodies (lists of dicts ready to JSON-encode, built on first access):

    * :attr:`web_bodies`: ``event/track/`` bodies with ``event_source`` "web" (the shops'
      servers; a few events appear twice, the retried copy being a duplicate);
    * :attr:`pixel_bodies`: ``/pixel/v1/collect`` bodies, the browser copies of part of the
      web events (same ``event_id``: a server merges them);
    * :attr:`app_bodies`: ``event/track/`` bodies with ``event_source`` "app";
    * :attr:`engagement_bodies`: ``POST /admin/v1/engagement/track`` bodies.

    Each holds at most :data:`MAX_EVENTS_PER_BODY` events (the pixel's at most 50), one source
    per body, in time order.

    :meth:`split` cuts it in two at a time; each part is a SimActivity of its own (same users,
    advertisers, seed, interests and prices; its own ``start``/``end``), whose events keep the
    ids they have in the whole.
    """

    users: pa.Table
    advertisers: tuple[SimAdvertiser, ...]
    seed: int
    start: int
    end: int
    interests: np.ndarray  # (users x CATEGORIES), row-aligned with ``users``
    web: Stream
    app: Stream
    engagement: Stream
    prices: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", catalog_prices(self.advertisers, self.seed))

    # --- ground truth -------------------------------------------------------------------------

    def web_match(self) -> np.ndarray:
        """Index into :data:`MATCHES` of each web event (keys of all its copies together)."""
        c = self.web.cols
        graph = c["email"] | c["phone"]
        # The server learns a _ttp (one per user and shop) from any identified, usable event
        # carrying it; every server copy carries it.
        pair = c["user"] * max(len(self.advertisers), 1) + c["adv"]
        linked = np.isin(pair, pair[graph & ~c["limited"]])
        return np.where(graph, 0, np.where(linked, 1, np.where(c["click"] >= 0, 2, 4)))

    def app_match(self) -> np.ndarray:
        c = self.app.cols
        # Android sends the GAID; iOS the IDFA only when ATT is AUTHORIZED.
        device = (c["att"] == 0) | (c["att"] == 1)
        return np.where(device | c["email"], 0, 4)

    def app_limited(self) -> np.ndarray:
        return np.asarray(self.app.cols["att"] == 2)  # DENIED

    @cached_property
    def _flat(self) -> dict[str, np.ndarray]:
        """Every logical event of every stream as one set of numpy columns: ``channel`` (index
        into :data:`CHANNELS`), ``adv``, ``user``, ``event`` (index into :data:`EVENT_NAMES`),
        ``t``, ``match``, ``limited``, ``pixel``, ``retry``."""
        web, app, eng = self.web.cols, self.app.cols, self.engagement.cols
        no = np.zeros(len(self.app) + len(self.engagement), dtype=bool)
        return {
            "channel": np.repeat(
                np.arange(3, dtype=np.int8), [len(self.web), len(self.app), len(self.engagement)]
            ),
            "adv": np.concatenate([web["adv"], app["adv"], eng["adv"]]),
            "user": np.concatenate([web["user"], app["user"], eng["user"]]),
            "event": np.concatenate(
                [
                    web["code"].astype(np.int16),
                    app["code"].astype(np.int16) + len(WEB_FUNNEL),
                    eng["code"].astype(np.int16) + len(WEB_FUNNEL) + len(APP_EVENTS),
                ]
            ),
            "t": np.concatenate([web["t"], app["t"], eng["t"]]),
            "match": np.concatenate(
                [self.web_match(), self.app_match(), np.full(len(self.engagement), 3)]
            ).astype(np.int8),
            "limited": np.concatenate(
                [web["limited"], self.app_limited(), np.zeros(len(self.engagement), bool)]
            ),
            "pixel": np.concatenate([web["pixel"], no]),
            "retry": np.concatenate([web["retry"], no]),
        }

    def _strings(self, f: dict[str, np.ndarray], rows: np.ndarray | None = None) -> dict[str, Any]:
        """The key columns of ``f`` (at ``rows``) as Arrow strings."""
        pick = (lambda x: x) if rows is None else (lambda x: x[rows])
        adv = pick(f["adv"])
        ids = pa.array([a.id for a in self.advertisers] or [""], pa.string())
        users = pa.array(pick(f["user"]))
        return {
            "advertiser_id": ids.take(pa.array(np.where(adv < 0, 0, adv), mask=adv < 0)),
            "user_id": self.users.column("user_id").take(users),
            "channel": pa.array(CHANNELS).take(pa.array(pick(f["channel"]))),
            "event": pa.array(EVENT_NAMES).take(pa.array(pick(f["event"]))),
            "match": pa.array(MATCHES).take(pa.array(pick(f["match"]))),
            "limited": pa.array(pick(f["limited"])),
            "personalized_ads": self.users.column("personalized_ads").take(users),
        }

    @cached_property
    def events(self) -> pa.Table:
        """One row per logical event: ``event_id``, ``advertiser_id`` (null for organic
        engagement), ``user_id``, ``channel`` (web, app, engagement), ``event``, ``match``
        (:data:`MATCHES`), ``limited``, the user's ``personalized_ads``, ``event_time`` (Unix
        seconds), ``pixel_copy`` (a browser copy was sent too), ``retried`` (the server copy was
        sent twice)."""
        f = self._flat
        ids = pa.concat_arrays([self.event_ids_of(channel) for channel in CHANNELS])
        return pa.table(
            {
                "event_id": ids,
                **self._strings(f),
                "event_time": pa.array(f["t"]),
                "pixel_copy": pa.array(f["pixel"]),
                "retried": pa.array(f["retry"]),
            }
        )

    @cached_property
    def truth(self) -> pa.Table:
        """Per ``advertiser_id`` (null: organic), ``user_id``, ``channel``, ``event``,
        ``match`` and ``limited`` (with the user's ``personalized_ads``): ``count``,
        ``first_time`` and ``last_time`` (Unix seconds), and ``identified`` (``match`` is not
        "none"). Ordered by advertiser (organic first), then user row, channel, event."""
        f = self._flat
        keys = ("adv", "user", "channel", "event", "match", "limited")
        order = np.lexsort(tuple(f[k] for k in reversed(keys)))
        m = len(order)
        change = np.zeros(m, dtype=bool)
        if m:
            change[0] = True
        for k in keys:
            v = f[k][order]
            change[1:] |= v[1:] != v[:-1]
        starts = np.flatnonzero(change)
        t = f["t"][order]
        first = np.minimum.reduceat(t, starts) if m else t
        last = np.maximum.reduceat(t, starts) if m else t
        strings = self._strings(f, order[starts])
        return pa.table(
            {
                **strings,
                "count": pa.array(np.diff(np.append(starts, m)), pa.int64()),
                "first_time": pa.array(first, pa.int64()),
                "last_time": pa.array(last, pa.int64()),
                "identified": pc.not_equal(strings["match"], "none"),
            }
        )

    def users_who(
        self,
        advertiser_id: str | None,
        events: str | Collection[str],
        *,
        since: float | None = None,
        matches: Collection[str] = ("graph", "link", "user_id"),
        include_limited: bool = False,
        consented_only: bool = False,
    ) -> set[str]:
        """Users who did any of ``events`` for the advertiser (None: organic), at or after
        ``since`` if given, through events a server can tie to them (``matches``) and that may
        build audiences (not limited, unless ``include_limited``); with ``consented_only``,
        only users who allow personalised ads (what an audience may contain)."""
        names = [events] if isinstance(events, str) else list(events)
        t = self.truth
        adv = t.column("advertiser_id")
        mask = pc.is_null(adv) if advertiser_id is None else pc.equal(adv, advertiser_id)
        mask = pc.and_(pc.fill_null(mask, False), pc.is_in(t.column("event"), pa.array(names)))
        mask = pc.and_(mask, pc.is_in(t.column("match"), pa.array(list(matches), pa.string())))
        if since is not None:
            mask = pc.and_(mask, pc.greater_equal(t.column("last_time"), int(np.ceil(since))))
        if not include_limited:
            mask = pc.and_(mask, pc.invert(t.column("limited")))
        if consented_only:
            mask = pc.and_(mask, t.column("personalized_ads"))
        return set(t.filter(mask).column("user_id").to_pylist())

    def purchasers(self, advertiser_id: str) -> np.ndarray:
        """Sorted row indices (into ``users``) of everyone who bought from the advertiser in this
        activity: web CompletePayment, app Purchase or shop_purchase in the platform's shop,
        whether or not a server could resolve or use the event (ground truth; for what an
        audience may contain see :meth:`users_who`)."""
        j = self._advertiser(advertiser_id)
        rows = []
        for stream, event in zip(self._streams, _PURCHASES.values(), strict=True):
            c = stream.cols
            rows.append(c["user"][(c["adv"] == j) & (c["code"] == stream.names.index(event))])
        return np.unique(np.concatenate(rows)).astype(np.int64)

    def _advertiser(self, advertiser_id: str) -> int:
        ids = [a.id for a in self.advertisers]
        if advertiser_id not in ids:
            raise ValueError(f"advertiser {advertiser_id!r} is not in the simulation")
        return ids.index(advertiser_id)

    @property
    def _streams(self) -> tuple[Stream, Stream, Stream]:
        """The streams in :data:`CHANNELS` order."""
        return self.web, self.app, self.engagement

    def event_ids_of(self, channel: str) -> pa.Array:
        """The ``event_id`` of each row of the channel's stream (one of :data:`CHANNELS`): the
        same in the activity as simulated and in any part :meth:`split` cuts from it."""
        stream = self._streams[CHANNELS.index(channel)]
        rows = stream.cols.get(_ROW)
        return event_ids(self.seed, channel[0], len(stream) if rows is None else rows)

    # --- parts in time --------------------------------------------------------------------

    def split(self, at: datetime | float) -> tuple[SimActivity, SimActivity]:
        """``(before, after)``: the activity strictly before ``at`` (a datetime, naive = UTC, or
        Unix seconds) and the activity at or after it, each a SimActivity of the same users,
        advertisers, seed, interests and prices with ``start``/``end`` its own range (an empty
        part, when ``at`` is outside [start, end], has ``end = start - 1``).

        Each event keeps its ``event_id``, and both parts together have exactly the events of the
        whole. Everything else is computed from the part alone, as for a server that got only
        its bodies: an ad click and its shop landing may fall in different parts (the landing
        still carries the click's ttclid), and a web event matched only through a ``_ttp`` that
        an event of the other part identified has ``match`` "click" or "none" there, not "link".
        """
        cut = min(max(_first_second_from(at, "at"), self.start), self.end + 1)
        streams = [_numbered(s) for s in self._streams]
        before = [s.take(np.flatnonzero(s.cols["t"] < cut)) for s in streams]
        after = [s.take(np.flatnonzero(s.cols["t"] >= cut)) for s in streams]
        return self._part(before, self.start, cut - 1), self._part(after, cut, self.end)

    def _part(self, streams: list[Stream], start: int, end: int) -> SimActivity:
        # A new instance: the cached ground truth and bodies are computed per part.
        web, app, engagement = streams
        return SimActivity(
            users=self.users,
            advertisers=self.advertisers,
            seed=self.seed,
            start=start,
            end=end,
            interests=self.interests,
            web=web,
            app=app,
            engagement=engagement,
        )

    # --- what a server should report ------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Events sent per body kind (``web`` counts retried copies, ``pixel`` the browser
        copies)."""
        w = self.web.cols
        return {
            "web": len(self.web) + int(w["retry"].sum()),
            "pixel": int(w["pixel"].sum()),
            "app": len(self.app),
            "engagement": len(self.engagement),
        }

    def expected(self, advertiser_id: str) -> dict[str, Any]:
        """What a server that got every body (web before pixel) reports for one advertiser:
        per source (``web``: the pixel, ``app``) the ``pixel/event/stats/`` totals, and how
        many of its web and app events resolve to their user (``resolved``; ``click_only``
        more if the server also resolves clicks)."""
        j = self._advertiser(advertiser_id)
        w, a = self.web.cols, self.app.cols
        on_w, on_a = w["adv"] == j, a["adv"] == j
        retries, copies = int((w["retry"] & on_w).sum()), int((w["pixel"] & on_w).sum())
        wm, am = self.web_match(), self.app_match()
        usable_w = on_w & ~w["limited"]
        usable_a = on_a & ~self.app_limited()
        return {
            "web": {
                "received": int(on_w.sum()) + retries + copies,
                "deduplicated": retries,
                "merged": copies,
                "limited": int((w["limited"] & on_w).sum()),
            },
            "app": {
                "received": int(on_a.sum()),
                "deduplicated": 0,
                "merged": 0,
                "limited": int((self.app_limited() & on_a).sum()),
            },
            "resolved": int((usable_w & (wm <= 1)).sum() + (usable_a & (am <= 1)).sum()),
            "click_only": int((usable_w & (wm == 2)).sum()),
        }

    # --- wire bodies --------------------------------------------------------------------------

    def bodies(self, kind: str) -> Iterator[dict[str, Any]]:
        """Bodies of one kind (``web``, ``pixel``, ``app``, ``engagement``), rendered a block at
        a time: what a replay should stream rather than hold (see the list properties)."""
        from likewise.sim import bodies

        render = {
            "web": bodies.web_bodies,
            "pixel": bodies.pixel_bodies,
            "app": bodies.app_bodies,
            "engagement": bodies.engagement_bodies,
        }
        if kind not in render:
            raise ValueError(f"kind must be one of {', '.join(render)}")
        return render[kind](self)

    @cached_property
    def web_bodies(self) -> list[dict[str, Any]]:
        return list(self.bodies("web"))

    @cached_property
    def pixel_bodies(self) -> list[dict[str, Any]]:
        return list(self.bodies("pixel"))

    @cached_property
    def app_bodies(self) -> list[dict[str, Any]]:
        return list(self.bodies("app"))

    @cached_property
    def engagement_bodies(self) -> list[dict[str, Any]]:
        return list(self.bodies("engagement"))


def event_ids(seed: int, prefix: str, rows: int | np.ndarray) -> pa.Array:
    """``sim<seed>-<prefix><row>`` for rows ``0..rows-1`` (an int) or the given row numbers:
    unique per stream and seed, the same whatever the times."""
    if np.ndim(rows) == 0:
        rows = np.arange(int(rows), dtype=np.int64)
    text = pc.cast(pa.array(np.asarray(rows, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(f"sim{seed}-{prefix}", text, "")
