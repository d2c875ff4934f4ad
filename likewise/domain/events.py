"""Event names and limits shared by every intake and, later, by the rule engine.

Two generations of TikTok standard web events are in circulation (reference section 5.3) and
both are accepted; app events add their own names. Any other name is a custom event, allowed on
web, app and CRM sources; offline event sets take standard events only.
"""

from __future__ import annotations

WEB_EVENTS = frozenset(
    {
        "AddPaymentInfo",
        "AddToCart",
        "AddToWishlist",
        "ApplicationApproval",
        "CompleteRegistration",
        "Contact",
        "CustomizeProduct",
        "Download",
        "FindLocation",
        "InitiateCheckout",
        "Lead",
        "Purchase",
        "Schedule",
        "Search",
        "StartTrial",
        "SubmitApplication",
        "Subscribe",
        "ViewContent",
        # the earlier generation, still sent by many integrations
        "ClickButton",
        "CompletePayment",
        "PlaceAnOrder",
        "SubmitForm",
        # the pixel's page view (ttq.page())
        "Pageview",
    }
)

APP_EVENTS = frozenset(
    {
        "AchieveLevel",
        "Checkout",
        "CompleteTutorial",
        "CreateGroup",
        "CreateRole",
        "GenerateLead",
        "InAppADClick",
        "InAppADImpr",
        "InstallApp",
        "JoinGroup",
        "LaunchAPP",
        "LoanApplication",
        "LoanApproval",
        "LoanDisbursal",
        "Login",
        "Rate",
        "Registration",
        "SpendCredits",
        "UnlockAchievement",
    }
)

STANDARD_EVENTS = WEB_EVENTS | APP_EVENTS

MAX_EVENTS_PER_REQUEST = 1000
MAX_EVENT_NAME = 100
MAX_EVENT_ID = 256
MAX_TEXT = 4096  # URLs and other free text
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_CONTENTS = 100
MAX_IDS_PER_KEY = 10  # hashed e-mails, phones or external ids on one event

# Platform engagement (the operator's ad server and apps, admin API): each event type and the id
# it must name, the object engaged with. Engagement audiences select on these ids.
ENGAGEMENT_EVENTS: dict[str, str] = {
    "ad_impression": "ad_id",
    "ad_click": "ad_id",
    "video_play": "content_id",
    "like": "content_id",
    "comment": "content_id",
    "share": "content_id",
    "follow": "account_id",
    "profile_visit": "account_id",
    "live_view": "live_id",
    "lead_form_view": "form_id",
    "lead_form_submit": "form_id",
    "shop_product_view": "product_id",
    "shop_add_to_cart": "product_id",
    "shop_initiate_checkout": "product_id",
    "shop_purchase": "product_id",
}
ENGAGEMENT_CLICK = "ad_click"  # the one engagement event whose ttclid identifies its user
MAX_ENGAGEMENT_ID = 256  # user, ad, content, account ... ids of the engagement intake
