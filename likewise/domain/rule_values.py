"""What each ``audience_type`` means: what its ``event_source_ids`` name, and which stored
events each of its filter values selects (reference sections 1.3 and 3.2, ``docs/rules.md``).

Filter values are TikTok's strings exactly (spaces included). Where the reference's sources
disagree they are both accepted: pixel values with and without the ``PIXEL`` prefix (the
official spec's example says ``PIXEL COMPLETE PAYMENT``, the Go SDK's enum ``COMPLETE PAYMENT``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from likewise.domain.rules import (
    MAX_OBJECT_IDS,
    MAX_SOURCE_IDS,
    AudienceType,
    EventMatch,
    ParamField,
    SourceKind,
)

WEB = frozenset({"web", "pixel"})  # Events API web events and the browser pixel's
APP = frozenset({"app"})
OFFLINE = frozenset({"offline", "crm"})  # the rule's source ids tell which event sets
ENGAGEMENT = frozenset({"engagement"})
INTERACTIONS = frozenset({"like", "comment", "share"})  # TikTok's "engagement" on content


@dataclass(frozen=True)
class TypeSpec:
    """How one audience type reads its rules."""

    kind: SourceKind  # what its event_source_ids name (passed to the source resolver)
    match_field: str | None  # the EventRecord field holding that id (None: events carry none)
    ids: str  # "required", "optional" (none: all of the advertiser's) or "forbidden"
    max_ids: int
    organic: bool  # organic activity (advertiser 0) on the named objects counts
    values: Mapping[str, EventMatch]  # upper-case filter value -> events
    channels: frozenset[str]  # of custom events, when ``custom_events``
    custom_events: bool
    params: frozenset[ParamField]  # the parameter filters its events can carry
    # Rules whose window must be one of FIXED_LOOKBACKS: every value unless listed as free.
    fixed_lookback: bool = False
    free_lookback_values: frozenset[str] = frozenset()


def _named(channels: frozenset[str], table: Mapping[str, Iterable[str]]) -> dict[str, EventMatch]:
    return {
        label: EventMatch(label=label, channels=channels, names=frozenset(names))
        for label, names in table.items()
    }


def _play(label: str, *, seconds: float | None = None, percent: float | None = None) -> EventMatch:
    return EventMatch(
        label=label,
        channels=ENGAGEMENT,
        names=frozenset({"video_play"}),
        min_watched_seconds=seconds,
        min_watched_percent=percent,
    )


def _engagement(label: str, names: Iterable[str]) -> EventMatch:
    return EventMatch(label=label, channels=ENGAGEMENT, names=frozenset(names))


def _by_label(*matches: EventMatch) -> dict[str, EventMatch]:
    return {m.label: m for m in matches}


# Ads, by ad group. The store does not tell ad formats apart, so the app-profile, instant-page
# and collection-ad values select every click or impression of the rule's ad groups.
_ADS = _by_label(
    _engagement("CLICK", {"ad_click"}),
    _engagement("IMPRESSION", {"ad_impression"}),
    _play("PLAY 2S", seconds=2),
    _play("PLAY 6S", seconds=6),
    _play("PLAY 25", percent=25),
    _play("PLAY 50", percent=50),
    _play("PLAY 75", percent=75),
    _play("PLAY OVER", percent=100),
    _engagement("ENGAGEMENT APP PROFILE CLICK", {"ad_click"}),
    _engagement("ENGAGEMENT APP PROFILE IMPRESSION", {"ad_impression"}),
    _engagement("ENGAGEMENT TIKTOK INSTANT CLICK", {"ad_click"}),
    _engagement("ENGAGEMENT TIKTOK INSTANT IMPRESSION", {"ad_impression"}),
    _engagement("ENGAGEMENT COLLECTION ADS CLICK", {"ad_click"}),
    _engagement("ENGAGEMENT COLLECTION ADS IMPRESSION", {"ad_impression"}),
)

_LIVE = _by_label(
    _engagement("LIVE VIDEO VIEW", {"live_view"}),
    _engagement("LIVE VIDEO ENGAGEMENT", INTERACTIONS),
)

# Third-party names only (reference 3.2, UNCONFIRMED); the best evidence there is.
_ORGANIC = _by_label(
    _play("ORGANIC VIDEO PLAY 2S", seconds=2),
    _play("ORGANIC VIDEO PLAY 6S", seconds=6),
    _play("ORGANIC VIDEO PLAY OVER", percent=100),
    _engagement("ORGANIC VIDEO ENGAGEMENT", INTERACTIONS),
)

BUSINESS_ACCOUNT_FOLLOW = "BUSINESS ACCOUNT PROFILE FOLLOW"
_ACCOUNT = _by_label(
    _engagement(BUSINESS_ACCOUNT_FOLLOW, {"follow"}),
    _engagement("BUSINESS ACCOUNT PROFILE VISIT", {"profile_visit"}),
    _engagement("BUSINESS ACCOUNT ENGAGEMENT", INTERACTIONS),
    _play("BUSINESS ACCOUNT PLAY 2S", seconds=2),
    _play("BUSINESS ACCOUNT PLAY 6S", seconds=6),
    _play("BUSINESS ACCOUNT PLAY OVER", percent=100),
)

# Standard app events (reference 5.3); where an app may send a web name for the same action
# (the shared web names), both count.
_APP = _named(
    APP,
    {
        "INSTALL": {"InstallApp"},
        "LAUNCH APP": {"LaunchAPP"},
        "APP ADD PAYMENT INFO": {"AddPaymentInfo"},
        "APP ADD TO CART": {"AddToCart"},
        "ADD TO WISHLIST": {"AddToWishlist"},
        "CHECKOUT": {"Checkout"},
        "COMPLETE TUTORIAL": {"CompleteTutorial"},
        "VIEW CONTENT": {"ViewContent"},
        "CREATE GROUP": {"CreateGroup"},
        "CREATE ROLE": {"CreateRole"},
        "GENERATE LEAD": {"GenerateLead", "Lead"},
        "IN-APP AD CLICK": {"InAppADClick"},
        "IN-APP AD IMPRESSION": {"InAppADImpr"},
        "JOIN GROUP": {"JoinGroup"},
        "ACHIEVE LEVEL": {"AchieveLevel"},
        "LOAN APPLY": {"LoanApplication"},
        "LOAN APPROVAL": {"LoanApproval"},
        "LOAN DISBURSAL": {"LoanDisbursal"},
        "LOGIN": {"Login"},
        "PURCHASE": {"Purchase", "CompletePayment"},
        "RATE": {"Rate"},
        "REGISTRATION": {"Registration", "CompleteRegistration"},
        "APP SEARCH": {"Search"},
        "SPEND CREDITS": {"SpendCredits"},
        "START TRIAL": {"StartTrial"},
        "SUBSCRIBE": {"Subscribe"},
        "UNLOCK ACHIEVEMENT": {"UnlockAchievement"},
    },
)
_APP["DAY 2 RETENTION"] = EventMatch(
    label="DAY 2 RETENTION",
    channels=APP,
    names=frozenset({"LaunchAPP"}),
    retained_on_day=1,  # installed on day 0, launched again on day 1
)

# Both generations of web events (reference 5.3): the legacy CompletePayment and today's
# Purchase are the same action to the people building audiences.
_PIXEL_NAMES: dict[str, set[str]] = {
    "PAGE BROWSE": {"Pageview", "PageView"},
    "PRODUCT DETAIL PAGE BROWSE": {"ViewContent"},
    "CLICK BUTTON": {"ClickButton"},
    "SUBMIT FORM": {"SubmitForm"},
    "CONTACT": {"Contact"},
    "DOWNLOAD": {"Download"},
    "ADD PAYMENT INFO": {"AddPaymentInfo"},
    "COMPLETE PAYMENT": {"CompletePayment", "Purchase"},
    "INITIATE CHECKOUT": {"InitiateCheckout"},
    "COMPLETE REGISTRATION": {"CompleteRegistration"},
    "SEARCH": {"Search"},
    "ADD TO CART": {"AddToCart"},
    "PLACE AN ORDER": {"PlaceAnOrder"},
    "ADD TO WISHLIST": {"AddToWishlist"},
    "SUBSCRIBE": {"Subscribe"},
}
# Every pixel value under both spellings; the label is the one the Go SDK's enum prints.
_PIXEL_LABELS = {
    "SUBMIT FORM": "PIXEL SUBMIT FORM",
    "ADD PAYMENT INFO": "PIXEL ADD PAYMENT INFO",
    "SEARCH": "PIXEL SEARCH",
    "ADD TO CART": "PIXEL ADD TO CART",
    "ADD TO WISHLIST": "PIXEL ADD TO WISHLIST",
    "SUBSCRIBE": "PIXEL SUBSCRIBE",
}
_PIXEL: dict[str, EventMatch] = {}
for _bare, _names in _PIXEL_NAMES.items():
    _match = EventMatch(
        label=_PIXEL_LABELS.get(_bare, _bare), channels=WEB, names=frozenset(_names)
    )
    _PIXEL[_bare] = _PIXEL["PIXEL " + _bare] = _match

_LEAD = _by_label(
    _engagement("FORM VIEW", {"lead_form_view"}),
    _engagement("LEAD GENERATION FORM SUBMISSION", {"lead_form_submit"}),
)

_SHOP = _by_label(
    _engagement("TIKTOK SHOP PAGE VIEW", {"shop_product_view"}),
    _engagement("TIKTOK SHOP ADD TO CART", {"shop_add_to_cart"}),
    _engagement("TIKTOK SHOP INITIATE CHECKOUT", {"shop_initiate_checkout"}),
    _engagement("TIKTOK SHOP COMPLETE PAYMENT", {"shop_purchase"}),
)

# Offline event sets take standard web events only (reference 5.3).
_OFFLINE = _named(
    OFFLINE,
    {
        "OFFLINE COMPLETE PAYMENT": {"CompletePayment", "Purchase"},
        "OFFLINE CONTACT": {"Contact"},
        "OFFLINE SUBMIT FORM": {"SubmitForm"},
        "OFFLINE SUBSCRIBE": {"Subscribe"},
        "OFFLINE ADD PAYMENT INFO": {"AddPaymentInfo"},
        "OFFLINE ADD TO CART": {"AddToCart"},
        "OFFLINE ADD TO WISHLIST": {"AddToWishlist"},
        "OFFLINE CLICK BUTTON": {"ClickButton"},
        "OFFLINE COMPLETE REGISTRATION": {"CompleteRegistration"},
        "OFFLINE DOWNLOAD": {"Download"},
        "OFFLINE INITIATE CHECKOUT": {"InitiateCheckout"},
        "OFFLINE PLACE AN ORDER": {"PlaceAnOrder"},
    },
)

_EVENT_PARAMS = frozenset(ParamField) - {ParamField.URL}
_NONE: frozenset[ParamField] = frozenset()

TYPES: dict[AudienceType, TypeSpec] = {
    AudienceType.ENGAGEMENT: TypeSpec(
        SourceKind.AD_GROUP, "adgroup_id", "optional", MAX_SOURCE_IDS, False, _ADS,
        ENGAGEMENT, False, _NONE,
    ),
    AudienceType.ENGAGEMENT_ORGANIC_VIDEO: TypeSpec(
        SourceKind.POST, "content_id", "required", MAX_OBJECT_IDS, True, _ORGANIC,
        ENGAGEMENT, False, _NONE, fixed_lookback=True,
    ),
    AudienceType.ENGAGEMENT_LIVE_VIDEO: TypeSpec(
        SourceKind.LIVE, "live_id", "required", MAX_OBJECT_IDS, True, _LIVE,
        ENGAGEMENT, False, _NONE, fixed_lookback=True,
    ),
    AudienceType.APP: TypeSpec(
        SourceKind.APP, "source_id", "required", MAX_SOURCE_IDS, False, _APP,
        APP, True, _EVENT_PARAMS,
    ),
    AudienceType.PIXEL: TypeSpec(
        SourceKind.PIXEL, "source_id", "required", MAX_SOURCE_IDS, False, _PIXEL,
        WEB, True, frozenset(ParamField),
    ),
    AudienceType.LEAD_GENERATION: TypeSpec(
        SourceKind.LEAD_FORM, "form_id", "forbidden", 0, False, _LEAD,
        ENGAGEMENT, False, _NONE,
    ),
    AudienceType.BUSINESS_ACCOUNT: TypeSpec(
        SourceKind.ACCOUNT, "account_id", "required", MAX_SOURCE_IDS, True, _ACCOUNT,
        ENGAGEMENT, False, _NONE,
        fixed_lookback=True, free_lookback_values=frozenset({BUSINESS_ACCOUNT_FOLLOW}),
    ),
    # Shop events name a product, not a shop: every shop event stored under the advertiser (who
    # owns the shop) counts, whatever shop ids the rule names (they are not checked).
    AudienceType.TIKTOK_SHOP: TypeSpec(
        SourceKind.SHOP, None, "required", MAX_SOURCE_IDS, False, _SHOP,
        ENGAGEMENT, False, _NONE,
    ),
    AudienceType.OFFLINE: TypeSpec(
        SourceKind.OFFLINE, "source_id", "required", MAX_SOURCE_IDS, False, _OFFLINE,
        OFFLINE, False, _EVENT_PARAMS,
    ),
}  # fmt: skip


def filter_values(audience_type: AudienceType) -> list[str]:
    """The filter values an audience type takes, each spelling once, sorted."""
    return sorted(TYPES[audience_type].values)
