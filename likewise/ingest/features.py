"""Lookalike features from platform engagement, as events become usable.

Only the platform's own engagement (channel ``engagement``: plays, reactions, follows, profile
visits and LIVE views reported by the operator) counts: an advertiser's pixel, app or offline
events are its own and never feed another advertiser's lookalike. Each such event adds weight to
what it was about (its category, creator and business account), so the feature store ends up
with how much each user cares about each of them. Ads, lead forms and shop events are left out:
they follow targeting and one advertiser's catalogue rather than the user's taste.

:class:`FeatureFeed` is hooked to the event processing (``on_usable``, ``on_erased``), which
delivers every event once it is usable, late identity resolutions included, so features are
built incrementally and no event is read twice. :meth:`FeatureFeed.backfill` reads what was
stored before (a data directory older than the feature store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likewise.ingest.queries import usable_rows_sql
from likewise.store.events import EventStore
from likewise.store.features import DELTA_SCHEMA, FeatureStore

log = logging.getLogger(__name__)

CHANNEL = "engagement"
# How much one event says about the user's taste.
WEIGHTS: dict[str, float] = {
    "video_play": 1.0,  # plus up to 1 for watching to the end (watched_percent)
    "like": 2.0,
    "comment": 3.0,
    "share": 3.0,
    "follow": 4.0,
    "profile_visit": 1.0,
    "live_view": 1.5,
}
# The event columns a feature names, and the prefix of its item.
ITEM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("category", "category:"),
    ("creator_id", "creator:"),
    ("account_id", "account:"),
)
COLUMNS = (
    "uid",
    "channel",
    "event",
    "event_time",
    "watched_percent",
    *(c for c, _ in ITEM_COLUMNS),
)


def feature_rows(events: pa.Table) -> pa.Table:
    """Feature rows (:data:`~likewise.store.features.DELTA_SCHEMA`) of usable events (stored
    event columns plus ``uid``), one per event and item it names."""
    names = set(events.column_names)
    if not {"uid", "channel", "event", "event_time"} <= names or events.num_rows == 0:
        return DELTA_SCHEMA.empty_table()
    keep = pc.and_(
        pc.equal(events["channel"], CHANNEL),
        pc.is_in(events["event"], value_set=pa.array(list(WEIGHTS))),
    )
    rows = events.filter(pc.fill_null(keep, False))
    if rows.num_rows == 0:
        return DELTA_SCHEMA.empty_table()
    event = rows["event"].to_numpy(zero_copy_only=False)
    weight = np.zeros(rows.num_rows, np.float32)
    for name, w in WEIGHTS.items():
        weight[event == name] = w
    if "watched_percent" in names:
        watched = pc.fill_null(rows["watched_percent"], 0.0).to_numpy(zero_copy_only=False)
        weight += np.where(event == "video_play", np.clip(watched, 0, 100) / 100, 0).astype(
            np.float32
        )
    seconds = rows["event_time"].to_numpy(zero_copy_only=False).astype(np.int64)
    month = seconds.astype("datetime64[s]").astype("datetime64[M]").astype(np.int32)
    uid = rows["uid"].cast(pa.uint32())
    parts = []
    for column, prefix in ITEM_COLUMNS:
        if column not in names:
            continue
        values = rows[column]
        present = pc.and_(pc.is_valid(values), pc.not_equal(values, ""))
        present = pc.fill_null(present, False)
        if not pc.any(present).as_py():
            continue
        parts.append(
            pa.table(
                {
                    "uid": uid.filter(present),
                    "item": pc.binary_join_element_wise(prefix, values.filter(present), ""),
                    "month": pa.array(month).filter(present),
                    "w": pa.array(weight).filter(present),
                },
                schema=DELTA_SCHEMA,
            )
        )
    return pa.concat_tables(parts) if parts else DELTA_SCHEMA.empty_table()


class FeatureFeed:
    """Appends the features of usable events to a :class:`FeatureStore`."""

    def __init__(self, features: FeatureStore) -> None:
        self.features = features

    def apply(self, events: pa.Table) -> None:
        self.features.append(feature_rows(events))

    def forget(self, uids: list[int]) -> None:
        self.features.append_erased(uids)

    def backfill(self, store: EventStore) -> int:
        """Once per feature store: the features of engagement stored before it existed.
        Returns how many feature rows were added. Runs where the event state is, before
        processing starts (so no event is both read here and delivered to :meth:`apply`)."""
        if self.features.backfilled():
            return 0
        added = 0
        source = store.sql_source()
        if source is not None:
            with store.state() as con:
                reader = con.sql(
                    f"""SELECT {", ".join(COLUMNS)} FROM ({usable_rows_sql(source)})
                    WHERE channel = '{CHANNEL}'"""
                ).to_arrow_reader(1 << 20)
                for batch in reader:
                    rows = feature_rows(pa.Table.from_batches([batch]))
                    self.features.stage(rows)
                    added += rows.num_rows
        self.features.mark_backfilled()
        if added:
            log.info("features: %d rows from engagement stored before", added)
        return added


def fan_out(*hooks: Callable[[Any], None]) -> Callable[[Any], None]:
    """One processing hook calling several; a failing one is logged and the others still run
    (features must never hold up live audiences, nor the reverse)."""

    def call(arg: Any) -> None:
        failed: Exception | None = None
        for hook in hooks:
            try:
                hook(arg)
            except Exception as exc:
                log.exception("event hook %r failed", hook)
                failed = failed or exc
        if failed is not None:
            raise failed

    return call
