"""Identifier kinds and the bit each one has in a match mask."""

from __future__ import annotations

import enum


class IdKind(enum.IntEnum):
    """What an identifier is. The value is stored in the identity graph and used as a bit index."""

    EMAIL = 1
    PHONE = 2
    IDFA = 3
    GAID = 4

    @property
    def bit(self) -> int:
        return 1 << self.value


def mask(*kinds: IdKind) -> int:
    """The match mask of a set of kinds: a key may match graph entries of any of these kinds."""
    out = 0
    for kind in kinds:
        out |= kind.bit
    return out


MAID_MASK = mask(IdKind.IDFA, IdKind.GAID)
