"""The Likewise pixel in a real headless Chromium: a shop on another origin loads ``ttq.js`` from
the server, and everything is asserted against what the server stored.

Needs Debian's ``chromium`` (``scripts/test`` installs it) and the ``playwright`` Python package;
Playwright's own browser download is never used.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb
import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, sync_playwright

from tests.at_rest import contents
from tests.conftest import Server, start_server

STATIC = Path(__file__).resolve().parents[2] / "likewise" / "api" / "static"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
COLLECT = "/pixel/v1/collect"
QUIET_SECONDS = 1.5  # three times the pixel's flush delay: anything queued would have gone
RAW_EMAIL = "  Jane.Doe+Shop@Example.COM "
serve = contextmanager(start_server)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- fixtures: the Likewise server, a shop on another origin, one browser ----------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("pixel")) as running:
        yield running


@dataclass
class Sent:
    """One request as it reached the Likewise side."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Static(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Recorder(BaseHTTPRequestHandler):
    """Passes every request on to Likewise and keeps a copy. Playwright reports neither the
    beacons a page sends as it goes away nor any beacon's body; this sees every byte."""

    target: str
    sent: list[Sent]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_OPTIONS(self) -> None:
        self._forward()

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.sent.append(Sent(self.command, self.path, dict(self.headers.items()), body))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
        answer = httpx.request(self.command, self.target + self.path, headers=headers, content=body)
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in _NOT_FORWARDED:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)


_NOT_FORWARDED = {
    "host",
    "connection",
    "keep-alive",
    "accept-encoding",
    "content-encoding",
    "content-length",
    "transfer-encoding",
}


@contextmanager
def running(httpd: ThreadingHTTPServer, host: str = "127.0.0.1") -> Iterator[str]:
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@dataclass
class Gateway:
    """Likewise as the browser reaches it (through the recorder), and what it was sent."""

    url: str
    sent: list[Sent]


@pytest.fixture(scope="module")
def gateway(server: Server) -> Iterator[Gateway]:
    sent: list[Sent] = []
    handler = type("Recorder", (_Recorder,), {"target": server.url, "sent": sent})
    with running(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield Gateway(url, sent)


DIRECT_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="{likewise}/pixel/v1/ttq.js"></script>
<script>
  // The script included directly, load() called after it.
  ttq.load(new URLSearchParams(location.search).get('pixel'));
  ttq.identify({{phone_number: '+1 (415) 555-0100', external_id: ' user-42 ',
                 email: '{hashed_email}'}});
  ttq.track('SignUpNewsletter', {{plan: 'weekly'}}, {{event_id: 'signup-1'}});
</script></head><body>direct</body></html>
"""
PREHASHED = sha("someone@example.com").upper()


@pytest.fixture(scope="module")
def site(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shop: a plain static server on another site than Likewise (``localhost`` against
    ``127.0.0.1``, both secure contexts for Web Crypto), so requests are cross-site as in life:
    CORS applies and the shop's cookies stay on the shop."""
    root = tmp_path_factory.mktemp("site")
    shutil.copy(STATIC / "demo-shop.html", root / "demo-shop.html")
    page = DIRECT_PAGE.format(likewise=gateway.url, hashed_email=PREHASHED)
    (root / "direct.html").write_text(page)
    handler = partial(_Static, directory=str(root))
    with running(ThreadingHTTPServer(("127.0.0.1", 0), handler), host="localhost") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# --- helpers ----------------------------------------------------------------------------------


class Shop:
    """An advertiser with a pixel, and what the server stored for it."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.advertiser_id, self.token = server.advertiser(name)
        pixel = server.runtime.sources.create(
            advertiser_id=int(self.advertiser_id), kind="PIXEL", name=name
        )
        self.pixel_id, self.pixel_code = str(pixel.id), pixel.code

    def rows(self) -> list[dict[str, Any]]:
        self.server.runtime.events.flush()
        source = self.server.runtime.events.store.sql_source(int(self.advertiser_id))
        if source is None:
            return []
        result = duckdb.sql(f"SELECT * FROM {source} ORDER BY event_time")
        return [dict(zip(result.columns, row, strict=True)) for row in result.fetchall()]

    def wait_rows(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """Exactly ``count`` stored events, once they arrived (and nothing more came after)."""
        deadline = time.monotonic() + timeout
        while len(rows := self.rows()) < count:
            assert time.monotonic() < deadline, f"{len(rows)} of {count} events arrived: {rows}"
            time.sleep(0.2)
        time.sleep(QUIET_SECONDS)
        rows = self.rows()
        assert len(rows) == count, [r["event"] for r in rows]
        return rows

    def received(self) -> int:
        today = datetime.now(UTC).date().isoformat()
        body = self.server.call(
            "GET",
            "/pixel/event/stats/",
            self.token,
            params={
                "advertiser_id": self.advertiser_id,
                "pixel_ids": json.dumps([self.pixel_id]),
                "date_range": json.dumps({"start_date": "2026-01-01", "end_date": today}),
            },
        )
        assert body["code"] == 0, body
        return sum(row["received"] for row in body["data"]["list"][0]["stats"])


class Visitor:
    """One browser profile, with every request it sent: as Playwright saw them leave the
    browser, and as they reached Likewise (the only place besides the shop they could go)."""

    def __init__(self, browser: Browser, gateway: Gateway, site: str, shop: Shop) -> None:
        self.context: BrowserContext = browser.new_context()
        self.gateway, self.site, self.shop = gateway, site, shop
        self.first = len(gateway.sent)  # tests run one at a time: what follows is ours
        self.requests: list[Request] = []
        self.context.on("request", self._seen)
        self.page: Page = self.context.new_page()

    def _seen(self, request: Request) -> None:
        self.requests.append(request)

    def url(self, **extra: str) -> str:
        query = urlencode({"likewise": self.gateway.url, "pixel": self.shop.pixel_code, **extra})
        return f"{self.site}/demo-shop.html?{query}"

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.wait_pixel()

    def wait_pixel(self) -> None:
        self.page.wait_for_function("window.ttq && window.ttq._likewise === true")

    def go(self, selector: str) -> None:
        """Follows a link or button that loads another page of the shop."""
        with self.page.expect_navigation():
            self.page.click(selector)
        self.wait_pixel()

    def collects(self) -> list[Sent]:
        """The collector requests that reached Likewise, beacons included."""
        return [
            s for s in self.gateway.sent[self.first :] if (s.method, s.path) == ("POST", COLLECT)
        ]

    def cookie(self, name: str) -> str | None:
        for c in self.context.cookies(self.site):
            if c["name"] == name:
                return c["value"]
        return None

    def sent(self) -> list[bytes]:
        """Everything that left the browser: addresses, headers and bodies."""
        self.page.wait_for_timeout(50)  # the sync API delivers request events in its own calls
        out = []
        for r in self.requests:
            out += [r.url.encode(), json.dumps(r.headers).encode(), r.post_data_buffer or b""]
        for s in self.gateway.sent[self.first :]:
            out += [s.path.encode(), json.dumps(s.headers).encode(), s.body]
        return out

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visitor(
    browser: Browser,
    server: Server,
    gateway: Gateway,
    site: str,
    request: pytest.FixtureRequest,
) -> Iterator[Visitor]:
    v = Visitor(browser, gateway, site, Shop(server, request.node.name[:60]))
    try:
        yield v
    finally:
        v.close()


# --- the story --------------------------------------------------------------------------------


def test_a_visit_from_an_ad_to_a_purchase_is_stored_hashed_and_complete(
    visitor: Visitor, server: Server
) -> None:
    shop = visitor.shop
    visitor.open(visitor.url(ttclid="E.C.P.click-123"))
    visitor.page.click("#consent-accept")
    shop.wait_rows(1)  # the home page view

    visitor.go("#product-sku-mug")
    visitor.go("#add-to-cart")  # tracked as the product page goes away: sent by sendBeacon
    visitor.go("#checkout")
    visitor.page.fill("#email", RAW_EMAIL)
    visitor.page.click("#place-order")
    order = visitor.page.text_content("#order-id")
    assert order and order.startswith("order-")

    rows = shop.wait_rows(7)
    names = [r["event"] for r in rows]
    assert sorted(names) == sorted(["Pageview"] * 4 + ["ViewContent", "AddToCart", "Purchase"]), (
        names
    )
    assert shop.received() == 7
    by_name = {r["event"]: r for r in rows}
    assert {r["channel"] for r in rows} == {"pixel"}

    view = by_name["ViewContent"]
    assert list(view["content_ids"]) == ["sku-mug"]
    assert (view["value"], view["currency"]) == (12.5, "USD")
    assert "view=product" in view["url"] and "sku=sku-mug" in view["url"]
    assert json.loads(view["properties"])["content_type"] == "product"
    assert list(by_name["AddToCart"]["content_ids"]) == ["sku-mug"]
    product_view = next(r for r in rows if r["event"] == "Pageview" and "sku=" in r["url"])
    assert product_view["referrer"].startswith(visitor.site + "/demo-shop.html")

    # The pixel's requests are CORS-simple (no preflight); AddToCart left in a beacon.
    collects = visitor.collects()
    assert all(s.headers["Content-Type"].startswith("text/plain") for s in collects)
    assert not any(s.method == "OPTIONS" for s in visitor.gateway.sent[visitor.first :])
    (beacon,) = [s for s in collects if b'"AddToCart"' in s.body]
    assert beacon.headers["Sec-Fetch-Mode"] == "no-cors"  # what sendBeacon sends, not fetch()
    assert "Cookie" not in beacon.headers  # the shop's cookies stay on the shop

    # The purchase carries the identity hashed in the browser, and the page's order id.
    purchase = by_name["Purchase"]
    assert list(purchase["email"]) == [sha(RAW_EMAIL.strip().lower())]
    assert purchase["event_id"] == order
    assert (purchase["value"], purchase["currency"]) == (12.5, "USD")
    assert all(not r["email"] for r in rows if r["event"] != "Purchase")  # identify came last

    # The browser id is the first-party cookie; the click id came from the landing URL only.
    ttp = visitor.cookie("_ttp")
    assert ttp and {r["ttp"] for r in rows} == {ttp}
    assert visitor.cookie("ttclid") == "E.C.P.click-123"
    assert {r["ttclid"] for r in rows} == {"E.C.P.click-123"}

    # No raw address left the browser, nor reached the server's disk. The event worker holds
    # its state database open: stop it, so the scan reads that file too (processing then goes
    # on in the test server's process, on demand).
    server.runtime.events.stop_processing()
    for raw in (RAW_EMAIL.strip(), RAW_EMAIL.strip().lower(), "Jane.Doe%2BShop"):
        assert not any(raw.encode() in sent for sent in visitor.sent()), raw
        for path in server.data_dir.rglob("*"):
            if path.is_file():
                assert raw.encode() not in contents(path), (raw, path)


def test_consent_held_then_granted_then_revoked(visitor: Visitor) -> None:
    shop = visitor.shop
    visitor.open(visitor.url(ttclid="click-held"))
    assert visitor.page.is_visible("#consent")
    visitor.go("#product-sku-tote")  # still no choice: this page's events wait in the browser
    time.sleep(QUIET_SECONDS)
    assert visitor.collects() == []
    assert visitor.cookie("_ttp") is None and visitor.cookie("ttclid") is None
    assert shop.rows() == []

    visitor.page.click("#consent-accept")  # the product page's queued events arrive
    rows = shop.wait_rows(2)
    assert sorted(r["event"] for r in rows) == ["Pageview", "ViewContent"]
    first_ttp = visitor.cookie("_ttp")
    assert first_ttp and {r["ttp"] for r in rows} == {first_ttp}
    # The click id was on the landing page, left before any choice: nothing kept it.
    assert {r["ttclid"] for r in rows} == {None}

    visitor.page.click("#cookie-settings")
    visitor.page.click("#consent-reject")
    sent_before = len(visitor.collects())
    assert visitor.cookie("_ttp") is None and visitor.cookie("ttclid") is None
    visitor.go("#add-to-cart")  # tracked after the refusal: never sent
    time.sleep(QUIET_SECONDS)
    assert len(visitor.collects()) == sent_before
    assert visitor.cookie("_ttp") is None
    assert len(shop.rows()) == 2

    # Granted again: events flow with a new browser id (the old one was deleted).
    visitor.page.click("#cookie-settings")
    visitor.page.click("#consent-accept")
    visitor.go("#nav-home")
    rows = shop.wait_rows(3)
    again = visitor.cookie("_ttp")
    assert again and again != first_ttp
    assert rows[-1]["event"] == "Pageview" and rows[-1]["ttp"] == again


def test_the_script_included_directly_then_loaded(visitor: Visitor) -> None:
    shop = visitor.shop
    visitor.open(f"{visitor.site}/direct.html?pixel={shop.pixel_code}")
    (row,) = shop.wait_rows(1)
    assert (row["event"], row["event_id"]) == ("SignUpNewsletter", "signup-1")
    assert json.loads(row["properties"]) == {"plan": "weekly"}
    assert list(row["phone"]) == [sha("+14155550100")]
    assert list(row["external_id"]) == [sha("user-42")]
    assert list(row["email"]) == [PREHASHED.lower()]  # already hashed: passed through
    assert row["ttp"] == visitor.cookie("_ttp")
    assert not any(b"555-0100" in sent or b"user-42" in sent for sent in visitor.sent())


# --- the collector, directly ------------------------------------------------------------------


def test_the_collector_answers_cross_origin_and_refuses_raw_identifiers(
    visitor: Visitor, server: Server
) -> None:
    shop = visitor.shop
    script = httpx.get(server.url + "/pixel/v1/ttq.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("application/javascript")

    preflight = httpx.options(
        server.url + COLLECT,
        headers={
            "Origin": visitor.site,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()

    user = {"email": "jane@example.com"}
    raw = {"pixel_code": shop.pixel_code, "events": [{"event": "Purchase", "user": user}]}
    answer = httpx.post(server.url + COLLECT, content=json.dumps(raw)).json()
    assert answer["code"] == 40062, answer

    # From the shop's origin, in the browser: application/json forces a real preflight, and
    # the answers (success and refusal) are readable by the page.
    visitor.open(visitor.url())
    collect = visitor.gateway.url + COLLECT
    post = """async ([url, body]) => {
        const r = await fetch(url, {method: 'POST', body: JSON.stringify(body),
                                    headers: {'Content-Type': 'application/json'}});
        return (await r.json()).code;
    }"""
    good = {"pixel_code": shop.pixel_code, "events": [{"event": "Lead", "event_id": "lead-1"}]}
    assert visitor.page.evaluate(post, [collect, good]) == 0
    assert visitor.page.evaluate(post, [collect, raw]) == 40062
    methods = [(s.method, s.path) for s in visitor.gateway.sent[visitor.first :]]
    assert methods.count(("OPTIONS", COLLECT)) >= 1, methods
    (row,) = shop.wait_rows(1)
    assert (row["event"], row["event_id"]) == ("Lead", "lead-1")
