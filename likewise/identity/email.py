"""E-mail normalisation.

TikTok documents two rules (reference section 2.3):

* customer files and the streaming API: trim, lowercase, drop a ``+tag`` up to ``@``, and remove
  every ``.`` of the local part (``Local.Part+x@Domain.com`` -> ``localpart@domain.com``);
* Events API: trim and lowercase only.

A strict ASCII pattern decides most addresses, here and in the compiled fast path (``_fast.pyx``);
anything it rejects goes to ``email-validator`` (which accepts, say, internationalised
addresses), so the two agree by construction.
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from likewise.identity.text import trim

MAX_LENGTH = 254
# Dot-atom local part starting with a letter or digit (TikTok's rule), then a domain of
# LDH labels and an alphabetic top-level domain.
PATTERN = (
    r"[a-z0-9][a-z0-9!#$%&'*+/=?^_`{|}~-]*(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_PATTERN = re.compile(PATTERN)


def normalize_email_basic(raw: str) -> str | None:
    """Trim and lowercase (the Events API rule); None when it is not an e-mail address."""
    basic = trim(raw).lower()
    if not basic or len(basic) > MAX_LENGTH:
        return None
    if _PATTERN.fullmatch(basic):
        return basic
    return basic if _library_accepts(basic) else None


def strip_plus(basic: str) -> str:
    local, _, domain = basic.rpartition("@")
    return local.split("+", 1)[0] + "@" + domain


def strip_dots(basic: str) -> str:
    local, _, domain = basic.rpartition("@")
    return local.replace(".", "") + "@" + domain


def normalize_email_file(raw: str) -> str | None:
    """The customer-file rule: basic, then drop ``+tag`` and the local part's dots."""
    basic = normalize_email_basic(raw)
    if basic is None:
        return None
    full = strip_dots(strip_plus(basic))
    return full if not full.startswith("@") else None


def email_variants(raw: str) -> list[str]:
    """Every documented normalisation of one address, for the platform side of matching.

    An advertiser may have hashed with any of them; the platform keeps a hash of each.
    """
    basic = normalize_email_basic(raw)
    if basic is None:
        return []
    plus = strip_plus(basic)
    out = [basic, plus, strip_dots(plus)]
    return [v for i, v in enumerate(out) if v not in out[:i] and not v.startswith("@")]


def _library_accepts(basic: str) -> bool:
    if "@" not in basic:
        return False
    try:
        validate_email(basic, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return False
    return True
