# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled reads of the per-user index (see ``user_index``): the single membership check.

A random check over thousands of audiences costs one uncached read of the user's row (about
0.4-0.6 µs on the reference machine) plus the interpreter's work around it. In Python that work
(a call, a dict lookup, a binary search through memoryview items) took another 0.5-0.7 µs; here it
is a few dozen nanoseconds, so a check costs little more than its one memory read.
"""

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.stdint cimport uint16_t, uint32_t


cdef inline Py_ssize_t _uid(object uid) except? -2:
    """The user's row number; -1 for ids no index can hold (beyond a machine integer)."""
    try:
        return uid
    except OverflowError:
        return -1


ctypedef fused slot_t:
    uint16_t
    uint32_t


cdef inline Py_ssize_t _lower(const slot_t* row, Py_ssize_t n, Py_ssize_t slot) noexcept:
    """The first position in the sorted ``row[:n]`` holding ``slot`` or more (n if none)."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if row[mid] < slot:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef class Rows:
    """The rows of a ``UserIndex``: ``users * width`` unsigned 16- or 32-bit slots, each row
    sorted and padded with the type's maximum; ``overflow.has(uid, slot)`` answers for slots
    beyond a full row."""

    cdef Py_buffer _view
    cdef bint _held
    cdef const uint16_t* _r16
    cdef const uint32_t* _r32
    cdef readonly Py_ssize_t users
    cdef readonly Py_ssize_t width
    cdef readonly object overflow

    def __cinit__(self, object rows, Py_ssize_t width, object overflow):
        if width < 1:
            raise ValueError(f"row width must be at least 1, not {width}")
        PyObject_GetBuffer(rows, &self._view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS)
        self._held = True
        fmt = (self._view.format or b"B").lstrip(b"<=@")
        if self._view.ndim != 1 or fmt not in (b"H", b"I"):
            raise TypeError(f"rows must be a 1-d array of uint16 or uint32, not {fmt!r}")
        if self._view.itemsize == 2:
            self._r16 = <const uint16_t*> self._view.buf
        elif self._view.itemsize == 4:
            self._r32 = <const uint32_t*> self._view.buf
        else:
            raise TypeError(f"rows must be uint16 or uint32, not {self._view.itemsize}-byte items")
        self.users = self._view.shape[0] // width
        self.width = width
        self.overflow = overflow

    def __dealloc__(self):
        if self._held:
            PyBuffer_Release(&self._view)

    cdef inline int find(self, Py_ssize_t uid, Py_ssize_t slot) except -1:
        """1 if row ``uid`` (0 <= uid < users) holds ``slot``, else 0."""
        cdef Py_ssize_t at = uid * self.width, i
        if slot < 0:
            return 0
        if self._r16 != NULL:
            if slot > 0xFFFF:
                return 0
            i = _lower(self._r16 + at, self.width, slot)
            if i < self.width:
                return self._r16[at + i] == slot
        else:
            if slot > 0xFFFFFFFF:
                return 0
            i = _lower(self._r32 + at, self.width, slot)
            if i < self.width:
                return self._r32[at + i] == slot
        # Every slot in the row is smaller: the row is full, the rest is in the overflow.
        return 1 if self.overflow.has(uid, slot) else 0

    def has(self, object uid, Py_ssize_t slot) -> bool:
        """Whether user ``uid`` is in the audience of ``slot`` (False beyond the index)."""
        cdef Py_ssize_t u = _uid(uid)
        if u < 0 or u >= self.users:
            return False
        return self.find(u, slot) == 1


cdef class Contains:
    """``MembershipServer.contains`` over one published state: audiences in ``checks``
    (audience id -> slot) are answered by the rows, the others by their bitmap in
    ``servable``; a user in ``excluded`` (opted out or erased) is in no audience."""

    cdef dict _checks
    cdef Rows _rows
    cdef object _excluded
    cdef dict _servable

    def __cinit__(self, dict checks, Rows rows, object excluded, dict servable):
        self._checks = checks
        self._rows = rows
        self._excluded = excluded
        self._servable = servable

    def __call__(self, object audience_id, object uid) -> bool:
        cdef PyObject* slot = PyDict_GetItem(self._checks, audience_id)
        cdef Py_ssize_t u
        cdef PyObject* members
        if slot == NULL:
            members = PyDict_GetItem(self._servable, audience_id)
            return members != NULL and uid in <object> members and uid not in self._excluded
        u = _uid(uid)
        if u < 0 or u >= self._rows.users:
            return False
        if self._rows.find(u, <Py_ssize_t> <object> slot) == 0:
            return False
        return uid not in self._excluded
