"""Countries as TikTok location ids (GeoNames ids) and back to ISO 3166-1 alpha-2 codes."""

from __future__ import annotations

import re

import pytest

from likewise.domain.locations import (
    COUNTRIES,
    Country,
    country_of_location,
    location_of_country,
)

KNOWN = {
    "6252001": "US",
    "2635167": "GB",
    "2921044": "DE",
    "3017382": "FR",
    "1861060": "JP",
    "6251999": "CA",
    "3469034": "BR",
    "1269750": "IN",
    "2077456": "AU",
    "3996063": "MX",
}


@pytest.mark.parametrize(("location_id", "iso"), sorted(KNOWN.items()))
def test_known_ids_map_to_their_country(location_id: str, iso: str) -> None:
    country = country_of_location(location_id)
    assert country is not None
    assert country.iso == iso
    assert country.location_id == location_id
    assert location_of_country(iso) == country


def test_iso_codes_are_unique_two_upper_case_letters() -> None:
    isos = [c.iso for c in COUNTRIES]
    assert len(set(isos)) == len(isos)
    assert all(re.fullmatch(r"[A-Z]{2}", iso) for iso in isos)


def test_location_ids_are_unique_digits() -> None:
    ids = [c.location_id for c in COUNTRIES]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9]+", i) for i in ids)


def test_every_country_round_trips() -> None:
    for c in COUNTRIES:
        assert location_of_country(c.iso) == c
        assert country_of_location(c.location_id) == c
        assert c.name and c.name == c.name.strip()


@pytest.mark.parametrize("location_id", ["0", "abc", "", " ", "6252001x", "8505033"])
def test_unknown_ids_are_none(location_id: str) -> None:
    assert country_of_location(location_id) is None


def test_surrounding_whitespace_is_ignored() -> None:
    assert country_of_location(" 6252001\n") == location_of_country("US")


def test_iso_is_case_insensitive() -> None:
    assert location_of_country("us") == Country("US", "6252001", "United States")
    assert location_of_country("gB") == location_of_country("GB")
    assert location_of_country("UK") is None  # reserved; the UK's code is GB
    assert location_of_country("") is None


def test_england_alias_maps_to_the_united_kingdom() -> None:
    country = country_of_location("6269131")
    assert country is not None
    assert country.iso == "GB"
    assert country.location_id == "2635167"  # the canonical id, not the alias
    assert "6269131" not in {c.location_id for c in COUNTRIES}


def test_table_covers_geonames_country_list() -> None:
    assert len(COUNTRIES) >= 240
    assert isinstance(COUNTRIES, tuple)
    assert all(isinstance(c, Country) for c in COUNTRIES)
