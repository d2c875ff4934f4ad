"""Advertisers and access tokens. Tokens are stored as SHA-256 only."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from likewise.errors import AuthInvalid, AuthMissing, InvalidParameter, NotFound
from likewise.store.db import Database
from likewise.store.models import AccessToken, Advertiser, TokenScope

ADVERTISER_ID_START = 7_000_000_000_000_000_000
CORE_USER_ID_START = 6_900_000_000_000_000_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token, the user behind it, and the advertisers it may act for."""

    token_id: int
    core_user_id: int
    display_name: str
    advertiser_ids: frozenset[int]
    created_at: datetime


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# How long a hot path (the Events API) may reuse a token check; a revocation takes effect
# within this time there, and at once everywhere else.
TOKEN_CACHE_SECONDS = 5.0


class Tenants:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._cache_lock = threading.Lock()

    def create_advertiser(
        self,
        *,
        name: str,
        now: datetime,
        business_center_id: str | None = None,
        country: str = "US",
        currency: str = "USD",
        timezone: str = "Etc/GMT",
    ) -> Advertiser:
        if not name.strip() or len(name) > 256:
            raise InvalidParameter("name must be 1-256 characters", field="name")
        if len(country) != 2 or not country.isalpha():
            raise InvalidParameter("country must be an ISO 3166 alpha-2 code", field="country")
        with self.db.session() as s:
            adv = Advertiser(
                id=self.db.next_id(s, "advertiser", ADVERTISER_ID_START),
                name=name.strip(),
                business_center_id=business_center_id,
                country=country.upper(),
                currency=currency,
                timezone=timezone,
                created_at=now,
            )
            s.add(adv)
        return adv

    def create_token(
        self, *, advertiser_ids: list[int], now: datetime, display_name: str = ""
    ) -> str:
        """A new access token for these advertisers; the clear text is returned only here."""
        token = secrets.token_hex(20)
        with self.db.session() as s:
            for adv_id in advertiser_ids:
                if s.get(Advertiser, adv_id) is None:
                    raise NotFound(f"advertiser {adv_id} does not exist", field="advertiser_id")
            row = AccessToken(
                token_sha256=token_digest(token),
                core_user_id=self.db.next_id(s, "core_user", CORE_USER_ID_START),
                display_name=display_name,
                created_at=now,
            )
            s.add(row)
            s.flush()
            for adv_id in advertiser_ids:
                s.add(TokenScope(token_id=row.id, advertiser_id=adv_id))
        return token

    def authenticate(self, token: str | None) -> Principal:
        if token is None or not token.strip():
            raise AuthMissing(
                "Access-Token is empty: send it in the http header with key Access-Token"
            )
        with self.db.session() as s:
            row = s.execute(
                select(AccessToken).where(AccessToken.token_sha256 == token_digest(token.strip()))
            ).scalar()
            if row is None or row.revoked:
                raise AuthInvalid("Access-Token is invalid or revoked")
            ids = s.execute(
                select(TokenScope.advertiser_id).where(TokenScope.token_id == row.id)
            ).scalars()
            return Principal(
                token_id=row.id,
                core_user_id=row.core_user_id,
                display_name=row.display_name,
                advertiser_ids=frozenset(ids),
                created_at=row.created_at,
            )

    def authenticate_cached(self, token: str | None) -> Principal:
        """:meth:`authenticate`, reusing a successful check for a few seconds: the Events API
        takes thousands of requests a second and must not query the database for each."""
        key = (token or "").strip()
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = self.authenticate(token)
        with self._cache_lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + TOKEN_CACHE_SECONDS, principal)
        return principal

    def advertisers(self, ids: list[int]) -> list[Advertiser]:
        with self.db.session() as s:
            rows = s.execute(select(Advertiser).where(Advertiser.id.in_(ids))).scalars()
            return list(rows)

    def advertiser(self, advertiser_id: int) -> Advertiser:
        with self.db.session() as s:
            adv = s.get(Advertiser, advertiser_id)
        if adv is None:
            raise NotFound(f"advertiser {advertiser_id} does not exist", field="advertiser_id")
        return adv

    def all_advertisers(self) -> list[Advertiser]:
        with self.db.session() as s:
            return list(s.execute(select(Advertiser).order_by(Advertiser.id)).scalars())
