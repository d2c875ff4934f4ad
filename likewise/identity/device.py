"""Mobile advertising ids (IDFA on iOS, GAID/AAID on Android).

Advertisers send them raw in either case, or hashed (MD5 or SHA-256) over the upper- or the
lower-case form (reference section 2.3), so the platform keeps all four hashes of each id.
"""

from __future__ import annotations

import re

from likewise.identity.text import trim

PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_PATTERN = re.compile(PATTERN)
ZERO_ID = "00000000-0000-0000-0000-000000000000"  # "limit ad tracking": identifies nobody


def normalize_device_id(raw: str) -> str | None:
    """Lowercase UUID form, or None when the value is not a usable device id."""
    value = trim(raw).lower()
    if not _PATTERN.fullmatch(value) or value == ZERO_ID:
        return None
    return value


def device_variants(normalized: str) -> list[str]:
    """Forms that get hashed on the platform side: lower and upper case."""
    return [normalized, normalized.upper()]
