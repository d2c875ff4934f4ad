"""Types of the compiled module ``_track.pyx``."""

from collections.abc import Container

KINDS: dict[str, int]

def track_lines(
    body: bytes,
    kind: int,
    head: bytes,
    received: bytes,
    test: bool,
    oldest: float,
    latest: float,
    standard: Container[str],
    max_events: int,
    max_event_name: int,
    max_event_id: int,
    max_ids: int,
    max_contents: int,
    max_properties: int,
) -> bytes | None: ...
