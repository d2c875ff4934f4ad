# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled part of the dedup keys (see ``likewise.ingest.dedup``): a 128-bit hash of each
event's key, source + ``event`` + ``event_id``, straight from Arrow's buffers, as two 64-bit
halves computed independently.

Each half is a multiplicative hash over the bytes (FNV-1a; the other with another basis and
multiplier), each string's length mixed in so that ("ab", "c") and ("a", "bc") differ, then a
64-bit finaliser (MurmurHash3's; SplitMix64's) to spread the bits. The high half keys the
in-memory index, where a collision only costs a look in the state database; the two together
are the key stored there, where two keys share one with a chance of about 1e-24 among ten
million (as the identity graph's 128-bit keys). Not a secret hash: an advertiser could only
collide keys of its own sources.
"""

from libc.stdint cimport int64_t, uint8_t, uint64_t

cdef uint64_t _OFFSET = 0xCBF29CE484222325ULL
cdef uint64_t _PRIME = 0x100000001B3ULL
cdef uint64_t _OFFSET_LO = 0x9E3779B97F4A7C15ULL
cdef uint64_t _PRIME_LO = 0xD6E8FEB86659FD93ULL  # odd: every byte still reaches every bit


cdef inline uint64_t _word(uint64_t h, uint64_t w, uint64_t prime) noexcept nogil:
    cdef int i
    for i in range(8):
        h = (h ^ ((w >> (8 * i)) & 0xFF)) * prime
    return h


cdef inline void _bytes(
    uint64_t* hi, uint64_t* lo, const uint8_t* s, Py_ssize_t n
) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t a = _word(hi[0], <uint64_t>n, _PRIME)
    cdef uint64_t b = _word(lo[0], <uint64_t>n, _PRIME_LO)
    for i in range(n):
        a = (a ^ s[i]) * _PRIME
        b = (b ^ s[i]) * _PRIME_LO
    hi[0] = a
    lo[0] = b


cdef inline uint64_t _finish(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= 0xFF51AFD7ED558CCDULL
    h ^= h >> 33
    h *= 0xC4CEB9FE1A85EC53ULL
    h ^= h >> 33
    return h


cdef inline uint64_t _finish_lo(uint64_t h) noexcept nogil:
    h ^= h >> 30
    h *= 0xBF58476D1CE4E5B9ULL
    h ^= h >> 27
    h *= 0x94D049BB133111EBULL
    h ^= h >> 31
    return h


def key_hashes(
    const int64_t[::1] source_ids,
    const int64_t[::1] event_offsets,
    const uint8_t[::1] event_data,
    const int64_t[::1] id_offsets,
    const uint8_t[::1] id_data,
    uint64_t[::1] out,
    uint64_t[::1] out_lo,
) -> None:
    """``out[i]``, ``out_lo[i]`` = the hash of row i (high and low halves): ``source_ids[i]``
    and the i-th strings of the two string columns, each given by offsets (n + 1 of them) into
    its data."""
    cdef Py_ssize_t n = source_ids.shape[0], i
    cdef uint64_t h, l
    if not (
        event_offsets.shape[0] == id_offsets.shape[0] == n + 1
        and out.shape[0] == n
        and out_lo.shape[0] == n
    ):
        raise ValueError("key_hashes needs n source ids, n + 1 offsets of each column, n outputs")
    if n and (event_offsets[n] > event_data.shape[0] or id_offsets[n] > id_data.shape[0]):
        raise ValueError("offsets past the end of the data")
    with nogil:
        for i in range(n):
            h = _word(_OFFSET, <uint64_t>source_ids[i], _PRIME)
            l = _word(_OFFSET_LO, <uint64_t>source_ids[i], _PRIME_LO)
            _bytes(&h, &l, &event_data[0] + event_offsets[i], event_offsets[i + 1] - event_offsets[i])
            _bytes(&h, &l, &id_data[0] + id_offsets[i], id_offsets[i + 1] - id_offsets[i])
            out[i] = _finish(h)
            out_lo[i] = _finish_lo(l)
