"""Types of the compiled module ``_dedup.pyx``."""

import numpy as np
import numpy.typing as npt

def key_hashes(
    source_ids: npt.NDArray[np.int64],
    event_offsets: npt.NDArray[np.int64],
    event_data: npt.NDArray[np.uint8],
    id_offsets: npt.NDArray[np.int64],
    id_data: npt.NDArray[np.uint8],
    out: npt.NDArray[np.uint64],
    out_lo: npt.NDArray[np.uint64],
) -> None: ...
