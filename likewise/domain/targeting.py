"""Ad groups: who an ad group may be shown to.

An ad group has a status (``ACTIVE`` or ``PAUSED``) and targeting in TikTok's ad group field
names: ``location_ids`` (TikTok location ids of countries; none: everywhere),
``operating_systems`` (``ANDROID``, ``IOS``; none: any), ``age_groups`` (``AGE_13_17`` ...
``AGE_55_100``; none: any), ``gender`` (``GENDER_UNLIMITED``, ``GENDER_MALE``,
``GENDER_FEMALE``), and its audiences: included (a user must be in at least one, when there are
any) and excluded (a user in any is never shown the ad group: exclusion wins). An audience is
either included or excluded in one ad group, never both. ``reach_frequency`` marks a Reach &
Frequency ad group, which takes no lookalike audiences.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from likewise.domain.locations import country_of_location
from likewise.errors import InvalidParameter

NAME_MAX = 512


class AdGroupStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"


class UsageMode(enum.StrEnum):
    INCLUDE = "INCLUDE"
    EXCLUDE = "EXCLUDE"


# TikTok's age groups and the ages each covers (inclusive).
AGE_GROUPS: dict[str, tuple[int, int]] = {
    "AGE_13_17": (13, 17),
    "AGE_18_24": (18, 24),
    "AGE_25_34": (25, 34),
    "AGE_35_44": (35, 44),
    "AGE_45_54": (45, 54),
    "AGE_55_100": (55, 100),
}
GENDERS = {"GENDER_UNLIMITED": None, "GENDER_MALE": "male", "GENDER_FEMALE": "female"}
OPERATING_SYSTEMS = ("ANDROID", "IOS")
# TikTok's ad group API says ENABLE/DISABLE; both spellings are accepted.
_STATUS_ALIASES = {"ENABLE": "ACTIVE", "DISABLE": "PAUSED"}


@dataclass(frozen=True)
class Targeting:
    location_ids: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()  # ISO codes of location_ids
    operating_systems: tuple[str, ...] = ()
    age_groups: tuple[str, ...] = ()
    gender: str = "GENDER_UNLIMITED"

    def wire(self) -> dict[str, Any]:
        return {
            "location_ids": list(self.location_ids),
            "operating_systems": list(self.operating_systems),
            "age_groups": list(self.age_groups),
            "gender": self.gender,
        }

    def allows(
        self, *, country: str | None, os: str | None, age: int | None, gender: str | None
    ) -> bool:
        """Whether a user with these attributes is in the targeting (unknown attributes only
        pass a criterion that is not set)."""
        if self.countries and country not in self.countries:
            return False
        if self.operating_systems and (os or "").upper() not in self.operating_systems:
            return False
        ranges = [AGE_GROUPS[g] for g in self.age_groups]
        if ranges and (age is None or not any(lo <= age <= hi for lo, hi in ranges)):
            return False
        wanted = GENDERS[self.gender]
        return wanted is None or gender == wanted


def _strings(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise InvalidParameter(f"{field} must be a list of strings", field=field)
    return [str(v).strip() for v in value]


def parse_status(value: Any) -> AdGroupStatus:
    text = str(value).strip().upper()
    text = _STATUS_ALIASES.get(text, text)
    try:
        return AdGroupStatus(text)
    except ValueError:
        raise InvalidParameter(
            f"status {value!r} is not ACTIVE or PAUSED (or TikTok's ENABLE / DISABLE)",
            field="status",
        ) from None


def parse_targeting(body: Mapping[str, Any], base: Targeting | None = None) -> Targeting:
    """The targeting fields present in ``body``, over ``base`` (an update changes only what it
    names)."""
    out = base or Targeting()
    if "location_ids" in body:
        ids: list[str] = []
        countries: list[str] = []
        for raw in _strings(body["location_ids"], "location_ids"):
            country = country_of_location(raw)
            if country is None:
                raise InvalidParameter(
                    f"location_ids: {raw!r} is not a supported location id (TikTok location "
                    "ids of countries, e.g. 6252001 for the United States)",
                    field="location_ids",
                )
            if raw not in ids:
                ids.append(raw)
            if country.iso not in countries:
                countries.append(country.iso)
        out = replace(out, location_ids=tuple(ids), countries=tuple(countries))
    if "operating_systems" in body:
        systems = [s.upper() for s in _strings(body["operating_systems"], "operating_systems")]
        for s in systems:
            if s not in OPERATING_SYSTEMS:
                raise InvalidParameter(
                    f"operating_systems: {s!r} is not ANDROID or IOS", field="operating_systems"
                )
        out = replace(out, operating_systems=tuple(dict.fromkeys(systems)))
    if "age_groups" in body:
        groups = [g.upper() for g in _strings(body["age_groups"], "age_groups")]
        for g in groups:
            if g not in AGE_GROUPS:
                raise InvalidParameter(
                    f"age_groups: {g!r} is not one of {', '.join(AGE_GROUPS)}",
                    field="age_groups",
                )
        out = replace(out, age_groups=tuple(dict.fromkeys(groups)))
    if "gender" in body and body["gender"] is not None:
        gender = str(body["gender"]).strip().upper()
        if gender not in GENDERS:
            raise InvalidParameter(
                f"gender {body['gender']!r} is not one of {', '.join(GENDERS)}", field="gender"
            )
        out = replace(out, gender=gender)
    return out


def targeting_from_wire(stored: Mapping[str, Any]) -> Targeting:
    return parse_targeting(stored)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameter("adgroup_name must not be empty", field="adgroup_name")
    if len(name) > NAME_MAX:
        raise InvalidParameter(
            f"adgroup_name is {len(name)} characters; at most {NAME_MAX}", field="adgroup_name"
        )
    return name
