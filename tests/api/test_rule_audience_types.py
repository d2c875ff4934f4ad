"""End-to-end test (issue 4): every rule audience type and every filter value, created through
the official SDK's ``rule/create/`` against a real server, whose members must equal a ground
truth computed here, independently of Likewise's evaluators.

One module-scoped server (real HTTP, real data directory) gets:

* the simulator's platform users, imported through ``POST /admin/v1/users/import``;
* the simulator's activity of two advertisers (web shop, pixel, app, ads, lead forms, account,
  shop, organic creators) replayed through the real endpoints (:func:`likewise.sim.replay`);
* what the simulator does not generate, from a small explicit generator below (:class:`Extra`):
  every other pixel, app and offline event name with varied parameters, CRM events, complete
  and boundary video plays, LIVE engagement, organic activity of the advertiser's own creator
  account and of another creator, shop checkouts, day-2 retention sequences, and events that
  must never count (limited data use, anonymous, opted-out users, users never imported, other
  advertisers' events on the advertiser's objects).

The ground truth (:func:`expected`) reads only what was sent and the simulator's truth (who did
each event, and whether a server can resolve it), and applies ``docs/rules.md`` literally: the
filter values' events (:data:`VALUES`, transcribed from the docs, checked against
``likewise.domain.rule_values`` for coverage only), sources per audience type, windows
``as_of - days < event_time <= as_of``, parameter filters, exclusion.

The server's clock is frozen at ``World.as_of`` (``start_server(clock=...)``): evaluation
windows are then exact, so events a few seconds either side of a window's edge cannot make the
test flaky. (With an injected clock the event processor runs in a thread of the server
process, not in the separate worker process.)
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import business_api_client
import httpx
import pyarrow as pa
import pytest
from business_api_client import models as sdk
from business_api_client.api.audience_api import AudienceApi
from business_api_client.models.rule_create_body import RuleCreateBody
from business_api_client.tiktok_business.tiktok_exceptions import TiktokSDKError

from likewise.domain.rule_values import TYPES
from likewise.sim import (
    SimActivity,
    SimAdvertiser,
    generate_users,
    ground_truth_identifiers,
    replay,
    simulate_activity,
)
from likewise.store.models import Audience
from tests.conftest import ADMIN_TOKEN, Server, start_server

# The official SDK's own models of a rule spec (what its users build).
RuleSpec = sdk.DmpcustomAudiencerulecreateRuleSpec
InclusionSet = sdk.DmpcustomAudiencerulecreateRuleSpecInclusionRuleSet
InclusionRule = sdk.DmpcustomAudiencerulecreateRuleSpecInclusionRuleSetRules
InclusionFilterSet = sdk.DmpcustomAudiencerulecreateRuleSpecInclusionRuleSetFilterSet
InclusionFilter = sdk.DmpcustomAudiencerulecreateRuleSpecInclusionRuleSetFilterSetFilters
InclusionParam = sdk.DmpcustomAudiencerulecreateRuleSpecInclusionRuleSetFilterSetParameterFilters
ExclusionSet = sdk.DmpcustomAudiencerulecreateRuleSpecExclusionRuleSet
ExclusionRule = sdk.DmpcustomAudiencerulecreateRuleSpecExclusionRuleSetRules
ExclusionFilterSet = sdk.DmpcustomAudiencerulecreateRuleSpecExclusionRuleSetFilterSet
ExclusionFilter = sdk.DmpcustomAudiencerulecreateRuleSpecExclusionRuleSetFilterSetFilters
ExclusionParam = sdk.DmpcustomAudiencerulecreateRuleSpecExclusionRuleSetFilterSetParameterFilters

pytestmark = pytest.mark.timeout(300)  # end-to-end: one server for the module, ~150 audiences

serve = contextmanager(start_server)
DAY = 86400
SPAN_DAYS = 40  # activity covers the 40 days before as_of: 30-day windows leave some out
SEED = 4
N_USERS = 1000
USABLE_MATCHES = frozenset({"graph", "link", "click"})  # the engagement (clicks) is replayed too

# --------------------------------------------------------------------------- filter values
# docs/rules.md, "Filter values": per audience type, filter value -> the stored events it
# selects. Written out here (not read from likewise.domain.rule_values) so that the ground truth
# is independent; test_value_tables_cover_every_filter_value checks nothing is missing.


@dataclass(frozen=True)
class Match:
    names: frozenset[str]
    seconds: float | None = None  # play depth: watched_seconds >= this
    percent: float | None = None  # play depth: watched_percent >= this
    day2: bool = False  # DAY 2 RETENTION: a launch on the UTC day after an install


def _m(*names: str, seconds: float | None = None, percent: float | None = None) -> Match:
    return Match(frozenset(names), seconds, percent)


INTERACTIONS = ("like", "comment", "share")
ADS = {
    "CLICK": _m("ad_click"),
    "IMPRESSION": _m("ad_impression"),
    "PLAY 2S": _m("video_play", seconds=2),
    "PLAY 6S": _m("video_play", seconds=6),
    "PLAY 25": _m("video_play", percent=25),
    "PLAY 50": _m("video_play", percent=50),
    "PLAY 75": _m("video_play", percent=75),
    "PLAY OVER": _m("video_play", percent=100),
    "ENGAGEMENT APP PROFILE CLICK": _m("ad_click"),
    "ENGAGEMENT TIKTOK INSTANT CLICK": _m("ad_click"),
    "ENGAGEMENT COLLECTION ADS CLICK": _m("ad_click"),
    "ENGAGEMENT APP PROFILE IMPRESSION": _m("ad_impression"),
    "ENGAGEMENT TIKTOK INSTANT IMPRESSION": _m("ad_impression"),
    "ENGAGEMENT COLLECTION ADS IMPRESSION": _m("ad_impression"),
}
ORGANIC = {
    "ORGANIC VIDEO PLAY 2S": _m("video_play", seconds=2),
    "ORGANIC VIDEO PLAY 6S": _m("video_play", seconds=6),
    "ORGANIC VIDEO PLAY OVER": _m("video_play", percent=100),
    "ORGANIC VIDEO ENGAGEMENT": _m(*INTERACTIONS),
}
LIVE = {"LIVE VIDEO VIEW": _m("live_view"), "LIVE VIDEO ENGAGEMENT": _m(*INTERACTIONS)}
ACCOUNT = {
    "BUSINESS ACCOUNT PROFILE FOLLOW": _m("follow"),
    "BUSINESS ACCOUNT PROFILE VISIT": _m("profile_visit"),
    "BUSINESS ACCOUNT ENGAGEMENT": _m(*INTERACTIONS),
    "BUSINESS ACCOUNT PLAY 2S": _m("video_play", seconds=2),
    "BUSINESS ACCOUNT PLAY 6S": _m("video_play", seconds=6),
    "BUSINESS ACCOUNT PLAY OVER": _m("video_play", percent=100),
}
LEAD = {
    "FORM VIEW": _m("lead_form_view"),
    "LEAD GENERATION FORM SUBMISSION": _m("lead_form_submit"),
}
SHOP = {
    "TIKTOK SHOP PAGE VIEW": _m("shop_product_view"),
    "TIKTOK SHOP ADD TO CART": _m("shop_add_to_cart"),
    "TIKTOK SHOP INITIATE CHECKOUT": _m("shop_initiate_checkout"),
    "TIKTOK SHOP COMPLETE PAYMENT": _m("shop_purchase"),
}
APP = {
    "INSTALL": _m("InstallApp"),
    "DAY 2 RETENTION": Match(frozenset({"LaunchAPP"}), day2=True),
    "LAUNCH APP": _m("LaunchAPP"),
    "APP ADD PAYMENT INFO": _m("AddPaymentInfo"),
    "APP ADD TO CART": _m("AddToCart"),
    "ADD TO WISHLIST": _m("AddToWishlist"),
    "CHECKOUT": _m("Checkout"),
    "COMPLETE TUTORIAL": _m("CompleteTutorial"),
    "VIEW CONTENT": _m("ViewContent"),
    "CREATE GROUP": _m("CreateGroup"),
    "CREATE ROLE": _m("CreateRole"),
    "JOIN GROUP": _m("JoinGroup"),
    "GENERATE LEAD": _m("GenerateLead", "Lead"),
    "IN-APP AD CLICK": _m("InAppADClick"),
    "IN-APP AD IMPRESSION": _m("InAppADImpr"),
    "ACHIEVE LEVEL": _m("AchieveLevel"),
    "UNLOCK ACHIEVEMENT": _m("UnlockAchievement"),
    "LOAN APPLY": _m("LoanApplication"),
    "LOAN APPROVAL": _m("LoanApproval"),
    "LOAN DISBURSAL": _m("LoanDisbursal"),
    "LOGIN": _m("Login"),
    "RATE": _m("Rate"),
    "SPEND CREDITS": _m("SpendCredits"),
    "PURCHASE": _m("Purchase", "CompletePayment"),
    "REGISTRATION": _m("Registration", "CompleteRegistration"),
    "APP SEARCH": _m("Search"),
    "START TRIAL": _m("StartTrial"),
    "SUBSCRIBE": _m("Subscribe"),
}
_PIXEL_BARE = {
    "PAGE BROWSE": _m("Pageview", "PageView"),
    "PRODUCT DETAIL PAGE BROWSE": _m("ViewContent"),
    "CLICK BUTTON": _m("ClickButton"),
    "CONTACT": _m("Contact"),
    "DOWNLOAD": _m("Download"),
    "SUBMIT FORM": _m("SubmitForm"),
    "ADD PAYMENT INFO": _m("AddPaymentInfo"),
    "ADD TO CART": _m("AddToCart"),
    "ADD TO WISHLIST": _m("AddToWishlist"),
    "COMPLETE PAYMENT": _m("CompletePayment", "Purchase"),
    "INITIATE CHECKOUT": _m("InitiateCheckout"),
    "COMPLETE REGISTRATION": _m("CompleteRegistration"),
    "PLACE AN ORDER": _m("PlaceAnOrder"),
    "SEARCH": _m("Search"),
    "SUBSCRIBE": _m("Subscribe"),
}
# Pixel values are taken with and without the PIXEL prefix (docs/rules.md).
PIXEL = {**_PIXEL_BARE, **{f"PIXEL {k}": v for k, v in _PIXEL_BARE.items()}}
OFFLINE = {
    "OFFLINE COMPLETE PAYMENT": _m("CompletePayment", "Purchase"),
    "OFFLINE CONTACT": _m("Contact"),
    "OFFLINE SUBMIT FORM": _m("SubmitForm"),
    "OFFLINE SUBSCRIBE": _m("Subscribe"),
    "OFFLINE DOWNLOAD": _m("Download"),
    "OFFLINE ADD PAYMENT INFO": _m("AddPaymentInfo"),
    "OFFLINE ADD TO CART": _m("AddToCart"),
    "OFFLINE ADD TO WISHLIST": _m("AddToWishlist"),
    "OFFLINE CLICK BUTTON": _m("ClickButton"),
    "OFFLINE COMPLETE REGISTRATION": _m("CompleteRegistration"),
    "OFFLINE INITIATE CHECKOUT": _m("InitiateCheckout"),
    "OFFLINE PLACE AN ORDER": _m("PlaceAnOrder"),
}
VALUES: dict[str, dict[str, Match]] = {
    "ENGAGEMENT": ADS,
    "ENGAGEMENT_ORGANIC_VIDEO": ORGANIC,
    "ENGAGEMENT_LIVE_VIDEO": LIVE,
    "APP": APP,
    "PIXEL": PIXEL,
    "LEAD_GENERATION": LEAD,
    "BUSINESS_ACCOUNT": ACCOUNT,
    "TIKTOK_SHOP": SHOP,
    "OFFLINE": OFFLINE,
}
# Channels of the events each type reads (docs/rules.md, "Audience types and their sources").
CHANNELS = {
    "APP": {"app"},
    "PIXEL": {"web", "pixel"},
    "OFFLINE": {"offline", "crm"},
}
FIXED_WINDOW_TYPES = {"ENGAGEMENT_ORGANIC_VIDEO", "ENGAGEMENT_LIVE_VIDEO", "BUSINESS_ACCOUNT"}
NEGATIVE = {"DOES_NOT_CONTAIN", "DOES_NOT_CONTAINS", "NOT_EQUAL"}
ORDERING = {
    "IS_GREATER_THAN": lambda a, b: a > b,
    "IS_GREATER_THAN_OR_EQUAL_TO": lambda a, b: a >= b,
    "IS_GRETER_THAN_OR_EQUAL_TO": lambda a, b: a >= b,  # TikTok's documented typo
    "IS_LESS_THAN": lambda a, b: a < b,
    "IS_LESS_THAN_OR_EQUAL_TO": lambda a, b: a <= b,
}


# --------------------------------------------------------------------------- events sent


@dataclass(frozen=True)
class Ev:
    """One logical event sent to the server, as the ground truth sees it. ``user`` is the
    platform user who did it; ``usable`` says whether the server may build audiences from it
    (it can resolve it to ``user``, no limited data use, the user allows personalised ads)."""

    user: str | None
    usable: bool
    adv: str | None  # advertiser id; None: organic activity
    channel: str  # web, app, offline, crm, engagement
    source: str | None  # pixel code, app code or event set id (Events API event_source_id)
    event: str
    t: int
    adgroup_id: str | None = None
    content_id: str | None = None
    creator_id: str | None = None
    account_id: str | None = None
    live_id: str | None = None
    watched_seconds: float | None = None
    watched_percent: float | None = None
    url: str | None = None
    content_type: str | None = None
    content_ids: tuple[str, ...] = ()
    content_categories: tuple[str, ...] = ()
    prices: tuple[float, ...] = ()
    value: float | None = None


def _props(props: dict[str, Any] | None) -> dict[str, Any]:
    """The filterable fields of Events API ``properties`` (only ``content_type``, ``value`` and
    ``contents`` items are sent by the sim and by :class:`Extra`)."""
    if not props:
        return {}
    items = props.get("contents") or []
    value = props.get("value")
    return {
        "content_type": props.get("content_type"),
        "content_ids": tuple(str(i["content_id"]) for i in items if "content_id" in i),
        "content_categories": tuple(
            i["content_category"] for i in items if i.get("content_category")
        ),
        "prices": tuple(float(i["price"]) for i in items if i.get("price") is not None),
        "value": None if value is None else float(value),
    }


def _play(e: dict[str, Any]) -> dict[str, Any]:
    watched, duration = e.get("watched_seconds"), e.get("duration_seconds")
    if watched is None:
        return {}
    percent = None if duration is None else min(100.0, 100.0 * watched / duration)
    return {"watched_seconds": float(watched), "watched_percent": percent}


_ENG_FIELDS = ("adgroup_id", "content_id", "creator_id", "account_id", "live_id")


def engagement_ev(e: dict[str, Any], usable: bool) -> Ev:
    return Ev(
        user=e["user_id"],
        usable=usable,
        adv=None if e.get("advertiser_id") is None else str(e["advertiser_id"]),
        channel="engagement",
        source=None,
        event=e["event"],
        t=int(e["event_time"]),
        **{k: e.get(k) for k in _ENG_FIELDS},
        **_play(e),
    )


def sim_events(act: SimActivity, consent: dict[str, bool]) -> list[Ev]:
    """The simulator's logical events, with who did them and whether the server can use them
    (the sim's ``match`` and ``limited``), and their fields as the bodies sent them."""
    truth = {
        r["event_id"]: r for r in act.events.select(["event_id", "match", "limited"]).to_pylist()
    }
    users = dict(
        zip(
            act.events.column("event_id").to_pylist(),
            act.events.column("user_id").to_pylist(),
            strict=True,
        )
    )
    out: list[Ev] = []
    for body in act.engagement_bodies:
        for e in body["data"]:
            out.append(engagement_ev(e, consent[e["user_id"]]))
    advertiser_of = {}
    for a in act.advertisers:
        advertiser_of[a.pixel_code] = advertiser_of[a.app_id] = a.id
    seen: set[str] = set()
    for kind, bodies in (("web", act.web_bodies), ("app", act.app_bodies)):
        for body in bodies:
            source = body["event_source_id"]
            for e in body["data"]:
                if e["event_id"] in seen:
                    continue  # a retried copy: dropped as a duplicate
                seen.add(e["event_id"])
                row, user = truth[e["event_id"]], users[e["event_id"]]
                usable = row["match"] in USABLE_MATCHES and not row["limited"] and consent[user]
                out.append(
                    Ev(
                        user=user,
                        usable=usable,
                        adv=advertiser_of[source],
                        channel=kind,
                        source=source,
                        event=e["event"],
                        t=int(e["event_time"]),
                        url=(e.get("page") or {}).get("url"),
                        **_props(e.get("properties")),
                    )
                )
    return out


# --------------------------------------------------------------------------- explicit generator


@dataclass
class Adv:
    """An advertiser of the test and its event sources (as the API created them)."""

    id: str
    token: str
    name: str
    pixels: dict[str, str] = field(default_factory=dict)  # pixel_id -> pixel code
    apps: dict[str, str] = field(default_factory=dict)  # app code -> source id
    offline: str = ""  # event set id (offline/create/)
    crm: str = ""  # event set id (admin API, kind CRM)
    form: str = ""
    account: str = ""  # its business account's code (the account id events carry)
    domain: str = ""

    @property
    def pixel_ids(self) -> list[str]:
        return list(self.pixels)


class Extra:
    """Events the simulator does not generate, with their ground truth: bodies per endpoint and
    source, and one :class:`Ev` per logical event. Identities: mostly users who can be resolved
    (hashed e-mail on the Events API, the user id on the engagement intake) and allow
    personalised ads; some limited data use, anonymous, opted-out or never-imported users."""

    def __init__(self, users: pa.Table, as_of: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.as_of = as_of
        ids = users.column("user_id").to_pylist()
        emails = ground_truth_identifiers(users).column("email_basic").to_pylist()
        consent = users.column("personalized_ads").to_pylist()
        self.email = {
            u: hashlib.sha256(e.encode()).hexdigest() for u, e in zip(ids, emails, strict=True) if e
        }
        self.people = [u for u, c in zip(ids, consent, strict=True) if c and u in self.email]
        self.optouts = [u for u, c in zip(ids, consent, strict=True) if not c and u in self.email]
        self.events: list[Ev] = []
        self.bodies: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.n = 0

    # --- helpers ----------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def times(self, n: int, days: float = SPAN_DAYS) -> list[int]:
        """``n`` times spread over the last ``days`` days, the first within the last half day
        (so that every window gets some)."""
        span = days * DAY / n
        first = self.rng.random() * min(span, DAY / 2)
        offsets = [first] + [(k + self.rng.random()) * span for k in range(1, n)]
        return [self.as_of - 30 - int(x) for x in offsets]

    def who(self, *, limited: bool = True) -> tuple[str, str | None]:
        r = self.rng.random()
        if r < 0.78:
            return "ok", self.rng.choice(self.people)
        if r < 0.86:
            return ("limited" if limited else "anon"), self.rng.choice(self.people)
        if r < 0.93:
            return "anon", None
        return "optout", self.rng.choice(self.optouts)

    def props(self) -> dict[str, Any] | None:
        r = self.rng
        p: dict[str, Any] = {}
        content_type = r.choice(["product", "product_group", "Product", None, "2", "10"])
        if content_type is not None:
            p["content_type"] = content_type
        items = []
        for _ in range(r.choice([0, 1, 1, 2])):
            item: dict[str, Any] = {"quantity": 1}
            if r.random() < 0.9:
                item["content_id"] = r.choice(
                    ["SKU-1", "SKU-2", "sku-3", "SKU-3", "SKU-5", "sku-10", "bundle-7"]
                )
            category = r.choice(["Shoes", "hats", "bags", None])
            if category is not None:
                item["content_category"] = category
            price = r.choice([5, 9.99, 19.99, 50, 120, None])
            if price is not None:
                item["price"] = price
            items.append(item)
        if items:
            p["contents"] = items
        value = r.choice([None, 0, 10, 25.5, 99, 250])
        if value is not None:
            p["value"], p["currency"] = value, "USD"
        return p or None

    def url(self, domain: str) -> str:
        path = self.rng.choice(
            [
                "/",
                "/sale/shoes",
                "/Sale/Hats?ref=tt",
                "/new/arrivals",
                "/checkout/step-1",
                "/Checkout/complete",
                "/cart",
                "/blog/50%_off",
            ]
        )
        return f"https://{domain}{path}"

    # --- Events API -------------------------------------------------------------------------

    def _api_event(
        self,
        kind: str,
        source: str,
        adv: str,
        name: str,
        t: int,
        *,
        props: dict[str, Any] | None = None,
        url: str | None = None,
        who: tuple[str, str | None] | None = None,
    ) -> None:
        status, user = who or self.who()
        ev: dict[str, Any] = {"event": name, "event_time": t, "event_id": self._id("x")}
        if status == "anon" or user is None:
            ev["user"] = {"ttp": f"anon-{self.n}"} if kind == "web" else {}
        else:
            ev["user"] = {"email": self.email[user]}
        if status == "limited":
            ev["limited_data_use"] = True
        if url is not None:
            ev["page"] = {"url": url}
        if kind == "app":
            ev["app"] = {"app_id": source}
        if kind == "crm":
            ev["lead"] = {"lead_id": f"lead-{self.n}"}
        if props:
            ev["properties"] = props
        self.bodies[(kind, source)].append(ev)
        self.events.append(
            Ev(
                user=user,
                usable=status == "ok",
                adv=adv,
                channel=kind,
                source=source,
                event=name,
                t=t,
                url=url,
                **_props(props),
            )
        )

    def first(self, k: int) -> tuple[str, str | None] | None:
        """The latest event of each name is usable, so that every window has some."""
        return ("ok", self.rng.choice(self.people)) if k == 0 else None

    def web(self, adv: Adv, pixel_code: str, names: Iterable[str], per_name: int) -> None:
        for name in names:
            for k, t in enumerate(self.times(per_name)):
                props = None if name in ("Pageview", "PageView") else self.props()
                url = self.url(adv.domain)
                who = self.first(k)
                self._api_event("web", pixel_code, adv.id, name, t, props=props, url=url, who=who)

    def app(self, adv: Adv, app_code: str, names: Iterable[str], per_name: int) -> None:
        for name in names:
            for k, t in enumerate(self.times(per_name)):
                props = self.props()
                self._api_event("app", app_code, adv.id, name, t, props=props, who=self.first(k))

    def day2(self, adv: Adv, app_code: str, users: int) -> None:
        """Installs on UTC day d followed by launches on day d (no), d + 1 (yes) or d + 2 (no),
        by resolvable users (one by an opted-out user), some beyond a 7-day window; some
        installs or launches carry a content type (for parameter filters on both)."""
        today = self.as_of // DAY
        tagged = {"content_type": "product"}
        for i in range(users):
            who = ("ok", self.people[(7 * i + 3) % len(self.people)])
            if i == users - 1:
                who = ("optout", self.optouts[0])
            d = today - 2 - (i * 3) % 36
            install = d * DAY + self.rng.randrange(3600, 80000)
            props = tagged if i % 8 == 0 else None
            self._api_event("app", app_code, adv.id, "InstallApp", install, props=props, who=who)
            gap = (1, 1, 0, 2)[i % 4]
            same_day = install + 60
            launch = same_day if gap == 0 else (d + gap) * DAY + self.rng.randrange(60, 86000)
            launch = min(launch, self.as_of - 5)
            props = tagged if i % 8 == 1 else None
            self._api_event("app", app_code, adv.id, "LaunchAPP", launch, props=props, who=who)

    def offline(self, adv: Adv, kind: str, set_id: str, names: Iterable[str], n: int) -> None:
        for name in names:
            for k, t in enumerate(self.times(n)):
                props = self.props()
                self._api_event(kind, set_id, adv.id, name, t, props=props, who=self.first(k))

    # --- engagement intake ------------------------------------------------------------------

    def engage(self, adv: str | None, event: str, t: int, **fields: Any) -> None:
        status, user = self.who(limited=False)
        if status == "anon":
            user = f"never-imported-{self.n}"
        e: dict[str, Any] = {
            "event": event,
            "event_time": t,
            "user_id": user,
            "event_id": self._id("xe"),
            **{k: v for k, v in fields.items() if v is not None},
        }
        if adv is not None:
            e["advertiser_id"] = adv
        self.bodies[("engagement", "")].append(e)
        self.events.append(engagement_ev(e, status == "ok"))

    def plays(self, adv: str | None, n: int, **ids: Any) -> None:
        """Plays at the edges of every play-depth threshold: complete, exactly 75 %, 50 %,
        25 %, 6 s, 2 s, just under 2 s, and plays whose length is unknown."""
        shapes = [(30, 30), (15, 20), (10, 20), (5, 20), (6, None), (2, None), (1.9, 10), (45, 30)]
        for k, t in enumerate(self.times(n)):
            watched, duration = shapes[k % len(shapes)]
            self.engage(
                adv, "video_play", t, watched_seconds=watched, duration_seconds=duration, **ids
            )

    def edges(
        self, adv: Adv, pixel_code: str, name: str, days: Iterable[int], others: Iterable[Ev]
    ) -> dict[int, tuple[str, str]]:
        """For each window: one event exactly at its start (outside: a window is ``as_of -
        days < t <= as_of``) and one a second later (inside), each by a user with no other
        event of that name (here or in ``others``). Returns ``{days: (inside, outside)}``."""
        used = {e.user for e in (*self.events, *others) if e.event == name}
        fresh = (u for u in self.people if u not in used)
        out: dict[int, tuple[str, str]] = {}
        for d in days:
            inside, outside = next(fresh), next(fresh)
            for user, t in ((outside, self.as_of - d * DAY), (inside, self.as_of - d * DAY + 1)):
                url = f"https://{adv.domain}/cart"
                self._api_event("web", pixel_code, adv.id, name, t, url=url, who=("ok", user))
            out[d] = (inside, outside)
        return out

    def interactions(self, adv: str | None, n: int, **ids: Any) -> None:
        for k, t in enumerate(self.times(n)):
            self.engage(adv, INTERACTIONS[k % 3], t, **ids)

    # --- sending ----------------------------------------------------------------------------

    def send(self, server: Server, token: str) -> None:
        with httpx.Client(timeout=120) as http:
            for (kind, source), events in self.bodies.items():
                for lo in range(0, len(events), 1000):
                    chunk = events[lo : lo + 1000]
                    if kind == "engagement":
                        url = server.url + "/admin/v1/engagement/track"
                        r = http.post(
                            url, json={"data": chunk}, headers={"X-Admin-Token": ADMIN_TOKEN}
                        )
                    else:
                        body = {"event_source": kind, "event_source_id": source, "data": chunk}
                        r = http.post(
                            server.api + "/event/track/", json=body, headers={"Access-Token": token}
                        )
                    assert r.status_code == 200 and r.json()["code"] == 0, (kind, source, r.text)


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    server: Server
    as_of: int  # the server's frozen clock: every evaluation's as_of
    a: Adv  # the advertiser whose audiences are built
    b: Adv  # another advertiser with the same kinds of activity (never counts for a)
    c: Adv  # an advertiser with no business account
    events: list[Ev]
    by_name: dict[str, list[Ev]]
    creator: str  # an organic creator who is one of a's business accounts
    stranger: str  # another organic creator (not a's)
    posts: list[str]  # post ids for organic-video rules (a's, its creator's, others')
    lives: list[str]  # LIVE ids for LIVE rules
    edges: dict[int, tuple[str, str]]  # days -> users who added to cart just inside, outside
    names: dict[int, str]  # uid -> platform user id
    api: AudienceApi


def _admin(server: Server, path: str, **kw: Any) -> dict[str, Any]:
    answer = server.admin("POST", path, **kw)
    assert answer["code"] == 0, answer
    return answer["data"]  # type: ignore[no-any-return]


def _source(server: Server, adv: Adv, kind: str, name: str, code: str | None = None) -> str:
    body: dict[str, Any] = {"kind": kind, "name": name}
    if code is not None:
        body["code"] = code
    if kind == "APP":
        body["settings"] = {"store_id": code}
    return str(_admin(server, f"/advertisers/{adv.id}/event-sources", json=body)["code"])


def _advertiser(server: Server, name: str, *, sources: bool = True) -> Adv:
    advertiser_id, token = server.advertiser(name)
    adv = Adv(advertiser_id, token, name, domain=f"shop-{name}.example")
    if not sources:
        return adv
    for label in ("main", "second"):
        pixel = server.call(
            "POST",
            "/pixel/create/",
            token,
            json={"advertiser_id": advertiser_id, "pixel_name": f"{name} {label}"},
        )
        assert pixel["code"] == 0, pixel
        adv.pixels[str(pixel["data"]["pixel_id"])] = pixel["data"]["pixel_code"]
    for code in (f"com.{name}.app", f"com.{name}.lite"):
        _source(server, adv, "APP", code, code)
    listed = server.admin(
        "GET", f"/advertisers/{advertiser_id}/event-sources", params={"kind": "APP"}
    )
    adv.apps = {row["code"]: str(row["event_source_id"]) for row in listed["data"]["list"]}
    made = server.call(
        "POST",
        "/offline/create/",
        token,
        json={"advertiser_id": advertiser_id, "name": f"{name} stores", "description": "pos"},
    )
    assert made["code"] == 0, made
    adv.offline = str(made["data"]["event_set_id"])
    adv.crm = _source(server, adv, "CRM", f"{name} crm")
    adv.form = _source(server, adv, "LEAD_FORM", f"{name} form", f"{name}-form")
    adv.account = _source(server, adv, "ACCOUNT", f"@{name}", f"acct-{name}")
    return adv


def _sim_advertiser(adv: Adv, category: str) -> SimAdvertiser:
    pixel_code = next(iter(adv.pixels.values()))
    return SimAdvertiser(
        id=adv.id,
        category=category,
        pixel_code=pixel_code,
        app_id=f"com.{adv.name}.app",
        lead_form_id=adv.form,
        account_id=adv.account,
        domain=adv.domain,
    )


def _top(counter: Counter[str], prefix: str, n: int) -> list[str]:
    return [k for k, _ in counter.most_common() if k.startswith(prefix)][:n]


PIXEL_NAMES = sorted({n for m in _PIXEL_BARE.values() for n in m.names} | {"signup_done"})
APP_NAMES = sorted({n for m in APP.values() for n in m.names} | {"level_up_custom"})
OFFLINE_NAMES = sorted({n for m in OFFLINE.values() for n in m.names})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    as_of = int(time.time()) - 120

    def clock() -> datetime:
        return datetime.fromtimestamp(as_of, UTC).replace(tzinfo=None)

    with serve(tmp_path_factory.mktemp("types"), clock=clock, min_audience_size=1) as server:
        users = generate_users(N_USERS, seed=SEED)
        server.import_users(users)
        consent = dict(
            zip(
                users.column("user_id").to_pylist(),
                users.column("personalized_ads").to_pylist(),
                strict=True,
            )
        )
        a = _advertiser(server, "alpha")
        b = _advertiser(server, "beta")
        c = _advertiser(server, "gamma", sources=False)
        token = _admin(server, "/tokens", json={"advertiser_ids": [a.id, b.id]})["access_token"]

        act = simulate_activity(
            users,
            [_sim_advertiser(a, "fashion"), _sim_advertiser(b, "electronics")],
            start=as_of - SPAN_DAYS * DAY,
            end=as_of - 300,
            seed=SEED,
            scale=1.0,
            organic=0.15,
        )
        sent = replay(act, server.url, access_token=token, admin_token=ADMIN_TOKEN)
        for kind, result in sent.items():
            assert result.events > 0 and result.accepted == result.events, (kind, result)
        events = sim_events(act, consent)

        # Objects of the organic rules: a's posts and LIVEs with the most activity, videos of
        # the two most played organic creators (one becomes a's business account).
        organic = [e for e in events if e.adv is None and e.event == "video_play"]
        creators = Counter(e.creator_id for e in organic if e.creator_id)
        creator, stranger = (k for k, _ in creators.most_common(2))
        assert creator and stranger
        _source(server, a, "ACCOUNT", "a's creator account", creator)
        videos = Counter(e.content_id for e in events if e.content_id)
        posts = (
            _top(videos, f"{a.account}-v", 3)
            + _top(videos, f"{creator}-v", 3)
            + _top(videos, f"{stranger}-v", 2)
            + _top(videos, f"{b.account}-v", 1)
        )
        lives_seen = Counter(e.live_id for e in events if e.live_id and e.adv == a.id)
        lives = [*_top(lives_seen, f"live-{a.account}-", 3)]
        own_live, creator_live, stranger_live = (
            f"live-{a.account}-x",
            f"live-{creator}-x",
            f"live-{stranger}-x",
        )
        lives += [own_live, creator_live, stranger_live]
        assert len(posts) == 9 and len(lives) == 6, (posts, lives)

        extra = Extra(users, as_of, SEED)
        pixel_a, pixel_a2 = list(a.pixels.values())
        extra.web(a, pixel_a, PIXEL_NAMES, 20)
        extra.web(a, pixel_a2, PIXEL_NAMES, 3)
        extra.web(b, next(iter(b.pixels.values())), PIXEL_NAMES, 3)
        app_a, app_a2 = f"com.{a.name}.app", f"com.{a.name}.lite"
        extra.app(a, app_a, APP_NAMES, 12)
        extra.app(a, app_a2, APP_NAMES, 2)
        extra.app(b, f"com.{b.name}.app", APP_NAMES, 2)
        extra.day2(a, app_a, 16)
        extra.offline(a, "offline", a.offline, OFFLINE_NAMES, 12)
        extra.offline(a, "crm", a.crm, OFFLINE_NAMES, 6)
        extra.offline(b, "offline", b.offline, OFFLINE_NAMES, 2)

        # Ads: plays at every play-depth edge, on a's and b's ad groups.
        for g in range(4):
            ad = f"ad-{a.id}-{2 * g}"
            group = f"adgroup-{a.id}-{g}"
            extra.plays(a.id, 16, ad_id=ad, adgroup_id=group, content_id=f"{ad}-video")
        ad, group = f"ad-{b.id}-0", f"adgroup-{b.id}-0"
        extra.plays(b.id, 8, ad_id=ad, adgroup_id=group, content_id=f"{ad}-video")
        # Organic video: a's posts (stored under a, or organic with a's account as creator),
        # its creator account's videos (organic), another creator's videos, one without a
        # creator, b's events on a's creator's video, organic activity on b's post.
        own_post, creator_video, stranger_video, b_post = posts[0], posts[3], posts[6], posts[8]
        for adv, video, made_by in (
            (a.id, own_post, a.account),
            (None, own_post, a.account),
            (None, creator_video, creator),
            (None, stranger_video, stranger),
            (None, creator_video, None),
            (b.id, creator_video, creator),
            (None, b_post, b.account),
        ):
            extra.plays(adv, 16, content_id=video, creator_id=made_by)
            extra.interactions(adv, 6, content_id=video, creator_id=made_by)
        # LIVE: views and interactions on a's LIVEs, its creator's, another creator's, one
        # organic view without a creator, and b's events on a's LIVE.
        for adv, live, made_by in (
            (a.id, own_live, None),
            (None, own_live, a.account),
            (None, creator_live, creator),
            (None, stranger_live, stranger),
            (None, creator_live, None),
            (b.id, own_live, a.account),
            (a.id, lives[0], None),
        ):
            for t in extra.times(5, 30):
                extra.engage(adv, "live_view", t, live_id=live, creator_id=made_by)
            extra.interactions(adv, 6, content_id=f"{live}-clip", live_id=live, creator_id=made_by)
        # Business accounts: a's (stored under a, or organic), its creator account (organic), and
        # b's events naming a's account.
        for adv, account in (
            (a.id, a.account),
            (None, a.account),
            (None, creator),
            (b.id, a.account),
        ):
            for event in ("follow", "profile_visit"):
                for t in extra.times(5):
                    extra.engage(adv, event, t, account_id=account)
            extra.plays(adv, 16, account_id=account, content_id=f"{account}-v77")
            extra.interactions(adv, 6, account_id=account, content_id=f"{account}-v77")
        # Shop checkouts (the sim has none) and a few more lead forms.
        for adv, n in ((a.id, 12), (b.id, 4)):
            for t in extra.times(n):
                extra.engage(adv, "shop_initiate_checkout", t, product_id="sku-9", value=12.5)
        for adv, form in ((a.id, a.form), (b.id, b.form)):
            for event in ("lead_form_view", "lead_form_submit"):
                for t in extra.times(4):
                    extra.engage(adv, event, t, form_id=form)
        edges = extra.edges(a, pixel_a, "AddToCart", (1, 7, 30), events)
        extra.send(server, token)
        server.runtime.events.flush()

        everything = events + extra.events
        by_name: dict[str, list[Ev]] = defaultdict(list)
        for e in everything:
            if e.usable:
                by_name[e.event].append(e)
        with server.runtime.graph.connect() as con:
            rows = con.execute("SELECT uid, ext_id FROM users").fetchall()
        config = business_api_client.Configuration()
        config.host = server.url
        yield World(
            server=server,
            as_of=as_of,
            a=a,
            b=b,
            c=c,
            events=everything,
            by_name=by_name,
            creator=creator,
            stranger=stranger,
            posts=posts,
            lives=lives,
            edges=edges,
            names={int(u): e for u, e in rows},
            api=AudienceApi(business_api_client.ApiClient(config)),
        )


# --------------------------------------------------------------------------- rules and truth


@dataclass(frozen=True)
class R:
    """One rule of a test: a filter value, the wire ``event_source_ids`` (None: left out),
    ``retention_days`` and parameter filters ``(field, operator, values)``."""

    value: str
    ids: tuple[str, ...] | None
    days: int
    params: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


def _source_keys(w: World, audience_type: str, ids: tuple[str, ...] | None) -> set[str]:
    """The rule's ids as the events carry them (pixel ids -> codes, app ids -> codes)."""
    if not ids:
        return set()
    if audience_type == "PIXEL":
        return {w.a.pixels.get(i, i) for i in ids}
    if audience_type == "APP":
        codes = {sid: code for code, sid in w.a.apps.items()}
        return {codes.get(i, i) for i in ids}
    return set(ids)


def _from_sources(w: World, audience_type: str, keys: set[str], e: Ev) -> bool:
    a = w.a
    if audience_type in CHANNELS:
        return e.channel in CHANNELS[audience_type] and e.source in keys
    if e.channel != "engagement":
        return False
    if audience_type == "ENGAGEMENT":
        # No ad groups named: every ad's events (not plays of the advertiser's own posts).
        return e.adv == a.id and (e.adgroup_id in keys if keys else e.adgroup_id is not None)
    if audience_type in ("LEAD_GENERATION", "TIKTOK_SHOP"):
        return e.adv == a.id
    if audience_type == "BUSINESS_ACCOUNT":
        return e.account_id in keys and e.adv in (a.id, None)
    obj = e.content_id if audience_type == "ENGAGEMENT_ORGANIC_VIDEO" else e.live_id
    if obj not in keys:
        return False
    # Organic activity on a post or LIVE counts when one of a's business accounts created it.
    return e.adv == a.id or (e.adv is None and e.creator_id in (a.account, w.creator))


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _param_ok(e: Ev, f: tuple[str, str, tuple[str, ...]]) -> bool:
    name, operator, values = f
    fields: dict[str, list[Any]] = {
        "URL": [e.url],
        "CONTENT_TYPE": [e.content_type],
        "PRICE": list(e.prices),
        "VALUE": [e.value],
        "CONTENT_ID": list(e.content_ids),
        "CONTENT_CATEGORY": list(e.content_categories),
    }
    present = [x for x in fields[name] if x is not None]
    numeric = name in ("PRICE", "VALUE") or operator in ORDERING

    def one(x: Any) -> bool:
        if numeric:
            n = _number(x)
            if n is None:
                return False
            compare = ORDERING.get(operator, lambda p, q: p == q)
            return any(compare(n, float(v)) for v in values)
        if operator in ("CONTAINS", "DOES_NOT_CONTAIN", "DOES_NOT_CONTAINS"):
            return any(v.lower() in str(x).lower() for v in values)
        return str(x).lower() in {v.lower() for v in values}

    held = any(one(x) for x in present)
    return not held if operator in NEGATIVE else held


def _deep_enough(e: Ev, m: Match) -> bool:
    """Play depth: a play without the measure fails the threshold."""
    if m.seconds is not None and (e.watched_seconds is None or e.watched_seconds < m.seconds):
        return False
    return m.percent is None or (e.watched_percent is not None and e.watched_percent >= m.percent)


def _qualifying(w: World, audience_type: str, r: R, names: Iterable[str]) -> list[Ev]:
    m = VALUES[audience_type].get(r.value)
    keys = _source_keys(w, audience_type, r.ids)
    out = []
    for name in names:
        for e in w.by_name.get(name, ()):
            if not w.as_of - r.days * DAY < e.t <= w.as_of:
                continue
            if not _from_sources(w, audience_type, keys, e):
                continue
            if m is not None and not _deep_enough(e, m):
                continue
            if all(_param_ok(e, f) for f in r.params):
                out.append(e)
    return out


def rule_users(w: World, audience_type: str, r: R) -> set[str]:
    m = VALUES[audience_type].get(r.value)
    names = m.names if m is not None else {r.value}  # a custom event name
    events = _qualifying(w, audience_type, r, names)
    if m is None or not m.day2:
        return {e.user for e in events if e.user}
    installs = {(e.user, e.t // DAY) for e in _qualifying(w, audience_type, r, {"InstallApp"})}
    return {e.user for e in events if e.user and (e.user, e.t // DAY - 1) in installs}


def expected(
    w: World, audience_type: str, include: Sequence[R], exclude: Sequence[R] = ()
) -> set[str]:
    inc = set().union(*(rule_users(w, audience_type, r) for r in include))
    exc = set().union(*(rule_users(w, audience_type, r) for r in exclude))
    return inc - exc


# --------------------------------------------------------------------------- the SDK


def _rules(rules: Sequence[R], exclusion: bool) -> list[Any]:
    rule_cls, set_cls, filter_cls, param_cls = (
        (ExclusionRule, ExclusionFilterSet, ExclusionFilter, ExclusionParam)
        if exclusion
        else (InclusionRule, InclusionFilterSet, InclusionFilter, InclusionParam)
    )
    out = []
    for r in rules:
        params = [param_cls(field=f, operator=o, values=list(v)) for f, o, v in r.params] or None
        filters = [
            filter_cls(field="EVENT", operator="EQ", value=r.value, parameter_filters=params)
        ]
        out.append(
            rule_cls(
                event_source_ids=None if r.ids is None else list(r.ids),
                retention_days=r.days,
                filter_set=set_cls(operator="OR", filters=filters),
            )
        )
    return out


def sdk_create(
    w: World, adv: Adv, audience_type: str, include: Sequence[R], exclude: Sequence[R] = ()
) -> dict[str, Any]:
    """``rule/create/`` through the official SDK's AudienceApi with its own models. The SDK
    answers ``{data, request_id}`` and raises ``TiktokSDKError`` on an error code: both are
    returned as ``{code, ...}``."""
    spec = RuleSpec(
        inclusion_rule_set=InclusionSet(operator="OR", rules=_rules(include, False)),
        exclusion_rule_set=(
            ExclusionSet(operator="OR", rules=_rules(list(exclude), True)) if exclude else None
        ),
    )
    body = RuleCreateBody(
        advertiser_id=adv.id,
        custom_audience_name=f"{audience_type} {include[0].value}"[:60],
        audience_type=audience_type,
        rule_spec=spec,
    )
    try:
        answer = w.api.dmp_custom_audience_rule_create(adv.token, body=body)
    except TiktokSDKError as exc:  # the SDK raises on a non-zero code
        found = re.match(r"Error Code: (\d+), message: (.*), request_id: ", str(exc), re.S)
        assert found, exc
        return {"code": int(found[1]), "message": found[2]}
    assert set(answer) == {"data", "request_id"}, answer  # the SDK's success shape
    return {"code": 0, **answer}


def members(w: World, answer: dict[str, Any]) -> set[str]:
    assert answer["code"] == 0, answer
    audience_id = int(answer["data"]["custom_audience_id"])
    w.server.wait_jobs()
    rt = w.server.runtime
    with rt.db.session() as s:
        audience = s.get(Audience, audience_id)
        assert audience is not None
        assert audience.status == "READY", (audience.status, audience.error_msg)
    return {w.names[u] for u in rt.audiences.current_members(audience_id)}


def check(
    w: World, audience_type: str, include: Sequence[R], exclude: Sequence[R] = ()
) -> set[str]:
    """Create the audience for ``a`` and compare with the ground truth; returns the truth."""
    want = expected(w, audience_type, include, list(exclude))
    got = members(w, sdk_create(w, w.a, audience_type, include, list(exclude)))
    assert got == want, (
        f"{len(got)} members, {len(want)} expected; "
        f"extra {sorted(got - want)[:5]}, missing {sorted(want - got)[:5]}"
    )
    return want


# --------------------------------------------------------------------------- per value


def _ids(w: World, audience_type: str, i: int) -> tuple[str, ...] | None:
    a = w.a
    pixel_ids = a.pixel_ids
    choices: dict[str, list[tuple[str, ...] | None]] = {
        "ENGAGEMENT": [
            None,
            (f"adgroup-{a.id}-0", f"adgroup-{a.id}-1"),
            (f"adgroup-{a.id}-2", f"adgroup-{w.b.id}-0"),
        ],
        "ENGAGEMENT_ORGANIC_VIDEO": [tuple(w.posts)],
        "ENGAGEMENT_LIVE_VIDEO": [tuple(w.lives)],
        "APP": [(f"com.{a.name}.app",), (f"com.{a.name}.app", a.apps[f"com.{a.name}.lite"])],
        "PIXEL": [(pixel_ids[0],), (pixel_ids[0], a.pixels[pixel_ids[1]])],
        "LEAD_GENERATION": [None],
        "BUSINESS_ACCOUNT": [(a.account, w.creator)],
        "TIKTOK_SHOP": [("shop-alpha",)],
        "OFFLINE": [(a.offline,), (a.offline, a.crm), (a.crm,)],
    }
    options = choices[audience_type]
    return options[i % len(options)]


def _days(audience_type: str, value: str, i: int) -> int:
    if audience_type in FIXED_WINDOW_TYPES and value != "BUSINESS ACCOUNT PROFILE FOLLOW":
        return (30, 14, 7)[i % 3]
    return (30, 14, 60, 7, 180)[i % 5]


CASES = [
    pytest.param(t, v, i, id=f"{t}:{v}")
    for t, values in VALUES.items()
    for i, v in enumerate(sorted(values))
]


def test_value_tables_cover_every_filter_value() -> None:
    """The transcription of docs/rules.md above holds every value Likewise takes, so the
    parametrized test below covers them all (both pixel spellings included)."""
    for audience_type, spec in TYPES.items():
        assert set(VALUES[audience_type.value]) == set(spec.values), audience_type


@pytest.mark.parametrize(("audience_type", "value", "i"), CASES)
def test_each_filter_value_matches_the_ground_truth(
    world: World, audience_type: str, value: str, i: int
) -> None:
    rule = R(value, _ids(world, audience_type, i), _days(audience_type, value, i))
    want = check(world, audience_type, [rule])
    assert want, "the data should give every filter value members"


# --------------------------------------------------------------------------- sources and windows


def test_the_data_exercises_what_must_not_count(world: World) -> None:
    """The events hold what the ground truth must leave out: unusable events (limited data
    use, anonymous, opted out, never imported), other advertisers' and other creators' events,
    events older than a 30-day window."""
    events = world.events
    assert sum(not e.usable for e in events) > 100
    assert any(e.adv == world.b.id for e in events if e.usable)
    assert any(e.creator_id == world.stranger for e in events if e.usable and e.adv is None)
    assert any(e.t <= world.as_of - 30 * DAY for e in events if e.usable)
    # 30 days leave users out that 180 days take in, for the web and for ad engagement.
    for audience_type, value in (("PIXEL", "PAGE BROWSE"), ("ENGAGEMENT", "IMPRESSION")):
        ids = _ids(world, audience_type, 0)
        assert rule_users(world, audience_type, R(value, ids, 30)) != rule_users(
            world, audience_type, R(value, ids, 180)
        )


@pytest.mark.parametrize("days", [1, 7, 30, 180])
def test_lookback_windows(world: World, days: int) -> None:
    """``as_of - days < event_time <= as_of``, to the second (the server's clock is frozen)."""
    ids = (world.a.pixel_ids[0],)
    want = check(world, "PIXEL", [R("PIXEL ADD TO CART", ids, days)])
    if days in world.edges:
        inside, outside = world.edges[days]
        assert inside in want and outside not in want


def test_visitors_who_did_not_purchase_lately(world: World) -> None:
    ids = (world.a.pixel_ids[0],)
    want = check(
        world,
        "PIXEL",
        [R("PAGE BROWSE", ids, 30)],
        [R("COMPLETE PAYMENT", ids, 7)],
    )
    visitors = expected(world, "PIXEL", [R("PAGE BROWSE", ids, 30)])
    assert want and visitors - want, "the exclusion removes someone"


def test_cart_abandoners_across_two_pixels_by_id_and_by_code(world: World) -> None:
    a = world.a
    both = (a.pixel_ids[0], a.pixels[a.pixel_ids[1]])
    want = check(
        world, "PIXEL", [R("ADD TO CART", both, 30)], [R("PIXEL COMPLETE PAYMENT", both, 30)]
    )
    assert want


def test_several_inclusion_and_exclusion_rules(world: World) -> None:
    a = world.a
    first, second = a.pixel_ids
    check(
        world,
        "PIXEL",
        [
            R("COMPLETE PAYMENT", (first,), 7),
            R("PIXEL SUBSCRIBE", (second,), 30),
            R("signup_done", (first,), 14),
        ],
        [R("CONTACT", (first,), 60), R("PIXEL SEARCH", (second,), 180)],
    )


def test_installers_who_did_not_buy(world: World) -> None:
    app = (f"com.{world.a.name}.app",)
    want = check(world, "APP", [R("INSTALL", app, 180)], [R("PURCHASE", app, 30)])
    assert want


def test_impressions_without_a_click(world: World) -> None:
    groups = (f"adgroup-{world.a.id}-0", f"adgroup-{world.a.id}-3")
    want = check(world, "ENGAGEMENT", [R("IMPRESSION", groups, 30)], [R("CLICK", None, 30)])
    assert want


def test_profile_visitors_who_did_not_follow(world: World) -> None:
    ids = (world.a.account, world.creator)
    want = check(
        world,
        "BUSINESS_ACCOUNT",
        [R("BUSINESS ACCOUNT PROFILE VISIT", ids, 30)],
        [R("BUSINESS ACCOUNT PROFILE FOLLOW", ids, 180)],
    )
    assert want


def test_custom_events(world: World) -> None:
    assert check(world, "PIXEL", [R("signup_done", (world.a.pixel_ids[0],), 30)])
    assert check(world, "APP", [R("level_up_custom", (f"com.{world.a.name}.app",), 30)])


def test_organic_video_counts_only_the_advertisers_creators(world: World) -> None:
    """Plays of a post count for a when stored under a, or organic on a post created by one of
    its business accounts; another creator's posts and b's events never do."""
    w = world
    want = check(w, "ENGAGEMENT_ORGANIC_VIDEO", [R("ORGANIC VIDEO PLAY 2S", tuple(w.posts), 30)])
    stranger_posts = tuple(p for p in w.posts if p.startswith(w.stranger))
    assert stranger_posts
    # Plays on the other creator's posts happened, yet count for nobody.
    assert any(e.content_id in stranger_posts for e in w.by_name["video_play"])
    assert (
        check(w, "ENGAGEMENT_ORGANIC_VIDEO", [R("ORGANIC VIDEO PLAY 2S", stranger_posts, 30)])
        == set()
    )
    creator_posts = tuple(p for p in w.posts if p.startswith(w.creator))
    assert check(w, "ENGAGEMENT_ORGANIC_VIDEO", [R("ORGANIC VIDEO PLAY 2S", creator_posts, 30)])
    assert want


def test_live_counts_only_the_advertisers_creators(world: World) -> None:
    w = world
    stranger_live = (f"live-{w.stranger}-x",)
    assert any(e.live_id == stranger_live[0] for e in w.by_name["live_view"])  # they happened
    assert check(w, "ENGAGEMENT_LIVE_VIDEO", [R("LIVE VIDEO VIEW", stranger_live, 30)]) == set()
    creator_live = (f"live-{w.creator}-x",)
    assert check(w, "ENGAGEMENT_LIVE_VIDEO", [R("LIVE VIDEO ENGAGEMENT", creator_live, 30)])


@pytest.mark.parametrize("audience_type", ["ENGAGEMENT_ORGANIC_VIDEO", "ENGAGEMENT_LIVE_VIDEO"])
def test_organic_rules_need_a_business_account(world: World, audience_type: str) -> None:
    w = world
    ids = tuple(w.posts) if audience_type == "ENGAGEMENT_ORGANIC_VIDEO" else tuple(w.lives)
    value = (
        "ORGANIC VIDEO PLAY 2S"
        if audience_type == "ENGAGEMENT_ORGANIC_VIDEO"
        else "LIVE VIDEO VIEW"
    )
    answer = sdk_create(w, w.c, audience_type, [R(value, ids, 30)])
    assert answer["code"] == 40002, answer
    assert "business account" in answer["message"], answer


@pytest.mark.parametrize(
    ("audience_type", "value", "ids"),
    [
        ("PIXEL", "COMPLETE PAYMENT", "b_pixel"),
        ("APP", "INSTALL", "b_app"),
        ("OFFLINE", "OFFLINE CONTACT", "b_offline"),
        ("BUSINESS_ACCOUNT", "BUSINESS ACCOUNT PROFILE FOLLOW", "b_account"),
    ],
)
def test_another_advertisers_source_is_refused(
    world: World, audience_type: str, value: str, ids: str
) -> None:
    b = world.b
    source = {
        "b_pixel": b.pixel_ids[0],
        "b_app": f"com.{b.name}.app",
        "b_offline": b.offline,
        "b_account": b.account,
    }[ids]
    answer = sdk_create(world, world.a, audience_type, [R(value, (source,), 30)])
    assert answer["code"] == 40002, answer
    assert "event_source_ids" in answer["message"], answer


# --------------------------------------------------------------------------- parameter filters

P = tuple[str, str, tuple[str, ...]]
PIXEL_PARAMS: list[tuple[str, int, tuple[P, ...]]] = [
    ("PAGE BROWSE", 30, (("URL", "CONTAINS", ("SALE/", "checkout")),)),
    ("PAGE BROWSE", 60, (("URL", "DOES_NOT_CONTAIN", ("ttclid", "sale")),)),
    ("PAGE BROWSE", 60, (("URL", "DOES_NOT_CONTAINS", ("/blog/50%_off",)),)),
    ("PIXEL ADD TO CART", 30, (("URL", "EQ", ("HTTPS://SHOP-ALPHA.EXAMPLE/CART",)),)),
    # % and _ are ordinary characters: "s_l" would match "/sale/" as a LIKE pattern
    ("PAGE BROWSE", 30, (("URL", "CONTAINS", ("50%_", "s_l")),)),
    ("PRODUCT DETAIL PAGE BROWSE", 60, (("CONTENT_TYPE", "EQ", ("product_group",)),)),
    ("COMPLETE PAYMENT", 30, (("CONTENT_TYPE", "NOT_EQUAL", ("product",)),)),
    ("PIXEL ADD TO WISHLIST", 180, (("CONTENT_TYPE", "CONTAINS", ("GROUP",)),)),
    ("CLICK BUTTON", 180, (("CONTENT_TYPE", "DOES_NOT_CONTAIN", ("prod",)),)),
    ("PIXEL SEARCH", 180, (("CONTENT_TYPE", "IS_GREATER_THAN", ("3",)),)),
    ("COMPLETE PAYMENT", 180, (("CONTENT_TYPE", "IS_LESS_THAN_OR_EQUAL_TO", ("2",)),)),
    ("COMPLETE PAYMENT", 60, (("PRICE", "IS_GREATER_THAN", ("50",)),)),
    ("PIXEL ADD TO CART", 60, (("PRICE", "IS_LESS_THAN_OR_EQUAL_TO", ("9.99",)),)),
    ("DOWNLOAD", 180, (("PRICE", "EQ", ("19.99", "120")),)),
    ("PIXEL SUBMIT FORM", 180, (("PRICE", "NOT_EQUAL", ("19.99",)),)),
    ("INITIATE CHECKOUT", 180, (("PRICE", "IS_GRETER_THAN_OR_EQUAL_TO", ("50",)),)),
    ("PLACE AN ORDER", 180, (("PRICE", "IS_LESS_THAN", ("20",)),)),
    ("COMPLETE PAYMENT", 30, (("VALUE", "IS_GREATER_THAN_OR_EQUAL_TO", ("25.5",)),)),
    ("PIXEL ADD PAYMENT INFO", 180, (("VALUE", "IS_LESS_THAN", ("10",)),)),
    ("COMPLETE REGISTRATION", 180, (("VALUE", "EQ", ("0",)),)),
    ("PIXEL SUBSCRIBE", 180, (("VALUE", "NOT_EQUAL", ("99",)),)),
    ("PRODUCT DETAIL PAGE BROWSE", 180, (("VALUE", "IS_GREATER_THAN", ("50",)),)),
    ("PRODUCT DETAIL PAGE BROWSE", 60, (("CONTENT_ID", "EQ", ("sku-3",)),)),
    ("PRODUCT DETAIL PAGE BROWSE", 30, (("CONTENT_ID", "CONTAINS", ("-sku-0",)),)),
    ("COMPLETE PAYMENT", 180, (("CONTENT_ID", "DOES_NOT_CONTAIN", ("sku-1",)),)),
    ("PIXEL ADD TO CART", 180, (("CONTENT_ID", "NOT_EQUAL", ("SKU-2", "sku-5")),)),
    ("PRODUCT DETAIL PAGE BROWSE", 180, (("CONTENT_CATEGORY", "EQ", ("shoes",)),)),
    ("COMPLETE PAYMENT", 180, (("CONTENT_CATEGORY", "NOT_EQUAL", ("fashion",)),)),
    ("PIXEL ADD TO CART", 180, (("CONTENT_CATEGORY", "CONTAINS", ("AT",)),)),
    ("CLICK BUTTON", 180, (("CONTENT_CATEGORY", "DOES_NOT_CONTAIN", ("hat", "bag")),)),
    (
        "COMPLETE PAYMENT",
        180,
        (
            ("URL", "CONTAINS", ("checkout",)),
            ("VALUE", "IS_GREATER_THAN", ("10",)),
            ("CONTENT_CATEGORY", "NOT_EQUAL", ("bags",)),
        ),
    ),
]


@pytest.mark.parametrize(
    ("value", "days", "params"),
    PIXEL_PARAMS,
    ids=[f"{v}:{'+'.join(f'{p[0]} {p[1]}' for p in ps)}" for v, _, ps in PIXEL_PARAMS],
)
def test_pixel_parameter_filters(
    world: World, value: str, days: int, params: tuple[P, ...]
) -> None:
    ids = (world.a.pixel_ids[0],)
    want = check(world, "PIXEL", [R(value, ids, days, params)])
    unfiltered = expected(world, "PIXEL", [R(value, ids, days)])
    assert want, "the filter keeps someone"
    assert want != unfiltered or len(params) > 1, "the filter leaves someone out"


@pytest.mark.parametrize(
    ("audience_type", "value", "params"),
    [
        ("APP", "PURCHASE", (("VALUE", "IS_GREATER_THAN", ("20",)),)),
        ("APP", "VIEW CONTENT", (("CONTENT_ID", "CONTAINS", ("sku-",)),)),
        ("APP", "DAY 2 RETENTION", (("CONTENT_TYPE", "NOT_EQUAL", ("product",)),)),
        (
            "OFFLINE",
            "OFFLINE COMPLETE PAYMENT",
            (("VALUE", "IS_GREATER_THAN_OR_EQUAL_TO", ("25.5",)),),
        ),
        ("OFFLINE", "OFFLINE ADD TO CART", (("CONTENT_CATEGORY", "EQ", ("HATS",)),)),
    ],
)
def test_app_and_offline_parameter_filters(
    world: World, audience_type: str, value: str, params: tuple[P, ...]
) -> None:
    ids = _ids(world, audience_type, 1)
    want = check(world, audience_type, [R(value, ids, 180, params)])
    assert want, "the filter keeps someone"
    assert want != expected(world, audience_type, [R(value, ids, 180)]), "and leaves some out"
