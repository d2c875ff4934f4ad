"""Types of the compiled module ``_rows.pyx``."""

from typing import Any, SupportsIndex

from pyroaring import BitMap

class Rows:
    users: int
    width: int
    overflow: Any  # anything with has(uid, slot) -> bool
    def __init__(self, rows: Any, width: int, overflow: Any) -> None: ...
    def has(self, uid: SupportsIndex, slot: int) -> bool: ...

class Contains:
    def __init__(
        self, checks: dict[int, int], rows: Rows, excluded: BitMap, servable: dict[int, BitMap]
    ) -> None: ...
    def __call__(self, audience_id: int, uid: int) -> bool: ...
