"""Types of the compiled module ``_fast.pyx``."""

import numpy as np

KIND_CODES: dict[str, int]
REASONS: dict[int, str]
SKIP: int
MAX_LINE_CHARS: int
U_EMPTY: int
U_KEYS: int
U_INVALID: int
U_FALLBACK: int
KEYS_PER_VALUE: dict[int, int]

def find_lines(
    data: np.ndarray,
    pos: int,
    stop: int,
    final: bool,
    starts: np.ndarray,
    ends: np.ndarray,
) -> tuple[int, int]: ...
def customer_lines(
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    start: int,
    stop: int,
    skip: int,
    kinds: np.ndarray,
    rule: tuple[bytes, bytes, int, int, bytes] | None,
    prefixes: list[tuple[bytes, bool, int, int]],
    key_line: np.ndarray,
    key_hi: np.ndarray,
    key_lo: np.ndarray,
    key_col: np.ndarray,
    status: np.ndarray,
    fb_line: np.ndarray,
    fb_col: np.ndarray,
    fb_start: np.ndarray,
    fb_len: np.ndarray,
) -> tuple[int, int, int]: ...
def user_keys(
    kind: int,
    offsets: np.ndarray,
    data: np.ndarray,
    start: int,
    stop: int,
    region: np.ndarray,
    rules: list[tuple[bytes, bytes, int, int, bytes]],
    prefixes: list[tuple[bytes, bool, int, int]],
    key_hi: np.ndarray,
    key_lo: np.ndarray,
    key_row: np.ndarray,
    outcome: np.ndarray,
) -> int: ...
