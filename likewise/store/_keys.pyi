"""Types of the compiled module ``_keys.pyx``."""

import numpy as np

NO_USER: int

def count(hi: np.ndarray, bits: int, counts: np.ndarray) -> None: ...
def scatter(
    hi: np.ndarray,
    lo: np.ndarray,
    kind: np.ndarray,
    uid: np.ndarray,
    bits: int,
    starts: np.ndarray,
    cursor: np.ndarray,
    out: np.ndarray,
) -> None: ...
def lookup(
    keys: np.ndarray,
    starts: np.ndarray,
    bits: int,
    q_hi: np.ndarray,
    q_lo: np.ndarray,
    q_mask: np.ndarray,
    out: np.ndarray,
) -> None: ...
