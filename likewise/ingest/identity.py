"""Identity resolution: which platform user an event belongs to.

An event's match keys are tried in order; the first that finds a user wins:

1. the platform's own user id (``user_ref``, sent by the engagement intake) and the identity
   graph's keys: hashed e-mail, phone, IDFA, GAID (the same keys customer files match). The
   platform user id wins when both are present: it is the operator's word, not a match;
2. a ``ttclid`` click id the platform registered: an ``ad_click`` engagement event with a
   ``ttclid`` links that click id to the clicker (``links`` row with ``advertiser_id`` 0, kind
   ``ttclid``: global, the platform issued it), and any later or earlier event of any
   advertiser and channel carrying it resolves to that user;
3. links the advertiser's own events taught: a ``_ttp`` browser id or an ``external_id`` seen on
   an event that the graph resolved belongs to that user from then on (per advertiser: one
   shop's cookie ids mean nothing to another).

Results go to ``event_uid(eid, uid)`` in the event state database, not into the Parquet parts,
so an event can be resolved later: when a link appears (the shopper logs in, the click is
processed after the landing page's event), or when the operator imports the user. A pixel copy
merged into a server copy (``merged_into``) lends its keys to the first. Events with ``limited``
set (limited data use, ATT denied) are never resolved and teach nothing. Consent is not applied
here: an opted-out user's events are resolved and counted, and left out where events are used
(:func:`likewise.ingest.intake.usable_events_sql`).
"""

from __future__ import annotations

import logging
import threading
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likewise.domain.events import ENGAGEMENT_CLICK
from likewise.identity.hashing import digest_halves
from likewise.identity.kinds import IdKind
from likewise.store.graph import NO_USERS, GraphBusy, PlatformGraph
from likewise.store.key_index import KeyIndex

log = logging.getLogger(__name__)

# Columns a candidate table must have (from the processor's rows or from the Parquet parts).
CANDIDATE_COLUMNS = (
    "eid",
    "advertiser_id",
    "channel",
    "event",
    "email",
    "phone",
    "idfa",
    "gaid",
    "ttp",
    "ttclid",
    "external_id",
    "user_ref",
    "merged_into",
)
TTCLID_OWNER = 0  # links.advertiser_id of click ids: the platform's, valid for every advertiser

# Only the platform's own click records teach click ids: a ttclid on an advertiser's event
# proves nothing about who clicked (it may be a forwarded link).
_LEARN = f"""
INSERT INTO links
SELECT advertiser_id, kind, value, max(uid), ?::DOUBLE FROM (
  SELECT c.advertiser_id, 'ttp' AS kind, c.ttp AS value, f.uid
  FROM cand c JOIN found f USING (eid) WHERE c.ttp IS NOT NULL
  UNION ALL
  SELECT c.advertiser_id, 'external_id', unnest(c.external_id), f.uid
  FROM cand c JOIN found f USING (eid)
  UNION ALL
  SELECT {TTCLID_OWNER}, 'ttclid', c.ttclid, f.uid
  FROM cand c JOIN found f USING (eid)
  WHERE c.channel = 'engagement' AND c.event = '{ENGAGEMENT_CLICK}' AND c.ttclid IS NOT NULL)
GROUP BY advertiser_id, kind, value
ON CONFLICT (advertiser_id, kind, value) DO UPDATE SET uid = excluded.uid,
  seen_at = excluded.seen_at
"""

# OR IGNORE keeps an event's first resolution, through the primary key's index: a filter
# ``eid NOT IN (SELECT eid FROM event_uid)`` scanned every resolution ever stored, each pass
# (0.7-1.5 s per pass at 20M of them, against 20-70 ms).
_RESOLVE = f"""
INSERT OR IGNORE INTO event_uid
WITH ext AS (SELECT eid, advertiser_id, unnest(external_id) AS v FROM cand),
found_all AS (
  SELECT eid, uid, 0 AS prio FROM found
  UNION ALL
  SELECT c.eid, l.uid, 1 FROM cand c JOIN links l
    ON l.advertiser_id = {TTCLID_OWNER} AND l.kind = 'ttclid' AND l.value = c.ttclid
  UNION ALL
  SELECT c.eid, l.uid, 2 FROM cand c JOIN links l
    ON l.advertiser_id = c.advertiser_id AND l.kind = 'ttp' AND l.value = c.ttp
  UNION ALL
  SELECT e.eid, l.uid, 3 FROM ext e JOIN links l
    ON l.advertiser_id = e.advertiser_id AND l.kind = 'external_id' AND l.value = e.v),
best AS (SELECT eid, arg_min(uid, prio) AS uid, min(prio) AS prio FROM found_all GROUP BY eid),
spread AS (
  SELECT eid, uid, prio FROM best
  UNION ALL  -- a merged copy's keys resolve the event it was merged into
  SELECT c.merged_into, b.uid, b.prio + 10 FROM best b JOIN cand c USING (eid)
  WHERE c.merged_into IS NOT NULL)
SELECT eid, arg_min(uid, prio) FROM spread GROUP BY eid
RETURNING eid, uid
"""


NONE_RESOLVED = NO_USERS
# The hashed keys the identity graph holds, by column, with the kind bit each is looked up as.
_GRAPH_KEYS = (
    ("email", IdKind.EMAIL),
    ("phone", IdKind.PHONE),
    ("idfa", IdKind.IDFA),
    ("gaid", IdKind.GAID),
)


def graph_keys(candidates: pa.Table) -> pa.Table:
    """``(eid, k_hi, k_lo, kmask)``: every hashed key of the candidates as the graph's 128-bit
    key (its digest's first 32 hex digits, in two halves). A digest without one (which intake
    never lets through) matches nothing."""
    eids, his, los, masks = [], [], [], []
    for column, kind in _GRAPH_KEYS:
        values = candidates[column]
        if pa.types.is_list(values.type):
            counts = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
            eid = np.repeat(candidates["eid"].to_numpy(), counts)
            digests = pc.list_flatten(values)
        else:
            present = pc.is_valid(values)
            eid = candidates["eid"].filter(present).to_numpy()
            digests = values.filter(present)
        hi, lo, valid = digest_halves(digests)
        eids.append(eid[valid])
        his.append(hi[valid])
        los.append(lo[valid])
        masks.append(np.full(int(valid.sum()), kind.bit, np.uint8))
    return pa.table(
        {
            "eid": pa.array(np.concatenate(eids), pa.int64()),
            "k_hi": pa.array(np.concatenate(his), pa.uint64()),
            "k_lo": pa.array(np.concatenate(los), pa.uint64()),
            "kmask": pa.array(np.concatenate(masks), pa.uint8()),
        }
    )


class EventResolver:
    def __init__(
        self, graph: PlatformGraph, *, graph_wait_seconds: float = 2.0, key_index: bool = True
    ) -> None:
        self.graph = graph
        self.graph_wait_seconds = graph_wait_seconds
        # The graph's keys in memory (:mod:`likewise.store.key_index`), rebuilt in the
        # background when they change; until then lookups join with the graph itself.
        self.use_key_index = key_index
        self._index: KeyIndex | None = None
        self._building: threading.Thread | None = None

    def _keep_index_current(self, generation: int) -> None:
        index = self._index
        if not self.use_key_index or (index is not None and index.generation == generation):
            return
        self._index = None  # out of date: its memory is better free for the next one
        self.start_building()

    def start_building(self) -> None:
        """Build the index in the background (after the first batch with keys, and whenever
        the keys changed)."""
        if not self.use_key_index:
            return
        if self._building is None or not self._building.is_alive():
            self._building = threading.Thread(
                target=self._build_index, name="event-key-index", daemon=True
            )
            self._building.start()

    def _build_index(self) -> None:
        started = time.monotonic()
        try:
            index = self.graph.key_index(wait_seconds=self.graph_wait_seconds)
        except Exception:  # the graph busy (an import) or failing: the next batch asks again
            log.info("identity key index not built this time", exc_info=True)
            return
        self._index = index
        log.info(
            "identity key index: %d keys, %.2f GiB, generation %d, %.1f s",
            len(index),
            index.nbytes / 2**30,
            index.generation,
            time.monotonic() - started,
        )

    def refresh_index(self) -> None:
        """Build the index of the graph's keys now (tests, benchmarks)."""
        self._index = self.graph.key_index(wait_seconds=self.graph_wait_seconds)

    def wait_for_index(self, timeout: float = 60.0) -> KeyIndex | None:
        """The index once a build under way has finished (tests, benchmarks)."""
        building = self._building
        if building is not None:
            building.join(timeout)
        return self._index

    def graph_mark(self) -> int:
        """Changes whenever the identity graph may have changed (imports, consent, erasure)."""
        return self.graph.change_mark()

    def resolve(self, con: duckdb.DuckDBPyConnection, candidates: pa.Table, now: float) -> pa.Table:
        """Resolve ``candidates`` (columns :data:`CANDIDATE_COLUMNS`) inside the caller's
        transaction on the state database; returns the events that got a user now (``eid``,
        ``uid``: which may include events a merged copy among the candidates resolved)."""
        if candidates.num_rows == 0:
            return NONE_RESOLVED
        con.register("cand", candidates)
        try:
            keys = graph_keys(candidates)
            named = candidates.filter(pc.is_valid(candidates["user_ref"]))
            users = pa.table({"eid": named["eid"], "ext_id": named["user_ref"]})
            try:
                found, generation = self.graph.lookup(
                    keys, refs=users, wait_seconds=self.graph_wait_seconds, index=self._index
                )
                self._keep_index_current(generation)
            except GraphBusy:  # an import holds the graph: links still work, the rest waits
                log.info("identity graph busy; %d events left for later", candidates.num_rows)
                found = NO_USERS
            con.register("found", found)
            try:
                if found.num_rows:  # links are learned only from what the graph found
                    con.execute(_LEARN, [now])
                got = con.execute(_RESOLVE).fetchnumpy()  # numpy-owned copies
                return pa.table(
                    {
                        "eid": pa.array(got["eid"], pa.int64()),
                        "uid": pa.array(got["uid"], pa.uint32()),
                    }
                )
            finally:
                con.unregister("found")
        finally:
            con.unregister("cand")
