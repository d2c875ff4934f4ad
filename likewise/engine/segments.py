"""Streaming segment audiences (``/segment/audience/`` and ``/segment/mapping/``).

A segment remembers the hashed keys it was given, so deleting one identifier of a person keeps
them in the segment while another of their identifiers is still mapped.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass

from likewise.domain.audience import Lifecycle, Source, Status
from likewise.engine.audiences import Audiences
from likewise.errors import InvalidParameter, NotFound
from likewise.identity.customer_file import keys_table
from likewise.identity.hashing import hash_key
from likewise.store.models import Audience

NAME_LIMIT = 70  # longer names are cut to 67 characters and "..." (TikTok)


@dataclass(frozen=True)
class Mapping:
    """One identifier of one person, for some segments."""

    key: int
    kmask: int
    audience_ids: tuple[int, ...]


def segment_name(name: str) -> str:
    return name if len(name) <= NAME_LIMIT else name[:67] + "..."


class Segments:
    def __init__(self, audiences: Audiences) -> None:
        self.audiences = audiences
        self.db = audiences.db
        self.graph = audiences.graph
        self._lock = threading.Lock()  # read-modify-write of a segment's bitmap

    def create(self, *, advertiser_id: int, name: str) -> int:
        with self.db.session() as s:
            audience = self.audiences.new_audience(
                s,
                advertiser_id=advertiser_id,
                name=segment_name(name),
                source=Source.SEGMENT,
                status=Status.READY,
            )
            self.audiences.history(s, audience.id, "CREATE", "segment")
            return audience.id

    def delete(self, *, advertiser_id: int, audience_id: int) -> None:
        self._segment(advertiser_id, audience_id)
        self.audiences.delete(advertiser_id=advertiser_id, ids=[audience_id])
        self.graph.segment_drop(audience_id)

    def _segment(self, advertiser_id: int, audience_id: int) -> Audience:
        with self.db.session() as s:
            a = s.get(Audience, audience_id)
        if a is None or a.deleted or a.advertiser_id != advertiser_id:
            raise NotFound(f"audience {audience_id} does not exist", field="audience_ids")
        if a.source != Source.SEGMENT:
            raise InvalidParameter(
                f"audience {audience_id} is not a segment audience", field="audience_ids"
            )
        return a

    def owner_of(self, audience_id: int, advertiser_ids: list[int]) -> Audience:
        """The segment, if one of ``advertiser_ids`` owns it; otherwise NotFound."""
        with self.db.session() as s:
            a = s.get(Audience, audience_id)
        if a is None or a.deleted or a.advertiser_id not in advertiser_ids:
            raise NotFound(f"audience {audience_id} does not exist", field="audience_ids")
        if a.source != Source.SEGMENT:
            raise InvalidParameter(
                f"audience {audience_id} is not a segment audience", field="audience_ids"
            )
        life = Lifecycle(a.created_at, a.modified_at, a.last_used_at, a.retention_in_days)
        if life.is_expired(self.audiences.clock()):
            # TikTok: an expired audience can only be deleted (a mapping must not revive it).
            raise InvalidParameter(
                f"audience {audience_id} has expired; it can only be deleted",
                field="audience_ids",
            )
        return a

    def apply(self, mappings: list[Mapping], *, add: bool) -> dict[int, int]:
        """Add or delete mappings; returns the new member count of each touched segment."""
        by_audience: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for m in mappings:
            for audience_id in m.audience_ids:
                by_audience[audience_id].append((m.key, m.kmask))
        sizes: dict[int, int] = {}
        with self._lock:
            for audience_id, keys in by_audience.items():
                sizes[audience_id] = self._apply_one(audience_id, keys, add=add)
        return sizes

    def _apply_one(self, audience_id: int, keys: list[tuple[int, int]], *, add: bool) -> int:
        table = keys_table(keys)
        if add:
            changed = self.graph.segment_add(audience_id, table)
        else:
            changed = self.graph.segment_remove(audience_id, table)
        with self.db.session() as s:
            row = s.get(Audience, audience_id)
            assert row is not None
            current = self.audiences.members(row.id, row.version)
            members = (current | changed) if add else (current - changed)
            if members != current or row.version == 0:
                self.audiences.new_version(s, row, members)
            row.modified_at = self.audiences.clock()
            return len(members)


def key_of(hex_digest: str) -> int:
    return hash_key(hex_digest)
