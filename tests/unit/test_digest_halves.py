"""``digest_halves``: the graph keys of a column of hex digests, vectorised, against
``hash_key`` one digest at a time."""

from __future__ import annotations

import hashlib

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from likewise.identity.hashing import digest_halves, hash_key

HEX = "0123456789abcdefABCDEF"
digests = st.one_of(
    st.binary(min_size=0, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest()),
    st.binary(min_size=0, max_size=8).map(lambda b: hashlib.md5(b).hexdigest()),
    st.text(alphabet=HEX, min_size=0, max_size=70),  # any case, any length
    st.text(min_size=0, max_size=40),  # not hex at all
)


def expected(digest: str) -> int | None:
    head = digest[:32]
    if len(head) < 32 or any(c not in HEX for c in head):
        return None
    return hash_key(digest)


def keys(column: pa.Array | pa.ChunkedArray) -> list[int | None]:
    hi, lo, valid = digest_halves(column)
    halves = zip(hi, lo, valid, strict=True)
    return [(int(h) << 64 | int(low)) if ok else None for h, low, ok in halves]


@given(st.lists(digests, max_size=30), st.integers(0, 5))
def test_every_digest_gets_hash_keys_key(values: list[str], cut: int) -> None:
    assert keys(pa.array(values, pa.string())) == [expected(v) for v in values]
    # A slice (an offset into shared buffers) and chunks give the same.
    assert keys(pa.array(values, pa.string()).slice(cut)) == [expected(v) for v in values[cut:]]
    chunked = pa.chunked_array([values[:cut], values[cut:]], pa.string())
    assert keys(chunked) == [expected(v) for v in values]


def test_a_column_of_sha256_digests_takes_the_fast_path() -> None:
    values = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1000)]
    assert keys(pa.array(values)) == [hash_key(v) for v in values]
    assert keys(pa.array([], pa.string())) == []
