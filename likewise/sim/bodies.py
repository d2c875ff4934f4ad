"""Wire bodies of a :class:`likewise.sim.activity.SimActivity`, rendered from its columns.

Identifiers are put on the wire the way senders must: e-mails as SHA-256 of the trimmed,
lower-cased address, phones as SHA-256 of the E.164 form, customer ids as SHA-256, device ids
raw as the device reports them (either case) or as SHA-256 of the lower-case id. The canonical
forms come from the sim's own ground truth (:func:`ground_truth_identifiers`) and hashlib, once
per user.

Every field is first built as an Arrow column over all events (null where an event has no such
field); :func:`records` then turns rows into dicts one *shape* (set of present fields) at a time,
so the per-event Python work is a ``dict(zip(...))``. A million events take a few seconds.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likewise.sim.behaviour import CATEGORIES, MAX_EVENTS_PER_BODY, MAX_PIXEL_EVENTS_PER_BODY
from likewise.sim.phones import fixed_width_strings
from likewise.sim.users import _hex, _splitmix64, ground_truth_identifiers

if TYPE_CHECKING:
    from likewise.sim.activity import SimActivity
    from likewise.sim.behaviour import Stream

__all__ = ["app_bodies", "engagement_bodies", "pixel_bodies", "records", "web_bodies"]

_ATT_NAMES = (None, "AUTHORIZED", "DENIED", "NOT_DETERMINED")
_CURRENCY = "USD"

Column = pa.Array | Sequence[Any]


# --------------------------------------------------------------------------- helpers


def records(columns: Mapping[str, Column]) -> list[dict[str, Any]]:
    """Rows of equally long columns as dicts without their null (``None``) fields, keys in
    column order. Columns are Arrow arrays or Python lists (of dicts, lists, ...)."""
    cols = {
        k: v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v for k, v in columns.items()
    }
    names = list(cols)
    if not names:
        return []
    m = len(cols[names[0]])
    valid = np.zeros((len(names), m), dtype=bool)
    for i, name in enumerate(names):
        col = cols[name]
        if isinstance(col, pa.Array):
            valid[i] = col.is_valid().to_numpy(zero_copy_only=False)
        else:
            valid[i] = np.fromiter((v is not None for v in col), dtype=bool, count=m)
    shape = (valid.astype(np.int64) << np.arange(len(names), dtype=np.int64)[:, None]).sum(axis=0)
    out = np.empty(m, dtype=object)
    # Millions of new dicts would set off the cyclic garbage collector over and over (it found
    # nothing here and took a third of the time): pause it while building them.
    with _gc_paused():
        for s in np.unique(shape).tolist():
            _fill(out, cols, names, shape, s)
    return out.tolist()  # type: ignore[no-any-return]


def _fill(
    out: np.ndarray, cols: Mapping[str, Column], names: list[str], shape: np.ndarray, s: int
) -> None:
    """Put the dicts of the rows of one shape into ``out``."""
    rows = np.flatnonzero(shape == s)
    keys = [n for i, n in enumerate(names) if (s >> i) & 1]
    values = [_take(cols[k], rows) for k in keys]
    # map/zip keep the per-row work in C; an object array takes the dicts without a loop.
    dicts = np.empty(len(rows), dtype=object)
    dicts[:] = (
        list(map(dict, map(zip, repeat(keys), zip(*values, strict=True))))
        if keys
        else [{} for _ in range(len(rows))]
    )
    out[rows] = dicts


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _take(col: Column, rows: np.ndarray) -> list[Any]:
    if isinstance(col, pa.Array):
        return col.take(pa.array(rows)).to_pylist()  # type: ignore[no-any-return]
    return [col[i] for i in rows.tolist()]


def _where(mask: np.ndarray, values: pa.Array) -> pa.Array:
    """``values`` where ``mask``, null elsewhere."""
    return pc.if_else(pa.array(mask), values, pa.scalar(None, values.type))


def _lookup(values: Sequence[Any], index: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """``values[index]`` per row (null where not ``valid`` or the value is None)."""
    index = np.asarray(index, dtype=np.int64)
    ok = np.ones(len(index), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    table = pa.array(list(values)) if len(values) else pa.array([], pa.string())
    return table.take(pa.array(np.where(ok, index, 0), mask=~ok))


def _digits(x: np.ndarray, width: int = 0, valid: np.ndarray | None = None) -> pa.Array:
    text = pc.cast(
        pa.array(np.asarray(x, dtype=np.int64), mask=None if valid is None else ~valid), pa.string()
    )
    return pc.utf8_lpad(text, width, "0") if width else text


def _join(*parts: Any) -> pa.Array:
    """Concatenation per row; null if any part is null."""
    return pc.binary_join_element_wise(*parts, "")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _user_hashes(act: SimActivity, user: np.ndarray, column: str) -> pa.Array:
    """SHA-256 of each row's user's canonical ``column`` (a ground-truth form), computed once per
    distinct user; null where the user has none."""
    uniq, inverse = np.unique(np.asarray(user, dtype=np.int64), return_inverse=True)
    forms = ground_truth_identifiers(act.users.take(pa.array(uniq))).column(column).to_pylist()
    hashed = pa.array([None if v is None else _sha(v) for v in forms], pa.string())
    return hashed.take(pa.array(inverse.astype(np.int64)))


def _hash_per_key(keys: np.ndarray, text: Any) -> pa.Array:
    """``text(key)`` for each distinct key, spread back over the rows."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    return pa.array([text(int(k)) for k in uniq], pa.string()).take(
        pa.array(inverse.astype(np.int64))
    )


def ttclid(seed: int, click: int) -> str:
    """The click id of ad click number ``click`` (TikTok's look: ``E.C.P.`` and opaque text)."""
    return "E.C.P." + _sha(f"sim{seed}:click:{click}")[:40]


def _ttclids(seed: int, click: np.ndarray) -> pa.Array:
    has = click >= 0
    if not has.any():
        return pa.nulls(len(click), pa.string())
    values = _hash_per_key(click[has], lambda k: ttclid(seed, k))
    return _scatter(has, values)


def _scatter(mask: np.ndarray, values: pa.Array) -> pa.Array:
    """``values`` (one per true ``mask`` row) at their rows, null elsewhere."""
    position = np.cumsum(mask) - 1
    return values.take(pa.array(np.where(mask, position, 0), mask=~mask))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for lo in range(0, len(items), size):
        yield items[lo : lo + size]


def _by_source(stream: Stream, rows: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``rows`` grouped by advertiser, each group in time order (ties: generation order)."""
    c = stream.cols
    order = rows[np.lexsort((rows, c["t"][rows], c["adv"][rows]))]
    cuts = np.flatnonzero(np.diff(c["adv"][order])) + 1
    return [(int(c["adv"][g[0]]), g) for g in np.split(order, cuts) if len(g)]


def _skus(act: SimActivity, adv: np.ndarray, product: np.ndarray, valid: np.ndarray) -> pa.Array:
    ids = _lookup([a.id for a in act.advertisers], adv, valid)
    return _join(ids, "-sku-", _digits(product, 2, valid))


def _prices(act: SimActivity, adv: np.ndarray, product: np.ndarray) -> np.ndarray:
    """List prices per row (0 for rows without a product or advertiser)."""
    if len(act.advertisers) == 0:
        return np.zeros(len(adv))
    ok = (adv >= 0) & (product >= 0)
    return np.where(ok, act.prices[np.maximum(adv, 0), np.maximum(product, 0)], 0.0)


def _at(columns: Mapping[str, pa.Array], rows: np.ndarray) -> dict[str, pa.Array]:
    index = pa.array(rows)
    return {k: v.take(index) for k, v in columns.items()}


def _const(value: Any, m: int) -> pa.Array:
    return pa.array([value] * m)


def _spread(mask: np.ndarray, values: list[Any]) -> list[Any]:
    """``values`` (one per true ``mask`` row) at their rows, None elsewhere."""
    out: list[Any] = [None] * len(mask)
    for row, value in zip(np.flatnonzero(mask).tolist(), values, strict=True):
        out[row] = value
    return out


def _bodies(
    groups: Sequence[tuple[int, np.ndarray]],
    render: Callable[[np.ndarray], list[dict[str, Any]]],
    size: int,
    wrap: Callable[[int, list[dict[str, Any]]], dict[str, Any]],
) -> Iterator[dict[str, Any]]:
    """Bodies of at most ``size`` events per group, rendered a block of bodies at a time (so
    only one block of event dicts is alive while a caller streams them)."""
    block = size * max(1, _BLOCK_EVENTS // size)
    for j, rows in groups:
        for lo in range(0, len(rows), block):
            for chunk in _chunks(render(rows[lo : lo + block]), size):
                yield wrap(j, chunk)


_BLOCK_EVENTS = 50_000


# --------------------------------------------------------------------------- web


class _Web:
    """Columns of the web stream (stream order), rendered per block of rows as the server or
    the browser copy."""

    def __init__(self, act: SimActivity) -> None:
        self.act = act
        c = self.c = act.web.cols
        m = len(act.web)
        advs = act.advertisers
        adv, code, user = c["adv"], c["code"], c["user"]
        # The shop's first-party _ttp cookie: one per user and shop, unique by construction.
        pair = (user * max(len(advs), 1) + adv).astype(np.uint64)
        mixed = _splitmix64(pair + np.uint64((act.seed * 0x9E3779B1 + 0x77) % 2**63))
        ttp = fixed_width_strings(_hex(mixed).copy()) if m else pa.array([], pa.string())
        email = _user_hashes(act, user, "email_basic")
        ids = act.users.column("user_id")
        external = _hash_per_key(
            pair.astype(np.int64),
            lambda k: _sha(f"{advs[k % len(advs)].id}:{ids[k // len(advs)].as_py()}"),
        )
        click = _ttclids(act.seed, c["click"])
        sku = _skus(act, adv, c["product"], np.ones(m, dtype=bool))
        site = _lookup([f"https://{a.site}" for a in advs], adv)
        landing = _where(code == 0, _join("/?ttclid=", click))
        product_page = _where(code == 1, _join("/products/", sku))
        tail = _lookup(["/", None, "/cart", "/checkout/complete"], code)
        price = _prices(act, adv, c["product"])
        qty = c["qty"].astype(np.int64)
        self.cols = {
            "event": _lookup(act.web.names, code),
            "event_time": pa.array(c["t"]),
            "timestamp": pc.cast(pa.array(c["t"]), pa.string()),
            "event_id": act.event_ids_of("web"),
            "ttp": ttp,
            "email": _where(c["email"], email),
            "phone": _where(c["phone"], _user_hashes(act, user, "phone_e164")),
            "external_id": _where(c["external"], external),
            "browser_email": _where(c["login"], email),
            "browser_external_id": _where(c["login"] & c["external"], external),
            "ttclid": click,
            "url": _join(site, pc.coalesce(landing, product_page, tail)),
            "sku": sku,
            "category": _lookup([a.category for a in advs], adv),
            "price": pa.array(price),
            "quantity": pa.array(qty),
            "value": pa.array(np.round(price * qty, 2)),
            "limited_data_use": _where(c["limited"], _const(True, m)),
        }

    def _properties(self, b: dict[str, pa.Array], rows: np.ndarray) -> list[Any]:
        shown = self.c["code"][rows] > 0  # a page view has no products
        mask = pa.array(shown)
        contents = records(
            {
                "content_id": b["sku"].filter(mask),
                "content_category": b["category"].filter(mask),
                "price": b["price"].filter(mask),
                "quantity": b["quantity"].filter(mask),
            }
        )
        n = len(contents)
        props = records(
            {
                "content_type": _const("product", n),
                "contents": [[item] for item in contents],
                "value": b["value"].filter(mask),
                "currency": _const(_CURRENCY, n),
            }
        )
        return _spread(shown, props)

    def server(self, rows: np.ndarray) -> list[dict[str, Any]]:
        b = _at(self.cols, rows)
        user = records({k: b[k] for k in ("ttp", "email", "phone", "external_id", "ttclid")})
        return records(
            {
                "event": b["event"],
                "event_time": b["event_time"],
                "event_id": b["event_id"],
                "user": user,
                "page": records({"url": b["url"]}),
                "properties": self._properties(b, rows),
                "limited_data_use": b["limited_data_use"],
            }
        )

    def browser(self, rows: np.ndarray) -> list[dict[str, Any]]:
        b = _at(self.cols, rows)
        user = records({"email": b["browser_email"], "external_id": b["browser_external_id"]})
        return records(
            {
                "event": b["event"],
                "event_id": b["event_id"],
                "timestamp": b["timestamp"],
                "page": records({"url": b["url"]}),
                "properties": self._properties(b, rows),
                "user": [u or None for u in user],
                "ttp": b["ttp"],
                "ttclid": b["ttclid"],
            }
        )


def web_bodies(act: SimActivity) -> Iterator[dict[str, Any]]:
    """``event/track/`` bodies from the shops' servers; a retried event follows its first copy."""
    web = _Web(act)
    retry = act.web.cols["retry"].astype(np.int64)
    groups = [
        (j, np.repeat(r, 1 + retry[r])) for j, r in _by_source(act.web, np.arange(len(act.web)))
    ]
    codes = [a.pixel_code for a in act.advertisers]
    return _bodies(
        groups,
        web.server,
        MAX_EVENTS_PER_BODY,
        lambda j, data: {"event_source": "web", "event_source_id": codes[j], "data": data},
    )


def pixel_bodies(act: SimActivity) -> Iterator[dict[str, Any]]:
    """``/pixel/v1/collect`` bodies: the browser copies (the pixel knows the e-mail and customer
    id only when the shopper is logged in, through ``ttq.identify``)."""
    web = _Web(act)
    codes = [a.pixel_code for a in act.advertisers]
    return _bodies(
        _by_source(act.web, np.flatnonzero(act.web.cols["pixel"])),
        web.browser,
        MAX_PIXEL_EVENTS_PER_BODY,
        lambda j, data: {"pixel_code": codes[j], "events": data},
    )


# --------------------------------------------------------------------------- apps


def app_bodies(act: SimActivity) -> Iterator[dict[str, Any]]:
    """``event/track/`` bodies with ``event_source`` "app": the device id (IDFA only when ATT
    is AUTHORIZED), ``att_status`` on iOS, the e-mail when the user is logged in."""
    c = act.app.cols
    m = len(act.app)
    adv, user, att, code = c["adv"], c["user"], c["att"], c["code"]
    uniq, inverse = np.unique(user, return_inverse=True)
    back = pa.array(inverse.astype(np.int64))
    taken = act.users.take(pa.array(uniq))
    raw = pc.coalesce(taken.column("idfa"), taken.column("gaid")).combine_chunks()
    hashed = pa.array([None if v is None else _sha(v.lower()) for v in raw.to_pylist()])
    device = pc.if_else(pa.array(c["hashed"]), hashed.take(back), raw.take(back))
    price = _prices(act, adv, c["product"])
    cols = {
        "event": _lookup(act.app.names, code),
        "event_time": pa.array(c["t"]),
        "event_id": act.event_ids_of("app"),
        "gaid": _where(att == 0, device),
        "att_status": _lookup(_ATT_NAMES, att),
        "idfa": _where(att == 1, device),
        "email": _where(c["email"], _user_hashes(act, user, "email_basic")),
        "app_id": _lookup([a.app_id for a in act.advertisers], adv),
        "sku": _skus(act, adv, c["product"], np.ones(m, dtype=bool)),
        "price": pa.array(price),
    }

    def render(rows: np.ndarray) -> list[dict[str, Any]]:
        b = _at(cols, rows)
        buy = code[rows] == 2
        mask = pa.array(buy)
        items = records({"content_id": b["sku"].filter(mask), "price": b["price"].filter(mask)})
        props = records(
            {
                "contents": [[item] for item in items],
                "value": b["price"].filter(mask),
                "currency": _const(_CURRENCY, len(items)),
            }
        )
        return records(
            {
                "event": b["event"],
                "event_time": b["event_time"],
                "event_id": b["event_id"],
                "user": records({k: b[k] for k in ("gaid", "att_status", "idfa", "email")}),
                "app": records({"app_id": b["app_id"]}),
                "properties": _spread(buy, props),
            }
        )

    app_ids = [a.app_id for a in act.advertisers]
    return _bodies(
        _by_source(act.app, np.arange(m)),
        render,
        MAX_EVENTS_PER_BODY,
        lambda j, data: {"event_source": "app", "event_source_id": app_ids[j], "data": data},
    )


# --------------------------------------------------------------------------- engagement


def engagement_bodies(act: SimActivity) -> Iterator[dict[str, Any]]:
    """``POST /admin/v1/engagement/track`` bodies, all advertisers and organic together, in
    time order."""
    s = act.engagement
    c = s.cols
    m = len(s)
    advs = act.advertisers
    adv, ad, creator, video = c["adv"], c["ad"], c["creator"], c["video"]
    has_adv = adv >= 0
    has_ad = has_adv & (ad >= 0)
    has_creator = creator >= 0
    has_video = video >= 0
    adv_id = _lookup([a.id for a in advs], adv, has_adv)
    account = _lookup([a.account for a in advs], adv, has_adv)
    creator_id = _join("creator-", _digits(creator, 4, has_creator))
    # Whose content: a creator's video, an ad's video, or a post of the advertiser's account.
    post = has_adv & ~has_ad & ~has_creator & has_video
    content_id = pc.coalesce(
        _join(creator_id, "-v", _digits(video, 3, has_video)),
        _join("ad-", adv_id, "-", _digits(ad, 0, has_ad & has_video), "-video"),
        _join(account, "-v", _digits(video, 2, post)),
    )
    priced = (c["product"] >= 0) & (c["code"] != s.names.index("shop_product_view"))
    value = np.round(_prices(act, adv, c["product"]) * c["qty"], 2)
    watched = ~np.isnan(c["watched"])
    cols = {
        "event": _lookup(s.names, c["code"]),
        "event_time": pa.array(c["t"]),
        "event_id": act.event_ids_of("engagement"),
        "user_id": act.users.column("user_id").take(pa.array(c["user"])).combine_chunks(),
        "advertiser_id": adv_id,
        "ad_id": _join("ad-", adv_id, "-", _digits(ad, 0, has_ad)),
        "adgroup_id": _join("adgroup-", adv_id, "-", _digits(ad // 2, 0, has_ad)),
        "campaign_id": _join("campaign-", adv_id, "-", _digits(ad // 4, 0, has_ad)),
        "ttclid": _ttclids(act.seed, c["click"]),
        "content_id": content_id,
        "creator_id": pc.coalesce(creator_id, _where(post, account)),
        "category": _lookup(CATEGORIES, c["category"], c["category"] >= 0),
        "account_id": pc.coalesce(
            _where(c["account"] == 1, account), _where(c["account"] == 2, creator_id)
        ),
        "live_id": _join(
            "live-", pc.coalesce(creator_id, account), "-", _digits(c["live"], 0, c["live"] >= 0)
        ),
        "form_id": _lookup([a.lead_form_id for a in advs], adv, has_adv & c["form"]),
        "product_id": _skus(act, adv, c["product"], c["product"] >= 0),
        "watched_seconds": pa.array(c["watched"], mask=~watched),
        "duration_seconds": pa.array(c["duration"], mask=~watched),
        "value": pa.array(value, mask=~priced),
        "currency": _where(priced, _const(_CURRENCY, m)),
    }
    # In time order once, so that each block reads a contiguous stretch of every column.
    cols = _at(cols, np.lexsort((np.arange(m), c["t"])))
    return _bodies(
        [(-1, np.arange(m))] if m else [],
        lambda rows: records(_at(cols, rows)),
        MAX_EVENTS_PER_BODY,
        lambda _j, data: {"data": data},
    )
