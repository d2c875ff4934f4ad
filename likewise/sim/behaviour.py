"""The behaviour model behind :func:`likewise.sim.simulate_activity`: who does what, when.

Every user gets a latent interest vector over :data:`CATEGORIES` (a Dirichlet draw, tilted a
little by age and gender so that demographics carry signal, as they do on real platforms) and an
activity level. Everything a user does follows from those two:

* **web shops** (advertisers with a pixel): sessions arrive at a rate that grows with the user's
  interest in the advertiser's category, and each session walks the funnel Pageview →
  ViewContent → AddToCart → CompletePayment, where every step's conversion also grows with
  interest; some sessions start from an ad click and carry its ``ttclid``;
* **apps**: InstallApp, then LaunchAPP and in-app Purchase, keyed by IDFA/GAID and ATT status;
* **platform engagement**: ad impressions, plays and clicks (a click leads to a shop session or
  a lead form), lead forms, the advertiser's account (visits, follows, likes, comments, shares,
  LIVE) and shop, and organic engagement with creators whose category the user likes.

Counts and choices are drawn column-wise with numpy, one generator per part of the model, into
:class:`Stream`s (one row per event, integer codes); rendering them as wire bodies is
:mod:`likewise.sim.bodies`' job, and the ground truth :class:`likewise.sim.SimActivity`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "APP_EVENTS",
    "CATEGORIES",
    "CHANNELS",
    "ENGAGEMENT_EVENTS",
    "EVENT_NAMES",
    "MATCHES",
    "MAX_EVENTS_PER_BODY",
    "MAX_PIXEL_EVENTS_PER_BODY",
    "WEB_FUNNEL",
    "SimAdvertiser",
    "Stream",
    "catalog_prices",
    "simulate_streams",
    "user_interests",
]

CATEGORIES: tuple[str, ...] = (
    "fashion", "electronics", "games", "beauty", "travel",
    "food", "sports", "music", "pets", "home",
)  # fmt: skip
WEB_FUNNEL: tuple[str, ...] = ("Pageview", "ViewContent", "AddToCart", "CompletePayment")
APP_EVENTS: tuple[str, ...] = ("InstallApp", "LaunchAPP", "Purchase")
ENGAGEMENT_EVENTS: tuple[str, ...] = (
    "ad_impression", "ad_click", "video_play", "like", "comment", "share", "follow",
    "profile_visit", "live_view", "lead_form_view", "lead_form_submit",
    "shop_product_view", "shop_add_to_cart", "shop_purchase",
)  # fmt: skip
# How a server can tie an event to its user: "graph" (a hashed e-mail, phone or device id of the
# user), "link" (only a ``_ttp`` browser id that an identified event of the same advertiser also
# carried), "click" (only the ``ttclid`` of the user's ad click), "user_id" (platform engagement
# names the user), "none" (anonymous for good).
MATCHES: tuple[str, ...] = ("graph", "link", "click", "user_id", "none")
CHANNELS: tuple[str, ...] = ("web", "app", "engagement")
EVENT_NAMES: tuple[str, ...] = WEB_FUNNEL + APP_EVENTS + ENGAGEMENT_EVENTS
MAX_EVENTS_PER_BODY = 1000  # Events API 2.0 and the engagement intake
MAX_PIXEL_EVENTS_PER_BODY = 50  # what one page of the Likewise pixel sends

_K = len(CATEGORIES)
_CAT = {c: i for i, c in enumerate(CATEGORIES)}
_DAY = 86400
_MONTH = 30 * _DAY

# Mean list price per category (USD); prices vary ±60% around it.
_PRICE = (45.0, 160.0, 15.0, 28.0, 320.0, 22.0, 60.0, 18.0, 30.0, 70.0)
_CATALOG = 40  # products per advertiser
_ADS = 8  # per advertiser: 2 campaigns x 2 ad groups x 2 ads
_POSTS = 30  # videos on an advertiser's account
_CREATORS = 600  # organic creators (fixed, so a category's creators do not depend on n)
_VIDEOS = 50  # per creator

# Latent interests: small Dirichlet concentration, so most users care about a few categories.
_ALPHA = 0.35
_ACTIVITY_SIGMA = 0.7  # log-normal spread of how much users use the platform (mean 1)

# Rates per user per advertiser per 30 days, at average interest, activity and reach, scale 1.
_VISITS = 0.12  # shop sessions not started by an ad click
_IMPRESSIONS = 1.0
_PROFILE_VISITS = 0.06
_POST_LIKES = 0.15
_LIVE_VIEWS = 0.03
_SHOP_VIEWS = 0.08
_INSTALLS = 0.03
# Organic engagement per user per 30 days at average activity, scale 1 and organic 1.
_PLAYS = 6.0
_ORGANIC_LIVES = 0.3

# Web behaviour.
_LOGIN = 0.30  # sessions where the shopper is logged in (e-mail known to the shop)
_LIMITED = 0.03  # sessions sent with limited_data_use (e.g. a state privacy law applies)
_NO_PIXEL = 0.35  # sessions whose browser blocks the pixel (ad blockers): server copy only
_RETRY = 0.02  # server events sent twice (a retried request): the second copy is a duplicate
_LANDING = 0.8  # ad clicks that reach the shop before the visitor leaves
_LEAD_SHARE = 0.3  # clicks that open the advertiser's lead form instead, when it has both
# Apps: ATT answers of iOS users (IDFA is only readable when AUTHORIZED).
_ATT = (("AUTHORIZED", 0.65), ("DENIED", 0.25), ("NOT_DETERMINED", 0.10))


@dataclass(frozen=True)
class SimAdvertiser:
    """One advertiser of the simulation.

    ``id`` is the ``advertiser_id`` engagement events carry; ``pixel_code``, ``app_id`` (both
    the ``event_source_id`` and ``app.app_id`` of its app events) and ``lead_form_id`` enable
    web, app and lead activity (``None``: it has none). ``category`` is one of
    :data:`CATEGORIES`; ``reach`` scales all of its volumes; ``shop`` adds an in-platform shop.
    """

    id: str
    category: str
    pixel_code: str | None = None
    app_id: str | None = None
    lead_form_id: str | None = None
    account_id: str | None = None  # its platform account; default "acct-<id>"
    domain: str | None = None  # its website; default "shop-<id>.example"
    shop: bool = True
    reach: float = 1.0

    @property
    def account(self) -> str:
        return self.account_id or f"acct-{self.id}"

    @property
    def site(self) -> str:
        return self.domain or f"shop-{self.id}.example"


# --------------------------------------------------------------------------- columnar streams


@dataclass
class Stream:
    """Events of one kind as columns (``cols``: name -> numpy array, all the same length).

    Every stream has ``user`` (row into the users table), ``adv`` (index into the advertisers,
    -1 for organic), ``code`` (index into the stream's event names) and ``t`` (Unix seconds).
    """

    names: tuple[str, ...]
    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.cols["t"])

    def take(self, index: np.ndarray) -> Stream:
        return Stream(self.names, {k: v[index] for k, v in self.cols.items()})


# Engagement columns and their "absent" value; an event uses those its kind needs.
_ENG_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "ad": (np.int32, -1),  # ad index within the advertiser
    "click": (np.int64, -1),  # click number: the ttclid
    "creator": (np.int32, -1),  # organic creator
    "video": (np.int32, -1),  # video of the creator, of the ad (ad index) or of the account
    "category": (np.int8, -1),
    "account": (np.int8, 0),  # 1: the advertiser's account, 2: the creator's
    "live": (np.int32, -1),  # day number of the LIVE
    "form": (np.bool_, False),
    "product": (np.int32, -1),
    "qty": (np.int16, 0),
    "watched": (np.float64, np.nan),
    "duration": (np.float64, np.nan),
}


def _eng(user: np.ndarray, adv: np.ndarray | int, event: str, t: np.ndarray, **cols: Any) -> Stream:
    """Engagement rows of one kind; ``cols`` are :data:`_ENG_DEFAULTS` columns (scalars
    broadcast), the others take their absent value."""
    m = len(t)
    code = np.full(m, ENGAGEMENT_EVENTS.index(event), np.int8)
    out = {
        "user": np.asarray(user, np.int64),
        "adv": np.broadcast_to(np.asarray(adv, np.int64), (m,)).copy(),
        "code": code,
        "t": np.asarray(t, np.int64),
    }
    for name, (dtype, absent) in _ENG_DEFAULTS.items():
        value = cols.pop(name, absent)
        out[name] = np.broadcast_to(np.asarray(value, dtype), (m,)).copy()
    if cols:
        raise TypeError(f"unknown engagement columns {sorted(cols)}")
    return Stream(ENGAGEMENT_EVENTS, out)


def _concat(streams: Sequence[Stream]) -> Stream:
    names = streams[0].names
    return Stream(names, {k: np.concatenate([s.cols[k] for s in streams]) for k in streams[0].cols})


# --------------------------------------------------------------------------- the model


def _rng(seed: int, stream: int) -> np.random.Generator:
    """One independent generator per part of the model: changing how one part draws leaves the
    others' output alone."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0xAC71, stream]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _pairs(lam: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts over a (users x advertisers) rate matrix, as one row per occurrence:
    ``(user, column)``, ordered by user then column."""
    k = rng.poisson(lam)
    u, a = np.nonzero(k)
    reps = k[u, a]
    return np.repeat(u, reps), np.repeat(a, reps)


def user_interests(users: pa.Table, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(interests, activity)`` of the users, row-aligned: ``interests`` is (n, K) float32
    with rows summing to 1 over :data:`CATEGORIES`; ``activity`` (mean 1) scales everything a
    user does on the platform. Same users and seed -> same arrays."""
    n = users.num_rows
    rng = _rng(seed, 1)
    alpha = np.full((n, _K), _ALPHA)
    names = set(users.column_names)
    if "age" in names:
        age = pc.fill_null(users.column("age"), 30).to_numpy().astype(np.float64)
        alpha[:, _CAT["games"]] *= np.where(age < 25, 2.0, 1.0)
        alpha[:, _CAT["travel"]] *= np.where(age >= 30, 1.8, 1.0)
        alpha[:, _CAT["home"]] *= np.where(age >= 35, 1.8, 1.0)
    if "gender" in names:
        gender = pc.fill_null(users.column("gender"), "").to_numpy(zero_copy_only=False)
        alpha[:, _CAT["beauty"]] *= np.where(gender == "female", 2.5, 1.0)
        alpha[:, _CAT["electronics"]] *= np.where(gender == "male", 1.6, 1.0)
        alpha[:, _CAT["sports"]] *= np.where(gender == "male", 1.5, 1.0)
    g = rng.standard_gamma(alpha) + 1e-9  # + tiny: a row of underflowed zeros stays defined
    interests = (g / g.sum(axis=1, keepdims=True)).astype(np.float32)
    s = _ACTIVITY_SIGMA
    activity = rng.lognormal(-s * s / 2, s, n)
    return interests, activity


@dataclass
class _World:
    """What every part of the model reads."""

    users: pa.Table
    advertisers: tuple[SimAdvertiser, ...]
    seed: int
    scale: float
    organic: float
    t0: int
    t1: int
    interests: np.ndarray
    activity: np.ndarray
    # (n, A): interest in each advertiser's category, relative to the mean (1 = average)
    affinity: np.ndarray
    reach: np.ndarray
    has_email: np.ndarray
    has_phone: np.ndarray
    ios: np.ndarray  # the user's device id is an IDFA
    has_device: np.ndarray

    @property
    def months(self) -> float:
        return (self.t1 - self.t0) / _MONTH

    def rate(self, per_month: float, interest: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(n, len(cols)) expected counts over the period for advertisers ``cols``."""
        base = self.scale * per_month * self.months * self.reach[cols]
        return self.activity[:, None] * base[None, :] * interest

    def times(self, rng: np.random.Generator, m: int) -> np.ndarray:
        return rng.integers(self.t0, self.t1 + 1, size=m, dtype=np.int64)

    def clip(self, t: np.ndarray) -> np.ndarray:
        return np.minimum(t, self.t1)


def simulate_streams(
    users: pa.Table,
    advs: tuple[SimAdvertiser, ...],
    *,
    t0: int,
    t1: int,
    seed: int,
    scale: float,
    organic: float,
) -> tuple[np.ndarray, Stream, Stream, Stream]:
    """``(interests, web, app, engagement)`` of ``users`` with ``advs`` over [t0, t1] (checked
    arguments: see :func:`likewise.sim.simulate_activity`)."""
    interests, activity = user_interests(users, seed=seed)
    cats = np.array([_CAT[a.category] for a in advs], dtype=np.int64)
    idfa = users.column("idfa").is_valid().to_numpy(zero_copy_only=False)
    gaid = users.column("gaid").is_valid().to_numpy(zero_copy_only=False)
    world = _World(
        users=users,
        advertisers=advs,
        seed=seed,
        scale=scale,
        organic=organic,
        t0=t0,
        t1=t1,
        interests=interests,
        activity=activity,
        affinity=interests[:, cats].astype(np.float64) * _K,
        reach=np.array([a.reach for a in advs], dtype=np.float64),
        has_email=users.column("email").is_valid().to_numpy(zero_copy_only=False),
        has_phone=users.column("phone").is_valid().to_numpy(zero_copy_only=False),
        ios=idfa,
        has_device=idfa | gaid,
    )
    ads, clicks = _ads(world, _rng(seed, 2))
    leads, landings = _clicks(world, clicks, _rng(seed, 3))
    web = _web(world, landings, _rng(seed, 4))
    app = _app(world, _rng(seed, 5))
    engagement = _concat(
        [
            ads,
            leads,
            _accounts(world, _rng(seed, 6)),
            _shop(world, _rng(seed, 7)),
            _organic(world, _rng(seed, 8)),
        ]
    )
    return interests, web, app, engagement


# --- ads ----------------------------------------------------------------------------------


def _ads(w: _World, rng: np.random.Generator) -> tuple[Stream, Stream]:
    """Impressions of each advertiser's ads (targeting leans on interest), plays of the ad's
    video, and clicks (likelier with interest). Returns the engagement and the clicks."""
    cols = np.arange(len(w.advertisers))
    if len(cols) == 0:
        empty = _eng(np.zeros(0), np.zeros(0), "ad_impression", np.zeros(0))
        return empty, empty
    user, adv = _pairs(w.rate(_IMPRESSIONS, 0.3 + 0.7 * w.affinity, cols), rng)
    m = len(user)
    t = w.times(rng, m)
    ad = rng.integers(0, _ADS, size=m).astype(np.int32)
    aff = w.affinity[user, adv]
    impressions = _eng(user, adv, "ad_impression", t, ad=ad)
    played = rng.random(m) < 0.35
    duration = (15 + 5 * ad).astype(np.float64)  # an ad's video has one length
    frac = rng.beta(1.0 + aff, 2.0)
    plays = _eng(
        user[played],
        adv[played],
        "video_play",
        w.clip(t[played] + 1),
        ad=ad[played],
        video=ad[played],
        watched=np.round((frac * duration)[played], 1),
        duration=duration[played],
    )
    clicked = rng.random(m) < _sigmoid(-4.2 + 0.9 * np.log(np.maximum(aff, 1e-3)))
    n_click = int(clicked.sum())
    click_t = w.clip(t[clicked] + rng.integers(2, 30, size=n_click))
    clicks = _eng(
        user[clicked],
        adv[clicked],
        "ad_click",
        click_t,
        ad=ad[clicked],
        click=np.arange(n_click, dtype=np.int64),
    )
    return _concat([impressions, plays, clicks]), clicks


def _clicks(w: _World, clicks: Stream, rng: np.random.Generator) -> tuple[Stream, Stream]:
    """Where clicks lead: the advertiser's lead form (view, then a submit likelier with
    interest) or its shop (a landing session carrying the ttclid). Returns the lead-form
    engagement and the landing clicks."""
    c = clicks.cols
    m = len(clicks)
    has_pixel = np.array([a.pixel_code is not None for a in w.advertisers], dtype=bool)[c["adv"]]
    has_form = np.array([a.lead_form_id is not None for a in w.advertisers], dtype=bool)[c["adv"]]
    r = rng.random(m)
    to_form = has_form & (~has_pixel | (r < _LEAD_SHARE))
    to_shop = has_pixel & ~to_form & (rng.random(m) < _LANDING)
    fu, fa, ft = c["user"][to_form], c["adv"][to_form], c["t"][to_form]
    view_t = w.clip(ft + rng.integers(1, 5, size=len(ft)))
    aff = w.affinity[fu, fa]
    submit = rng.random(len(fu)) < _sigmoid(-0.6 + 0.8 * np.log(np.maximum(aff, 1e-3)))
    submit_t = w.clip(view_t + rng.integers(20, 180, size=len(ft)))
    leads = _concat(
        [
            _eng(fu, fa, "lead_form_view", view_t, ad=c["ad"][to_form], form=True),
            _eng(
                fu[submit],
                fa[submit],
                "lead_form_submit",
                submit_t[submit],
                ad=c["ad"][to_form][submit],
                form=True,
            ),
        ]
    )
    return leads, clicks.take(np.flatnonzero(to_shop))


# --- web shops ----------------------------------------------------------------------------


def _web(w: _World, landings: Stream, rng: np.random.Generator) -> Stream:
    """Shop sessions (direct visits and ad landings) walking the funnel, one row per event."""
    cols = np.array([j for j, a in enumerate(w.advertisers) if a.pixel_code], dtype=np.int64)
    if len(cols):
        su, sj = _pairs(w.rate(_VISITS, 0.1 + w.affinity[:, cols], cols), rng)
        sa = cols[sj]
    else:
        su = sa = np.zeros(0, np.int64)
    st = w.times(rng, len(su))
    lc = landings.cols
    # Sessions: direct ones, then landings (a few seconds after their click).
    user = np.concatenate([su, lc["user"]])
    adv = np.concatenate([sa, lc["adv"]])
    start = np.concatenate([st, w.clip(lc["t"] + rng.integers(2, 20, size=len(landings)))])
    click = np.concatenate([np.full(len(su), -1, np.int64), lc["click"]])
    n_s = len(user)
    aff = np.log(np.maximum(w.affinity[user, adv], 1e-3))
    login = rng.random(n_s) < _LOGIN
    limited = rng.random(n_s) < _LIMITED
    pixel = ~limited & (rng.random(n_s) >= _NO_PIXEL)  # the pixel cannot send limited_data_use
    has_vc = rng.random(n_s) < _sigmoid(0.3 + 0.6 * aff)
    n_vc = has_vc * (1 + rng.poisson(0.6, n_s))
    atc = has_vc & (rng.random(n_s) < _sigmoid(-1.2 + 0.7 * aff))
    buy = atc & (rng.random(n_s) < _sigmoid(-0.6 + 0.7 * aff))
    main = rng.integers(0, _CATALOG, size=n_s).astype(np.int32)
    qty = (1 + rng.poisson(0.4, n_s)).astype(np.int16)

    per = 1 + n_vc + atc + buy
    session = np.repeat(np.arange(n_s), per)
    m = len(session)
    first = np.cumsum(per) - per
    pos = np.arange(m) - first[session]
    nv = n_vc[session]
    code = np.where(pos == 0, 0, np.where(pos <= nv, 1, np.where(pos == nv + 1, 2, 3)))
    gaps = np.where(pos == 0, 0, rng.exponential(45.0, m).astype(np.int64) + 1)
    offset = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], per)
    t = w.clip(start[session] + offset)
    product = np.where(code == 1, rng.integers(0, _CATALOG, size=m), main[session])
    # The first product viewed is the one later put in the cart.
    product = np.where((code == 1) & (pos == 1), main[session], product).astype(np.int32)
    u = user[session]
    is_buy = code == 3
    logged = login[session]
    r1, r2, r3 = rng.random(m), rng.random(m), rng.random(m)
    # An order always knows the buyer's e-mail (most send it) and often the phone.
    email = w.has_email[u] & (logged | (is_buy & (r1 < 0.95)))
    phone = w.has_phone[u] & ((logged & (r2 < 0.3)) | (is_buy & (r2 < 0.7)))
    external = logged & (r3 < 0.6)
    retry = rng.random(m) < _RETRY
    return Stream(
        WEB_FUNNEL,
        {
            "user": u,
            "adv": adv[session],
            "code": code.astype(np.int8),
            "t": t,
            "session": session,
            "product": product,
            "qty": np.where(code >= 2, qty[session], 1).astype(np.int16),
            "email": email,
            "phone": phone,
            "external": external,
            "login": logged,  # the browser pixel knows the e-mail too (ttq.identify)
            "click": click[session],
            "limited": limited[session],
            "pixel": pixel[session],
            "retry": retry,
        },
    )


# --- apps ---------------------------------------------------------------------------------


def _app(w: _World, rng: np.random.Generator) -> Stream:
    """Installs (by users with a device id), then launches and in-app purchases until the end;
    games get installed, opened and paid in more."""
    cols = np.array([j for j, a in enumerate(w.advertisers) if a.app_id], dtype=np.int64)
    boost = np.array([3.0 if w.advertisers[j].category == "games" else 1.0 for j in cols])
    lam = w.rate(_INSTALLS, (0.1 + w.affinity[:, cols]) * boost, cols) * w.has_device[:, None]
    iu, ij = np.nonzero(rng.random(lam.shape) < -np.expm1(-lam))
    n_i = len(iu)
    it = w.times(rng, n_i)
    att_p = [p for _, p in _ATT]
    # 0: Android (no ATT prompt); then the index into _ATT plus one.
    att = np.where(w.ios[iu], 1 + rng.choice(len(_ATT), size=n_i, p=att_p), 0).astype(np.int8)
    hashed = rng.random(n_i) < 0.3  # SDKs that send the device id as SHA-256
    login = w.has_email[iu] & (rng.random(n_i) < 0.4)
    aff = w.affinity[iu, cols[ij]]
    launches = rng.poisson(0.1 * (0.5 + np.minimum(aff, 5.0)) * (w.t1 - it) / _DAY)
    per = 1 + launches
    inst = np.repeat(np.arange(n_i), per)
    m = len(inst)
    pos = np.arange(m) - (np.cumsum(per) - per)[inst]
    t = np.where(pos == 0, it[inst], rng.integers(it[inst], w.t1 + 1))
    p_buy = np.minimum(0.03 * (0.5 + aff[inst]) * boost[ij][inst], 0.5)
    buys = np.flatnonzero((pos > 0) & (rng.random(m) < p_buy))
    # A purchase follows its launch by a minute or so: one more row per buying launch.
    rows = np.concatenate([np.arange(m), buys])
    src = inst[rows]
    code = np.concatenate([np.where(pos == 0, 0, 1), np.full(len(buys), 2)])
    tt = np.concatenate([t, w.clip(t[buys] + rng.integers(10, 120, size=len(buys)))])
    return Stream(
        APP_EVENTS,
        {
            "user": iu[src].astype(np.int64),
            "adv": cols[ij][src],
            "code": code.astype(np.int8),
            "t": tt.astype(np.int64),
            "att": att[src],
            "hashed": hashed[src],
            "email": login[src],
            "product": rng.integers(0, _CATALOG, size=len(rows)).astype(np.int32),
        },
    )


# --- the advertiser's account and shop on the platform --------------------------------------


def _first_of_pair(user: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """True on the first row of each (user, advertiser) run (:func:`_pairs` orders them)."""
    first = np.ones(len(user), dtype=bool)
    first[1:] = (user[1:] != user[:-1]) | (adv[1:] != adv[:-1])
    return first


def _accounts(w: _World, rng: np.random.Generator) -> Stream:
    """Visits to the advertiser's account (the first may end in a follow), plays of its
    videos with likes, comments and shares, and views of its LIVEs."""
    cols = np.arange(len(w.advertisers))
    parts: list[Stream] = []
    u, a = _pairs(w.rate(_PROFILE_VISITS, 0.2 + w.affinity, cols), rng)
    t = w.times(rng, len(u))
    parts.append(_eng(u, a, "profile_visit", t, account=1))
    follow = _first_of_pair(u, a) & (rng.random(len(u)) < 0.3)
    ft = w.clip(t[follow] + rng.integers(1, 30, size=int(follow.sum())))
    parts.append(_eng(u[follow], a[follow], "follow", ft, account=1))

    u, a = _pairs(w.rate(_POST_LIKES, 0.2 + w.affinity, cols), rng)
    m = len(u)
    t = w.times(rng, m)
    video = rng.integers(0, _POSTS, size=m).astype(np.int32)
    duration = (10 + (video * 7) % 50).astype(np.float64)
    frac = rng.beta(1.0 + np.minimum(w.affinity[u, a], 5.0), 1.5)
    watched = np.round(frac * duration, 1)
    cat = np.array([_CAT[x.category] for x in w.advertisers], dtype=np.int8)[a]
    common = {"video": video, "category": cat, "account": 1}
    parts.append(_eng(u, a, "video_play", t, watched=watched, duration=duration, **common))
    after = w.clip(t + np.ceil(watched).astype(np.int64) + 1)
    for event, p in (("like", 0.4), ("comment", 0.08), ("share", 0.06)):
        hit = rng.random(m) < p
        sub = {k: v[hit] if isinstance(v, np.ndarray) else v for k, v in common.items()}
        parts.append(_eng(u[hit], a[hit], event, after[hit], **sub))

    u, a = _pairs(w.rate(_LIVE_VIEWS, 0.2 + w.affinity, cols), rng)
    t = w.times(rng, len(u))
    parts.append(_eng(u, a, "live_view", t, account=1, live=(t // _DAY).astype(np.int32)))
    return _concat(parts)


def _shop(w: _World, rng: np.random.Generator) -> Stream:
    """The in-platform shop's funnel: product view → add to cart → purchase."""
    cols = np.array([j for j, x in enumerate(w.advertisers) if x.shop], dtype=np.int64)
    u, j = _pairs(w.rate(_SHOP_VIEWS, 0.1 + w.affinity[:, cols], cols), rng)
    a = cols[j]
    m = len(u)
    t = w.times(rng, m)
    aff = np.log(np.maximum(w.affinity[u, a], 1e-3))
    product = rng.integers(0, _CATALOG, size=m).astype(np.int32)
    qty = (1 + rng.poisson(0.4, m)).astype(np.int16)
    atc = rng.random(m) < _sigmoid(-1.2 + 0.7 * aff)
    buy = atc & (rng.random(m) < _sigmoid(-0.6 + 0.7 * aff))
    t_atc = w.clip(t + rng.integers(10, 120, size=m))
    t_buy = w.clip(t_atc + rng.integers(60, 600, size=m))
    return _concat(
        [
            _eng(u, a, "shop_product_view", t, product=product, qty=1),
            _eng(
                u[atc], a[atc], "shop_add_to_cart", t_atc[atc], product=product[atc], qty=qty[atc]
            ),
            _eng(u[buy], a[buy], "shop_purchase", t_buy[buy], product=product[buy], qty=qty[buy]),
        ]
    )


# --- organic content ----------------------------------------------------------------------


def _creators(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each organic creator's category, and their popularity (Zipf-like, normalised per
    category)."""
    rng = _rng(seed, 10)
    category = rng.integers(0, _K, size=_CREATORS).astype(np.int8)
    popularity = 1.0 / (1.0 + rng.permutation(_CREATORS)) ** 0.9
    for c in range(_K):
        rows = category == c
        popularity[rows] /= popularity[rows].sum()
    return category, popularity


def _pick_creators(
    w: _World, rng: np.random.Generator, user: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each row, a category (mostly one the user likes, sometimes any: the feed explores)
    and a creator of it by popularity. Returns ``(category, creator)``."""
    m = len(user)
    cat = np.empty(m, dtype=np.int64)
    for lo in range(0, m, 1 << 20):  # (rows x K) temporaries stay small
        hi = min(lo + (1 << 20), m)
        cum = np.cumsum(w.interests[user[lo:hi]], axis=1)
        r = rng.random(hi - lo) * cum[:, -1]
        cat[lo:hi] = np.minimum((cum < r[:, None]).sum(axis=1), _K - 1)
    explore = rng.random(m) < 0.2
    cat[explore] = rng.integers(0, _K, size=int(explore.sum()))
    creator_cat, popularity = _creators(w.seed)
    creator = np.empty(m, dtype=np.int32)
    for c in range(_K):
        rows = np.flatnonzero(cat == c)
        pool = np.flatnonzero(creator_cat == c)
        creator[rows] = rng.choice(pool, size=len(rows), p=popularity[pool])
    return cat.astype(np.int8), creator


def _organic(w: _World, rng: np.random.Generator) -> Stream:
    """Plays of creators' videos (watched longer in liked categories), reactions that follow
    how much was watched, follows, profile visits, and LIVE views. No advertiser."""
    n = w.users.num_rows
    per = rng.poisson(w.scale * w.organic * _PLAYS * w.months * w.activity)
    u = np.repeat(np.arange(n, dtype=np.int64), per)
    m = len(u)
    t = w.times(rng, m)
    cat, creator = _pick_creators(w, rng, u)
    video = rng.integers(0, _VIDEOS, size=m).astype(np.int32)
    duration = (8 + (creator.astype(np.int64) * 37 + video * 11) % 110).astype(np.float64)
    frac = rng.beta(1.0 + np.minimum(w.interests[u, cat] * _K, 5.0), 1.5)
    watched = np.round(frac * duration, 1)
    common = {"creator": creator, "video": video, "category": cat}
    parts = [_eng(u, -1, "video_play", t, watched=watched, duration=duration, **common)]
    after = w.clip(t + np.ceil(watched).astype(np.int64) + 1)
    reactions = (
        ("like", 0.03 + 0.12 * frac),
        ("comment", 0.01),
        ("share", 0.012),
        ("follow", 0.006 * (0.5 + frac)),
        ("profile_visit", 0.02),
    )
    for event, p in reactions:
        hit = rng.random(m) < p
        if event in ("follow", "profile_visit"):
            sub = {"creator": creator[hit], "category": cat[hit], "account": 2}
        else:
            sub = {k: v[hit] for k, v in common.items()}
        parts.append(_eng(u[hit], -1, event, after[hit], **sub))

    per = rng.poisson(w.scale * w.organic * _ORGANIC_LIVES * w.months * w.activity)
    u = np.repeat(np.arange(n, dtype=np.int64), per)
    t = w.times(rng, len(u))
    cat, creator = _pick_creators(w, rng, u)
    live = (t // _DAY).astype(np.int32)
    parts.append(_eng(u, -1, "live_view", t, creator=creator, category=cat, live=live))
    return _concat(parts)


def catalog_prices(advertisers: Sequence[SimAdvertiser], seed: int) -> np.ndarray:
    """(advertisers x catalog) list prices, from the category's mean price."""
    rng = _rng(seed, 11)
    mean = np.array([_PRICE[_CAT[a.category]] for a in advertisers])
    spread = np.exp(rng.uniform(-0.9, 0.5, size=(len(advertisers), _CATALOG)))
    return np.round(mean[:, None] * spread, 0) - 0.01  # shop prices end in .99
