"""A seeded synthetic platform for the demo, the tests and the benchmarks.

* :func:`generate_users` / :func:`generate_platform`: platform users in the import format of
  ``likewise users import``, with dirty but unique identifiers, and their ground truth;
* :func:`ground_truth_identifiers`: the canonical forms of a generated users table;
* :func:`generate_customer_file`: an advertiser's upload for any TikTok ``calculate_type``, with
  the users a compatible server must match, their consented count and the rejected-row count;
* :func:`simulate_activity`: advertisers' web shop funnels, app and lead events and platform
  engagement driven by latent user interests, as Events API / engagement intake bodies, with
  ground truth (who did what, and how a server can resolve it);
* :func:`replay`: send such activity to a running server.

Same seed, same output. Vectorised throughout (numpy, pyarrow.compute, DuckDB for hashing): 10M
users or customer rows take seconds, not minutes.
"""

from likewise.sim.activity import (
    APP_EVENTS,
    CATEGORIES,
    ENGAGEMENT_EVENTS,
    MATCHES,
    MAX_EVENTS_PER_BODY,
    WEB_FUNNEL,
    SimActivity,
    SimAdvertiser,
    simulate_activity,
    user_interests,
)
from likewise.sim.customer_file import (
    CALCULATE_TYPES,
    MULTI_HEADERS,
    CustomerFile,
    generate_customer_file,
)
from likewise.sim.phones import COUNTRIES, PHONE_PLANS, PhonePlan
from likewise.sim.replay import Sent, replay
from likewise.sim.users import (
    USER_COLUMNS,
    SimPlatform,
    generate_platform,
    generate_users,
    ground_truth_identifiers,
)

__all__ = [
    "APP_EVENTS",
    "CALCULATE_TYPES",
    "CATEGORIES",
    "COUNTRIES",
    "ENGAGEMENT_EVENTS",
    "MATCHES",
    "MAX_EVENTS_PER_BODY",
    "MULTI_HEADERS",
    "PHONE_PLANS",
    "USER_COLUMNS",
    "WEB_FUNNEL",
    "CustomerFile",
    "PhonePlan",
    "Sent",
    "SimActivity",
    "SimAdvertiser",
    "SimPlatform",
    "generate_customer_file",
    "generate_platform",
    "generate_users",
    "ground_truth_identifiers",
    "replay",
    "simulate_activity",
    "user_interests",
]
