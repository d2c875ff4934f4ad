# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled parts of the in-memory identity key index (see ``key_index``).

Keys are 128-bit hash prefixes, uniformly spread, so their leading bits pick a bucket of a few
entries: a counting sort by those bits builds the index in two linear passes, and a lookup reads
one bucket (a cache miss or two) instead of scanning the graph's tens of millions of keys.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef uint32_t _NO_USER = 0xFFFFFFFF
NO_USER = _NO_USER  # a key no user has


cdef packed struct Entry:
    uint64_t hi
    uint64_t lo
    uint32_t uid
    uint8_t kind


def count(const uint64_t[::1] hi, int bits, uint32_t[::1] counts) -> None:
    """Add to ``counts[b]`` (``2**bits`` entries) the keys whose leading ``bits`` bits are b."""
    cdef Py_ssize_t n = hi.shape[0], i
    cdef int shift = 64 - bits
    if not 1 <= bits <= 32:
        raise ValueError("bits must be between 1 and 32")
    if counts.shape[0] != (<Py_ssize_t>1) << bits:
        raise ValueError("counts must have 2**bits entries")
    with nogil:
        for i in range(n):
            counts[hi[i] >> shift] += 1


def scatter(
    const uint64_t[::1] hi,
    const uint64_t[::1] lo,
    const uint8_t[::1] kind,
    const uint32_t[::1] uid,
    int bits,
    const uint32_t[::1] starts,
    uint32_t[::1] cursor,
    Entry[::1] out,
) -> None:
    """Put each key at its bucket's cursor (``cursor[b]``: the next free slot of bucket b,
    which ends at ``starts[b + 1]``; advanced here), as one packed entry: a bucket's
    candidates share cache lines."""
    cdef Py_ssize_t n = hi.shape[0], i, b, nb = (<Py_ssize_t>1) << bits
    cdef int shift = 64 - bits
    cdef uint32_t slot
    if not 1 <= bits <= 32:
        raise ValueError("bits must be between 1 and 32")
    if not (lo.shape[0] == kind.shape[0] == uid.shape[0] == n):
        raise ValueError("the key columns differ in length")
    if cursor.shape[0] != nb or starts.shape[0] != nb + 1:
        raise ValueError("cursor must have 2**bits entries and starts one more")
    if starts[nb] > out.shape[0]:
        raise ValueError("starts reaches beyond the output")
    with nogil:
        for i in range(n):
            b = hi[i] >> shift
            slot = cursor[b]
            if slot >= starts[b + 1]:
                with gil:
                    raise ValueError("more keys than counted")
            out[slot].hi = hi[i]
            out[slot].lo = lo[i]
            out[slot].uid = uid[i]
            out[slot].kind = kind[i]
            cursor[b] = slot + 1


def lookup(
    const Entry[::1] keys,
    const uint32_t[::1] starts,
    int bits,
    const uint64_t[::1] q_hi,
    const uint64_t[::1] q_lo,
    const uint8_t[::1] q_mask,
    uint32_t[::1] out,
) -> None:
    """``out[i]``: the lowest user holding key ``(q_hi[i], q_lo[i])`` of a kind in the bit mask
    ``q_mask[i]`` (bit ``kind`` set), or ``NO_USER``."""
    cdef Py_ssize_t n = q_hi.shape[0], i, j, end
    cdef int shift = 64 - bits
    cdef uint64_t h, l
    cdef uint8_t mask
    cdef uint32_t best
    if not 1 <= bits <= 32 or starts.shape[0] != ((<Py_ssize_t>1) << bits) + 1:
        raise ValueError("starts and bits do not fit together")
    if not (q_lo.shape[0] == q_mask.shape[0] == out.shape[0] == n):
        raise ValueError("the query columns differ in length")
    if starts[starts.shape[0] - 1] != keys.shape[0]:
        raise ValueError("starts does not describe these keys")
    with nogil:
        for i in range(n):
            h = q_hi[i]
            l = q_lo[i]
            mask = q_mask[i]
            best = _NO_USER
            j = starts[h >> shift]
            end = starts[(h >> shift) + 1]
            while j < end:
                if (
                    keys[j].hi == h and keys[j].lo == l and (mask >> keys[j].kind) & 1
                    and keys[j].uid < best
                ):
                    best = keys[j].uid
                j += 1
            out[i] = best
