"""Membership bitmaps: one roaring bitmap file per audience version.

Files are written to a temporary name, fsynced and renamed, so a reader or a crash never sees a
half-written bitmap.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyroaring import BitMap


class BitmapStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, audience_id: int, version: int) -> Path:
        return self.root / str(audience_id) / f"v{version}.roar"

    def write(self, audience_id: int, version: int, members: BitMap) -> Path:
        target = self.path(audience_id, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        members.run_optimize()
        with open(tmp, "wb") as fh:
            fh.write(members.serialize())
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)
        return target

    def read(self, audience_id: int, version: int) -> BitMap:
        path = self.path(audience_id, version)
        if not path.exists():
            return BitMap()
        return BitMap.deserialize(path.read_bytes())

    def prune(self, audience_id: int, keep: set[int]) -> None:
        """Delete version files not in ``keep`` (old versions nobody serves any more)."""
        folder = self.root / str(audience_id)
        if not folder.exists():
            return
        for f in folder.glob("v*.roar"):
            if int(f.stem[1:]) not in keep:
                f.unlink(missing_ok=True)

    def drop(self, audience_id: int) -> None:
        self.prune(audience_id, set())
