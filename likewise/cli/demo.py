"""``likewise demo``: a synthetic platform, a demo advertiser with a pixel, an app, a lead form
and an account, a ready-to-upload file, and a month of simulated activity replayed through the
real endpoints."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from likewise.domain.locations import location_of_country
from likewise.errors import LikewiseError
from likewise.settings import Settings

if TYPE_CHECKING:  # the CLI imports this module to start: heavy imports wait until used
    import httpx
    import pyarrow as pa

    from likewise.runtime import Runtime
    from likewise.sim import SimActivity, SimAdvertiser

DEMO_NAME = "Likewise Demo Advertiser"
DEMO_CATEGORY = "fashion"  # what the demo shop sells: its buyers are users who like fashion
DEMO_PIXEL = "Likewise Demo Shop"
DEMO_APP = "com.likewise.demo"  # the app's event_source_id and app.app_id
DEMO_FORM = "likewise-demo-form"
DEMO_ACCOUNT = "likewise-demo-account"
DEMO_DOMAIN = "shop.likewise.example"
DEMO_DAYS = 30
DEMO_ORGANIC = 0.2  # organic engagement would otherwise be most of a small sample
DEFAULT_EVENTS = 3000


def build_demo(
    settings: Settings,
    *,
    users: int,
    seed: int,
    events: int = 0,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Build the demo platform and advertiser; with ``events`` > 0 also replay about that many
    simulated events over the last 30 days through the real endpoints (which needs
    ``settings.admin_token``: the app, lead form and engagement go through the admin API)."""
    from likewise.ingest.users import import_users
    from likewise.runtime import Runtime
    from likewise.sim import generate_customer_file, generate_users

    if events > 0 and not settings.admin_token:
        raise ValueError("replaying events needs settings.admin_token")
    rt = Runtime(settings)
    try:
        summary: dict[str, Any] | None = None
        table: pa.Table | None = None
        if rt.graph.counts()["users"] == 0:
            table = generate_users(users, seed=seed)
            summary = import_users(rt.graph, table, progress=progress)
            # A hashed customer file (no raw identifiers at rest) to try the upload with.
            sample = generate_customer_file(
                table,
                n_rows=min(5_000, users),
                seed=seed + 1,
                kind="EMAIL_SHA256",
                hashed_rate=1.0,
                invalid_rate=0.0,
            )
            sample.write(settings.data_dir / "demo-customers.csv")
        existing = [a for a in rt.tenants.all_advertisers() if a.name == DEMO_NAME]
        adv = (
            existing[0]
            if existing
            else rt.tenants.create_advertiser(
                name=DEMO_NAME, now=rt.clock(), business_center_id="demo-bc", country="US"
            )
        )
        token = rt.tenants.create_token(
            advertiser_ids=[adv.id], now=rt.clock(), display_name="demo"
        )
        replayed: dict[str, Any] = {}
        if events > 0:
            if table is None:  # a second run: the same seed gives the same users again
                table = generate_users(users, seed=seed)
            if progress:
                progress("replaying events", 0.0)
            replayed = replay_demo(
                rt, advertiser_id=str(adv.id), token=token, users=table, seed=seed, events=events
            )
            if progress:
                progress("replaying events", 1.0)
    finally:
        rt.close()
    base = f"http://{settings.host}:{settings.port}/open_api/v1.3"
    sample_path = settings.data_dir / "demo-customers.csv"
    example = f"""
Demo advertiser {adv.id}, token {token}

  md5=$(md5sum {sample_path} | cut -d' ' -f1)
  curl -s -H 'Access-Token: {token}' {base}/dmp/custom_audience/file/upload/ \\
       -F advertiser_id={adv.id} -F calculate_type=EMAIL_SHA256 \\
       -F file_signature=$md5 -F file=@{sample_path}
  curl -s -H 'Access-Token: {token}' -H 'Content-Type: application/json' \\
       {base}/dmp/custom_audience/create/ -d '{{"advertiser_id": "{adv.id}",
       "custom_audience_name": "Demo buyers", "calculate_type": "EMAIL_SHA256",
       "file_paths": ["<file_path from the upload>"]}}'
  curl -s -H 'Access-Token: {token}' \\
       '{base}/dmp/custom_audience/list/?advertiser_id={adv.id}'
"""
    if "pixel_code" in replayed:
        today = datetime.now(UTC).date().isoformat()
        example += f"""  curl -s -H 'Access-Token: {token}' -G {base}/pixel/event/stats/ \\
       --data-urlencode advertiser_id={adv.id} \\
       --data-urlencode 'pixel_ids=["{replayed["pixel_id"]}"]' \\
       --data-urlencode 'date_range={{"start_date": "{replayed["replay"]["start"][:10]}", \\
"end_date": "{today}"}}'
"""
    return {
        "advertiser_id": str(adv.id),
        "access_token": token,
        "users_import": summary,
        "sample_file": str(sample_path),
        "example": example,
        **replayed,
    }


# --- replay -------------------------------------------------------------------------------------


@contextmanager
def serving(rt: Runtime) -> Iterator[str]:
    """The real app over ``rt``, served on a free port of 127.0.0.1 while the block runs; yields
    its base URL. (A private port: the configured one may be taken, and is for ``serve``.)"""
    import uvicorn

    from likewise.api import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(runtime=rt), log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="demo-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise LikewiseError("demo: the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


PURCHASERS = "Demo purchasers, last 30 days"


def _purchasers(
    http: httpx.Client, base: str, rt: Runtime, advertiser_id: str, token: str, pixel_id: str
) -> dict[str, Any]:
    """A website audience over the replayed events, made through ``rule/create/`` (once: later
    runs find it), evaluated before the demo serves: its id, status and size."""
    views, _ = rt.audiences.list(advertiser_id=int(advertiser_id), ids=None, page=1, page_size=100)
    found = [v for v in views if v.name == PURCHASERS]
    if found:
        audience_id = found[0].id
        rt.rules.evaluate(audience_id)  # the new events count too
    else:
        rule = {
            "event_source_ids": [pixel_id],
            "retention_days": 30,
            "filter_set": {
                "operator": "OR",
                "filters": [{"field": "EVENT", "operator": "EQ", "value": "COMPLETE PAYMENT"}],
            },
        }
        data = _ok(
            http.post(
                f"{base}/open_api/v1.3/dmp/custom_audience/rule/create/",
                headers={"Access-Token": token},
                json={
                    "advertiser_id": advertiser_id,
                    "custom_audience_name": PURCHASERS,
                    "audience_type": "PIXEL",
                    "rule_spec": {"inclusion_rule_set": {"operator": "OR", "rules": [rule]}},
                },
            )
        )
        audience_id = int(data["custom_audience_id"])
    rt.jobs.wait_idle(300)
    [view] = rt.audiences.get(advertiser_id=int(advertiser_id), ids=[audience_id], history_size=0)
    size = len(rt.audiences.current_members(audience_id))
    return {"custom_audience_id": str(audience_id), "status": view.status.value, "members": size}


LOOKALIKE = "Demo purchasers lookalike (BROAD)"


def _lookalike(
    http: httpx.Client,
    base: str,
    rt: Runtime,
    advertiser_id: str,
    token: str,
    seed: dict[str, Any],
    countries: list[str],
) -> dict[str, Any]:
    """A BROAD lookalike of the purchasers in the demo users' countries, made through
    ``lookalike/create/`` (once: later runs refresh it): its id, size and quality."""
    if seed["members"] < rt.settings.min_lookalike_seed:
        return {"status": "NOT_CREATED", "msg": "too few purchasers to seed a lookalike"}
    views, _ = rt.audiences.list(advertiser_id=int(advertiser_id), ids=None, page=1, page_size=100)
    found = [v for v in views if v.name == LOOKALIKE]
    headers = {"Access-Token": token}
    if found:
        audience_id = found[0].id
        _ok(
            http.post(
                f"{base}/open_api/v1.3/dmp/custom_audience/lookalike/update/",
                headers=headers,
                json={"advertiser_id": advertiser_id, "custom_audience_ids": [str(audience_id)]},
            )
        )
    else:
        locations = [c.location_id for c in map(location_of_country, countries) if c is not None]
        data = _ok(
            http.post(
                f"{base}/open_api/v1.3/dmp/custom_audience/lookalike/create/",
                headers=headers,
                json={
                    "advertiser_id": advertiser_id,
                    "custom_audience_name": LOOKALIKE,
                    "lookalike_spec": {
                        "source_audience_id": seed["custom_audience_id"],
                        "location_ids": locations,
                        "audience_size": "BROAD",
                        "include_source": False,
                        "mobile_os": "ALL",
                        "placements": ["TikTok"],
                    },
                },
            )
        )
        audience_id = int(data["custom_audience_id"])
    rt.jobs.wait_idle(600)
    [view] = rt.audiences.get(advertiser_id=int(advertiser_id), ids=[audience_id], history_size=0)
    quality = view.lookalike_quality or {}
    return {
        "custom_audience_id": str(audience_id),
        "status": view.status.value,
        "members": len(rt.audiences.current_members(audience_id)),
        "quality": {k: quality.get(k) for k in ("model", "recall", "lift", "auc", "held_out")},
    }


def _ok(response: httpx.Response) -> dict[str, Any]:
    """The answer's ``data``, or a readable error (the CLI prints one line, not a traceback)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or body.get("code") != 0:
        message = body.get("message") or response.text[:200]
        raise LikewiseError(f"demo: {response.request.url.path} failed: {message}")
    return body["data"]  # type: ignore[no-any-return]


def _sources(
    http: httpx.Client, base: str, advertiser_id: str, token: str, admin_token: str
) -> dict[str, str]:
    """The demo advertiser's pixel (TikTok's ``pixel/create/``, as an advertiser would), app,
    lead form and account (the admin API: TikTok has no endpoint for these). Reused when a
    previous run made them."""
    api = f"{base}/open_api/v1.3"
    auth = {"Access-Token": token}
    found = _ok(
        http.get(
            f"{api}/pixel/list/",
            params={"advertiser_id": advertiser_id, "name": DEMO_PIXEL},
            headers=auth,
        )
    )["pixels"]
    pixel = found[0] if found else None
    if pixel is None:
        pixel = _ok(
            http.post(
                f"{api}/pixel/create/",
                json={
                    "advertiser_id": advertiser_id,
                    "pixel_name": DEMO_PIXEL,
                    "pixel_category": "ONLINE_STORE",
                },
                headers=auth,
            )
        )
    admin = f"{base}/admin/v1/advertisers/{advertiser_id}/event-sources"
    admin_auth = {"X-Admin-Token": admin_token}
    listed = _ok(http.get(admin, params={"page_size": 1000}, headers=admin_auth))["list"]
    have = {(s["kind"], s["code"]) for s in listed}
    for kind, code, name, extra in (
        ("APP", DEMO_APP, "Likewise Demo App", {"settings": {"store_id": DEMO_APP}}),
        ("LEAD_FORM", DEMO_FORM, "Likewise Demo Newsletter", {}),
        ("ACCOUNT", DEMO_ACCOUNT, "@likewise.demo", {}),
    ):
        if (kind, code) not in have:
            body = {"kind": kind, "name": name, "code": code, **extra}
            _ok(http.post(admin, json=body, headers=admin_auth))
    return {"pixel_id": str(pixel["pixel_id"]), "pixel_code": str(pixel["pixel_code"])}


def demo_activity(
    users: pa.Table, advertiser: SimAdvertiser, *, seed: int, events: int, end: float
) -> SimActivity:
    """About ``events`` events of the demo advertiser and its users over the 30 days before
    ``end``: one simulation at scale 1 measures the volume, the second is scaled to it."""
    from likewise.sim import simulate_activity

    start = end - DEMO_DAYS * 86400

    def simulate(scale: float) -> SimActivity:
        return simulate_activity(
            users,
            [advertiser],
            start=start,
            end=end,
            seed=seed,
            scale=scale,
            organic=DEMO_ORGANIC,
        )

    total = sum(simulate(1.0).counts().values())
    return simulate(events / max(total, 1))


def replay_demo(
    rt: Runtime, *, advertiser_id: str, token: str, users: pa.Table, seed: int, events: int
) -> dict[str, Any]:
    """Serve the app over ``rt``, create the demo sources, replay about ``events`` simulated
    events, wait until they are processed, and report what was sent, stored and expected."""
    import httpx

    from likewise.sim import SimAdvertiser, replay

    admin_token = rt.settings.admin_token
    assert admin_token is not None  # build_demo checked
    rt.start()
    with serving(rt) as base, httpx.Client(timeout=120) as http:
        sources = _sources(http, base, advertiser_id, token, admin_token)
        advertiser = SimAdvertiser(
            id=advertiser_id,
            category=DEMO_CATEGORY,
            pixel_code=sources["pixel_code"],
            app_id=DEMO_APP,
            lead_form_id=DEMO_FORM,
            account_id=DEMO_ACCOUNT,
            domain=DEMO_DOMAIN,
        )
        activity = demo_activity(users, advertiser, seed=seed, events=events, end=time.time() - 60)
        sent = replay(activity, base, access_token=token, admin_token=admin_token, client=http)
        rt.events.flush()  # processed, deduplicated and resolved before the numbers are read
        rule_audience = _purchasers(http, base, rt, advertiser_id, token, sources["pixel_id"])
        countries = sorted({c for c in users.column("country").to_pylist() if c})
        lookalike = _lookalike(http, base, rt, advertiser_id, token, rule_audience, countries)
    start = datetime.fromtimestamp(activity.start, UTC)
    end = datetime.fromtimestamp(activity.end, UTC)
    stored: dict[str, Any] = {}
    for kind, code in (("web", sources["pixel_code"]), ("app", DEMO_APP)):
        source = rt.sources.resolve({int(advertiser_id)}, kind, code)
        totals = {"received": 0, "deduplicated": 0, "merged": 0, "limited": 0}
        for row in rt.events.stats([source.id], start.date(), end.date()):
            for key in totals:
                totals[key] += row[key]
        stored[kind] = totals
    prefixes = (f"sim{seed}-w", f"sim{seed}-a")
    stored["resolved"] = sum(
        1 for eid in rt.events.users_of_events(int(advertiser_id)) if eid.startswith(prefixes)
    )
    return {
        **sources,
        "app_id": DEMO_APP,
        "lead_form_id": DEMO_FORM,
        "account_id": DEMO_ACCOUNT,
        "events_replayed": sum(s.accepted for s in sent.values()),
        "rule_audience": rule_audience,
        "lookalike_audience": lookalike,
        "replay": {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "sent": {kind: s.as_dict() for kind, s in sent.items()},
            "stored": stored,
            "expected": activity.expected(advertiser_id),
        },
    }
