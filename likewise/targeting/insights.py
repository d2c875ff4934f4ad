"""Reach and overlap, exact through bitmap algebra over reachable members (consent applied).

Sizes below the platform's minimum audience size are never reported exactly: they are
``None`` with the text "below 1,000" (the minimum, formatted), and so is an overlap ratio whose
overlap is that small (it would reveal the overlap).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyroaring import BitMap

from likewise.domain.targeting import GENDERS, Targeting, parse_targeting
from likewise.engine.audiences import Audiences
from likewise.errors import InvalidParameter, NotFound
from likewise.targeting.ad_groups import AdGroups, parse_ids
from likewise.targeting.serving import AGE_BAND, MembershipServer

MAX_COMPARISONS = 4


@dataclass(frozen=True)
class Size:
    exact: int | None  # None when below the minimum
    text: str

    def wire(self, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}size": self.exact, f"{prefix}size_text": self.text}


class Insights:
    def __init__(
        self, *, audiences: Audiences, ad_groups: AdGroups, serving: MembershipServer
    ) -> None:
        self.audiences = audiences
        self.ad_groups = ad_groups
        self.serving = serving

    def size(self, n: int) -> Size:
        minimum = self.audiences.settings.min_audience_size
        if n < minimum:
            return Size(None, f"below {minimum:,}")
        return Size(n, f"{n:,}")

    def _reachable(self, advertiser_id: int, audience_id: int, field: str) -> tuple[str, BitMap]:
        with self.audiences.db.session() as s:
            audience = self.audiences.find_visible(s, advertiser_id, audience_id)
        if audience is None:
            raise NotFound(f"custom audience {audience_id} does not exist", field=field)
        return audience.name, self.audiences.reachable(audience)

    def overlap(
        self, *, advertiser_id: int, benchmark_id: int, comparison_ids: list[int]
    ) -> dict[str, Any]:
        """``audience/insight/overlap/``: the benchmark audience's size, and for each
        comparison audience its size, its overlap with the benchmark and the overlap's share
        of the benchmark."""
        if len(comparison_ids) > MAX_COMPARISONS:
            raise InvalidParameter(
                f"comparison_custom_audience_ids has {len(comparison_ids)} ids; at most "
                f"{MAX_COMPARISONS}",
                field="comparison_custom_audience_ids",
            )
        name, bench = self._reachable(advertiser_id, benchmark_id, "benchmark_custom_audience_id")
        out = []
        for other_id in comparison_ids:
            other_name, other = self._reachable(
                advertiser_id, other_id, "comparison_custom_audience_ids"
            )
            shared = bench.intersection_cardinality(other)
            overlap = self.size(shared)
            ratio = (
                round(shared / len(bench), 4) if overlap.exact is not None and len(bench) else None
            )
            out.append(
                {
                    "custom_audience_id": str(other_id),
                    "name": other_name,
                    **self.size(len(other)).wire(),
                    **overlap.wire("overlap_"),
                    "overlap_ratio": ratio,
                }
            )
        return {
            "benchmark_audience": {
                "custom_audience_id": str(benchmark_id),
                "name": name,
                **self.size(len(bench)).wire(),
            },
            "comparison_audiences": out,
        }

    def reach(self, *, advertiser_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """Users a targeting spec reaches: an ad group's (``adgroup_id``), or targeting fields
        with ``audience_ids`` and ``excluded_audience_ids`` as an ad group takes them."""
        if body.get("adgroup_id") is not None:
            group_id = parse_ids([body["adgroup_id"]], "adgroup_id")[0]
            [group] = self.ad_groups.get(advertiser_id=advertiser_id, ids=[group_id])
            targeting, included, excluded = group.targeting, group.included, group.excluded
        else:
            targeting = parse_targeting(body)
            included = tuple(parse_ids(body.get("audience_ids"), "audience_ids"))
            excluded = tuple(parse_ids(body.get("excluded_audience_ids"), "excluded_audience_ids"))
        people = self._targeted(targeting)
        if included:
            union = BitMap()
            for a in included:
                union |= self._reachable(advertiser_id, a, "audience_ids")[1]
            people &= union
        for a in excluded:
            people -= self._reachable(advertiser_id, a, "excluded_audience_ids")[1]
        people -= self.audiences.graph.excluded()
        return {"reach": self.size(len(people)).wire()}

    def _targeted(self, t: Targeting) -> BitMap:
        """Users matching the targeting's locations, OS, ages and gender."""
        users = self.serving.snapshot.users
        mask = np.ones(len(users), bool)
        if t.countries:
            codes = [users.countries[c] for c in t.countries if c in users.countries]
            mask &= np.isin(users.country, np.array(codes, np.uint16))
        if t.operating_systems:
            codes = [users.os_labels[o] for o in t.operating_systems if o in users.os_labels]
            mask &= np.isin(users.os, np.array(codes, np.uint8))
        if t.age_groups:
            mask &= np.isin(users.age, np.array([AGE_BAND[a] for a in t.age_groups], np.uint8))
        wanted = GENDERS[t.gender]
        if wanted is not None:
            mask &= users.gender == users.gender_labels.get(wanted, 255)
        return BitMap(np.flatnonzero(mask).astype(np.uint32))
