# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled part of the dedup key index (see ``likewise.ingest.dedup``): a 64-bit hash of each
event's key, source + ``event`` + ``event_id``, straight from Arrow's buffers.

FNV-1a over the bytes, each string's length mixed in so that ("ab", "c") and ("a", "bc")
differ, then a 64-bit finaliser (MurmurHash3's) to spread the bits. Not a secret hash: a
collision only costs an exact check in the state database, never a wrong answer.
"""

from libc.stdint cimport int64_t, uint8_t, uint64_t

cdef uint64_t _OFFSET = 0xCBF29CE484222325ULL
cdef uint64_t _PRIME = 0x100000001B3ULL


cdef inline uint64_t _word(uint64_t h, uint64_t w) noexcept nogil:
    cdef int i
    for i in range(8):
        h = (h ^ ((w >> (8 * i)) & 0xFF)) * _PRIME
    return h


cdef inline uint64_t _bytes(uint64_t h, const uint8_t* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    h = _word(h, <uint64_t>n)
    for i in range(n):
        h = (h ^ s[i]) * _PRIME
    return h


cdef inline uint64_t _finish(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= 0xFF51AFD7ED558CCDULL
    h ^= h >> 33
    h *= 0xC4CEB9FE1A85EC53ULL
    h ^= h >> 33
    return h


def key_hashes(
    const int64_t[::1] source_ids,
    const int64_t[::1] event_offsets,
    const uint8_t[::1] event_data,
    const int64_t[::1] id_offsets,
    const uint8_t[::1] id_data,
    uint64_t[::1] out,
) -> None:
    """``out[i]`` = the hash of row i: ``source_ids[i]`` and the i-th strings of the two string
    columns, each given by offsets (n + 1 of them) into its data."""
    cdef Py_ssize_t n = source_ids.shape[0], i
    cdef uint64_t h
    if not (event_offsets.shape[0] == id_offsets.shape[0] == n + 1 and out.shape[0] == n):
        raise ValueError("key_hashes needs n source ids, n + 1 offsets of each column, n outputs")
    if n and (event_offsets[n] > event_data.shape[0] or id_offsets[n] > id_data.shape[0]):
        raise ValueError("offsets past the end of the data")
    with nogil:
        for i in range(n):
            h = _word(_OFFSET, <uint64_t>source_ids[i])
            h = _bytes(h, &event_data[0] + event_offsets[i], event_offsets[i + 1] - event_offsets[i])
            h = _bytes(h, &id_data[0] + id_offsets[i], id_offsets[i + 1] - id_offsets[i])
            out[i] = _finish(h)
