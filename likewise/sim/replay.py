"""Send a :class:`SimActivity` to a running Likewise through its real endpoints.

Order matters and is fixed: platform engagement first (so the ad clicks behind ``ttclid`` are
known before the shop events that carry them), then the shops' server events, then the browser
copies (each merges into its server copy: a browser and a server copy within five minutes), then
app events. A retried server copy therefore meets a server copy and is dropped as a duplicate,
which is what :meth:`SimActivity.expected` assumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from likewise.sim.activity import SimActivity

__all__ = ["ENDPOINTS", "KINDS", "Sent", "replay"]

KINDS: tuple[str, ...] = ("engagement", "web", "pixel", "app")
ENDPOINTS: dict[str, str] = {
    "engagement": "/admin/v1/engagement/track",
    "web": "/open_api/v1.3/event/track/",
    "pixel": "/pixel/v1/collect",
    "app": "/open_api/v1.3/event/track/",
}
_MAX_ERRORS = 10  # distinct error messages kept per kind


@dataclass
class Sent:
    """What happened to one kind of body: ``events`` sent, ``accepted`` (answered code 0), and
    the refusals by message (bodies per message)."""

    bodies: int = 0
    events: int = 0
    accepted: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bodies": self.bodies,
            "events": self.events,
            "accepted": self.accepted,
            "errors": dict(self.errors),
        }

    def _error(self, message: str) -> None:
        if message in self.errors or len(self.errors) < _MAX_ERRORS:
            self.errors[message] = self.errors.get(message, 0) + 1


def replay(
    activity: SimActivity,
    base_url: str,
    *,
    access_token: str,
    admin_token: str | None = None,
    kinds: Sequence[str] = KINDS,
    client: httpx.Client | None = None,
) -> dict[str, Sent]:
    """POST the activity's bodies of ``kinds`` (in :data:`KINDS` order) to the server at
    ``base_url``; returns what was sent and accepted per kind.

    Events API bodies carry ``access_token`` (it must act for the advertisers' pixels and apps),
    engagement bodies ``admin_token`` (without one they are not sent). A kind whose endpoint
    answers HTTP 404 is abandoned after its first body.
    """
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    own = client is None
    http = client or httpx.Client(timeout=120)
    try:
        out: dict[str, Sent] = {}
        for kind in KINDS:
            if kind not in kinds:
                continue
            if kind == "engagement":
                if admin_token is None:
                    out[kind] = Sent(errors={"no admin token: engagement not sent": 1})
                    continue
                headers = {"X-Admin-Token": admin_token}
            elif kind == "pixel":
                headers = {}  # the collector is public, like TikTok's pixel endpoint
            else:
                headers = {"Access-Token": access_token}
            url = base_url.rstrip("/") + ENDPOINTS[kind]
            out[kind] = _send(http, url, headers, activity.bodies(kind), kind)
        return out
    finally:
        if own:
            http.close()


def _send(
    http: httpx.Client,
    url: str,
    headers: dict[str, str],
    bodies: Iterable[dict[str, Any]],
    kind: str,
) -> Sent:
    sent = Sent()
    items = "events" if kind == "pixel" else "data"
    headers = {**headers, "Content-Type": "application/json"}
    for body in bodies:
        n = len(body[items])
        sent.bodies += 1
        sent.events += n
        response = http.post(url, content=orjson.dumps(body), headers=headers)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        code = answer.get("code") if isinstance(answer, dict) else None
        if response.status_code == 200 and code == 0:
            sent.accepted += n
            continue
        message = answer.get("message") if isinstance(answer, dict) else None
        sent._error(f"HTTP {response.status_code}, code {code}: {message or response.text[:200]}")
        if response.status_code == 404:
            break  # the endpoint does not exist on this server: the rest would fail the same
    return sent
