"""Lookalike audiences: TikTok's ``lookalike_spec``, checked, and what its sizes mean.

TikTok publishes no share of the population for NARROW, BALANCED and BROAD. Likewise's are
documented settings (``LIKEWISE_LOOKALIKE_NARROW_SHARE`` and so on, defaults 2 %, 5 % and 10 %):
a lookalike has that share of the *eligible* users (in the chosen locations, on the chosen OS,
who allow personalised ads), the seed not counted, plus the seed's eligible members when
``include_source`` is true.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from likewise.domain.locations import country_of_location
from likewise.errors import InvalidParameter


class Size(enum.StrEnum):
    NARROW = "NARROW"
    BALANCED = "BALANCED"
    BROAD = "BROAD"


class MobileOS(enum.StrEnum):
    ALL = "ALL"
    ANDROID = "ANDROID"
    IOS = "IOS"


# TikTok's documented placements; the GO SDK spells the second TopBuzz_BuzzVideo, the spec text
# "TopBuzz & BuzzVideo". Likewise is one platform: placements are kept and shown, not used.
PLACEMENTS: dict[str, str] = {
    "TIKTOK": "TikTok",
    "TOPBUZZ_BUZZVIDEO": "TopBuzz_BuzzVideo",
    "TOPBUZZ & BUZZVIDEO": "TopBuzz_BuzzVideo",
    "PANGLE": "Pangle",
}
MAX_LOCATIONS = 50


@dataclass(frozen=True)
class LookalikeSpec:
    source_audience_id: int
    location_ids: tuple[str, ...]  # as sent (TikTok location ids)
    countries: tuple[str, ...]  # ISO 3166 alpha-2, one per location id
    audience_size: Size
    include_source: bool
    mobile_os: MobileOS
    placements: tuple[str, ...]

    def wire(self) -> dict[str, Any]:
        """The spec as ``get`` shows it (TikTok's public field names)."""
        return {
            "source_audience_id": str(self.source_audience_id),
            "location_ids": list(self.location_ids),
            "audience_size": self.audience_size.value,
            "include_source": self.include_source,
            "mobile_os": self.mobile_os.value,
            "placements": list(self.placements),
        }


def _field(name: str) -> str:
    return f"lookalike_spec.{name}"


def _enum(spec: Mapping[str, Any], name: str, kind: type[enum.StrEnum]) -> Any:
    value = spec.get(name)
    if value is None:
        raise InvalidParameter(f"{_field(name)} is required", field=_field(name))
    text = str(value).strip().upper()
    try:
        return kind(text)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)  # type: ignore[attr-defined]
        raise InvalidParameter(
            f"{_field(name)} {value!r} is not one of {allowed}", field=_field(name)
        ) from None


def parse_lookalike_spec(spec: Any) -> LookalikeSpec:
    """A checked :class:`LookalikeSpec` from the request's ``lookalike_spec`` object; every
    problem is an :class:`InvalidParameter` naming the field."""
    if not isinstance(spec, Mapping):
        raise InvalidParameter("lookalike_spec must be an object", field="lookalike_spec")
    raw_seed = spec.get("source_audience_id")
    if raw_seed is None or str(raw_seed).strip() == "":
        raise InvalidParameter(
            "lookalike_spec.source_audience_id is required", field=_field("source_audience_id")
        )
    try:
        seed = int(str(raw_seed).strip())
        if seed <= 0:
            raise ValueError
    except ValueError:
        raise InvalidParameter(
            f"lookalike_spec.source_audience_id {raw_seed!r} is not an audience id",
            field=_field("source_audience_id"),
        ) from None

    locations = spec.get("location_ids")
    if not isinstance(locations, list) or not locations:
        raise InvalidParameter(
            "lookalike_spec.location_ids must list at least one location id",
            field=_field("location_ids"),
        )
    if len(locations) > MAX_LOCATIONS:
        raise InvalidParameter(
            f"lookalike_spec.location_ids has {len(locations)} ids; at most {MAX_LOCATIONS}",
            field=_field("location_ids"),
        )
    ids: list[str] = []
    countries: list[str] = []
    for raw in locations:
        text = str(raw).strip() if isinstance(raw, str | int) else ""
        country = country_of_location(text) if text else None
        if country is None:
            raise InvalidParameter(
                f"lookalike_spec.location_ids: {raw!r} is not a supported location id "
                "(TikTok location ids of countries, e.g. 6252001 for the United States)",
                field=_field("location_ids"),
            )
        if text not in ids:
            ids.append(text)
            if country.iso not in countries:
                countries.append(country.iso)

    include = spec.get("include_source")
    if include is None:
        raise InvalidParameter(
            "lookalike_spec.include_source is required", field=_field("include_source")
        )
    if not isinstance(include, bool):
        if str(include).strip().lower() in ("true", "false"):
            include = str(include).strip().lower() == "true"
        else:
            raise InvalidParameter(
                f"lookalike_spec.include_source {include!r} is not true or false",
                field=_field("include_source"),
            )

    placements_raw = spec.get("placements")
    if placements_raw is None:
        placements_raw = ["TikTok"]  # the platform itself, when a client leaves it out
    if not isinstance(placements_raw, list):
        raise InvalidParameter(
            "lookalike_spec.placements must be a list", field=_field("placements")
        )
    placements: list[str] = []
    for raw in placements_raw:
        name = PLACEMENTS.get(str(raw).strip().upper())
        if name is None:
            raise InvalidParameter(
                f"lookalike_spec.placements: {raw!r} is not one of TikTok, TopBuzz_BuzzVideo, "
                "Pangle",
                field=_field("placements"),
            )
        if name not in placements:
            placements.append(name)

    return LookalikeSpec(
        source_audience_id=seed,
        location_ids=tuple(ids),
        countries=tuple(countries),
        audience_size=_enum(spec, "audience_size", Size),
        include_source=include,
        mobile_os=_enum(spec, "mobile_os", MobileOS),
        placements=tuple(placements),
    )


def spec_from_wire(stored: Mapping[str, Any]) -> LookalikeSpec:
    """A spec stored as :meth:`LookalikeSpec.wire` wrote it."""
    return parse_lookalike_spec(dict(stored))
