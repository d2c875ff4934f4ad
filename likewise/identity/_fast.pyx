# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled fast path of the normalisers, for customer files and users imports.

Customer files (``file_fields``): one pass over the file's lines without the GIL, splitting each
line into its fields, deciding every field the way the Python reference does (``email``,
``phone``, ``device``) and hashing what is decided into its 128-bit graph key with OpenSSL's
SHA-256. Users imports (``user_keys``): the keys of every documented form of each identifier.
Values it cannot decide (non-ASCII text, addresses outside the strict pattern, phone shapes
outside the rule table) are handed back to the Python reference, so the result equals
normalising every value in Python.
"""

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memmove

cdef extern from *:
    """
    /* OpenSSL's SHA-256 and MD5, from the libcrypto Python's hashlib already loads, declared here
       so that building needs no OpenSSL headers. The low-level calls, not the one-shot SHA256():
       since OpenSSL 3 that one fetches the algorithm from the provider store on every call,
       which costs more than hashing a short identifier and serialises threads on a lock. The
       context is opaque here: a buffer larger than OpenSSL's SHA256_CTX (112 bytes) and MD5_CTX
       (92 bytes). */
    typedef struct { unsigned long long opaque[32]; } likewise_digest_ctx;
    int SHA256_Init(likewise_digest_ctx *c);
    int SHA256_Update(likewise_digest_ctx *c, const void *data, size_t len);
    int SHA256_Final(unsigned char *md, likewise_digest_ctx *c);
    int MD5_Init(likewise_digest_ctx *c);
    int MD5_Update(likewise_digest_ctx *c, const void *data, size_t len);
    int MD5_Final(unsigned char *md, likewise_digest_ctx *c);
    """
    ctypedef struct likewise_digest_ctx:
        pass
    int SHA256_Init(likewise_digest_ctx *c) nogil
    int SHA256_Update(likewise_digest_ctx *c, const void *data, size_t len) nogil
    int SHA256_Final(unsigned char *md, likewise_digest_ctx *c) nogil
    int MD5_Init(likewise_digest_ctx *c) nogil
    int MD5_Update(likewise_digest_ctx *c, const void *data, size_t len) nogil
    int MD5_Final(unsigned char *md, likewise_digest_ctx *c) nogil

ctypedef fused offset_t:
    int32_t
    int64_t

# Column kinds.
cdef enum:
    K_EMAIL = 0
    K_PHONE = 1
    K_DEVICE = 2

KIND_CODES = {"email": K_EMAIL, "phone": K_PHONE, "idfa": K_DEVICE, "gaid": K_DEVICE,
              "maid": K_DEVICE}

# Outcomes. Field reasons are numbered in the order of their names, so the smallest code of a
# line is the reason the SQL reference reports (``least`` of the names).
cdef enum:
    VALID = 0
    R_INVALID_DEVICE_ID = 1
    R_INVALID_EMAIL = 2
    R_INVALID_HASH_LENGTH = 3
    R_INVALID_PHONE = 4
    R_MD5_EMAIL = 5
    R_MD5_PHONE = 6
    NO_IDENTIFIER = 9
    CONTROL_CHARACTER = 10
    LINE_TOO_LONG = 11
    WRONG_FIELD_COUNT = 12
    INVALID_UTF8 = 13
    SKIPPED = 253  # a blank line or the header: not a row
    F_EMPTY = 254
    F_FALLBACK = 255

REASONS = {
    R_INVALID_DEVICE_ID: "invalid_device_id",
    R_INVALID_EMAIL: "invalid_email",
    R_INVALID_HASH_LENGTH: "invalid_hash_length",
    R_INVALID_PHONE: "invalid_phone",
    R_MD5_EMAIL: "md5_not_supported_for_email",
    R_MD5_PHONE: "md5_not_supported_for_phone",
    NO_IDENTIFIER: "no_identifier",
    CONTROL_CHARACTER: "control_character",
    LINE_TOO_LONG: "line_too_long",
    WRONG_FIELD_COUNT: "wrong_field_count",
    INVALID_UTF8: "invalid_utf8",
}
SKIP = SKIPPED

cdef int MAX_LINE = 4096  # characters; longer lines are rejected
MAX_LINE_CHARS = MAX_LINE
cdef int EMAIL_MAX = 254
cdef int PHONE_MAX = 18  # a cleaned number longer than this is never decided by the rules
cdef int MAX_PREFIXES = 16


cdef struct PhoneRule:
    bint present
    uint8_t cc[8]
    int cc_len
    uint8_t trunk[8]
    int trunk_len
    uint8_t idd[8]
    int idd_len
    int min_len
    int max_len
    int n_prefixes  # "+<cc><trunk>" of every rule with a trunk (phone.INTL_TRUNK)
    uint8_t prefixes[16][8]
    int prefix_len[16]
    bint prefix_strips[16]  # the trunk is dropped when the rest has this length (TRUNK_AFTER_CC)
    int prefix_min[16]
    int prefix_max[16]


cdef inline bint _is_hex(uint8_t c) noexcept nogil:
    return (48 <= c <= 57) or (97 <= c <= 102) or (65 <= c <= 70)


cdef inline bint _is_digit(uint8_t c) noexcept nogil:
    return 48 <= c <= 57


cdef inline bint _is_alnum(uint8_t c) noexcept nogil:
    return (48 <= c <= 57) or (97 <= c <= 122)


cdef inline bint _is_strip(uint8_t c) noexcept nogil:
    # customer_file's FIELD_STRIP: whitespace and double quotes
    return c == 32 or c == 34 or (9 <= c <= 13)


cdef inline uint64_t _hex_value(uint8_t c) noexcept nogil:
    if c <= 57:
        return c - 48
    if c >= 97:
        return c - 87
    return c - 55


cdef inline void _hex_key(const uint8_t* s, uint64_t* hi, uint64_t* lo) noexcept nogil:
    """The key of a hex digest: its first 32 hex digits (see ``hashing.hash_key``)."""
    cdef uint64_t h = 0, l = 0
    cdef int i
    for i in range(16):
        h = (h << 4) | _hex_value(s[i])
    for i in range(16, 32):
        l = (l << 4) | _hex_value(s[i])
    hi[0] = h
    lo[0] = l


cdef inline void _digest_key(const uint8_t* md, uint64_t* hi, uint64_t* lo) noexcept nogil:
    """The key of a digest: its first 128 bits, big-endian (as ``_hex_key`` reads them)."""
    cdef uint64_t h = 0, l = 0
    cdef int i
    for i in range(8):
        h = (h << 8) | md[i]
        l = (l << 8) | md[8 + i]
    hi[0] = h
    lo[0] = l


cdef inline void _sha_key(const uint8_t* s, Py_ssize_t n, uint64_t* hi, uint64_t* lo) noexcept nogil:
    cdef uint8_t md[32]
    cdef likewise_digest_ctx ctx
    SHA256_Init(&ctx)
    SHA256_Update(&ctx, s, n)
    SHA256_Final(md, &ctx)
    _digest_key(md, hi, lo)


cdef inline void _md5_key(const uint8_t* s, Py_ssize_t n, uint64_t* hi, uint64_t* lo) noexcept nogil:
    cdef uint8_t md[16]
    cdef likewise_digest_ctx ctx
    MD5_Init(&ctx)
    MD5_Update(&ctx, s, n)
    MD5_Final(md, &ctx)
    _digest_key(md, hi, lo)


cdef inline bint _is_atext(uint8_t c) noexcept nogil:
    # RFC 5322 atext, lower case: letters, digits and !#$%&'*+/=?^_`{|}~-
    if _is_alnum(c):
        return True
    return (c == 33 or (35 <= c <= 39) or c == 42 or c == 43 or c == 45 or c == 47 or c == 61
            or c == 63 or (94 <= c <= 96) or (123 <= c <= 126))


cdef bint _email_ok(const uint8_t* s, Py_ssize_t n, Py_ssize_t* at) noexcept nogil:
    """``email.PATTERN`` on a lower-case ASCII address; sets ``at`` to the ``@``."""
    cdef Py_ssize_t i = 1, label, labels = 0, start
    cdef bint letters
    if n == 0 or not _is_alnum(s[0]):
        return False
    # Local part: dot-separated runs of atext.
    while i < n and s[i] != 64:
        if s[i] == 46:
            if i + 1 >= n or not _is_atext(s[i + 1]):
                return False
        elif not _is_atext(s[i]):
            return False
        i += 1
    if i >= n:
        return False
    at[0] = i
    i += 1
    # Domain: LDH labels of 1-63 characters, then a top-level domain of 2-63 letters.
    while True:
        start = i
        letters = True
        while i < n and s[i] != 46:
            if not (_is_alnum(s[i]) or s[i] == 45):
                return False
            if not (97 <= s[i] <= 122):
                letters = False
            i += 1
        label = i - start
        labels += 1
        if i >= n:  # the last label: the top-level domain
            return labels >= 2 and letters and 2 <= label <= 63
        if label < 1 or label > 63 or s[start] == 45 or s[i - 1] == 45:
            return False
        i += 1  # the dot


cdef int _email(const uint8_t* v, Py_ssize_t n, uint8_t* buf, uint64_t* hi, uint64_t* lo) noexcept nogil:
    cdef Py_ssize_t i, at = 0, m
    cdef bint plain = True
    cdef uint8_t c
    if n > EMAIL_MAX:
        return F_FALLBACK
    for i in range(n):
        c = v[i]
        if c >= 128:
            return F_FALLBACK  # non-ASCII: Python's lower() and the library decide
        if 65 <= c <= 90:
            c += 32
        buf[i] = c
    if not _email_ok(buf, n, &at):
        return F_FALLBACK
    # The customer-file form: drop a +tag and the local part's dots.
    for i in range(at):
        if buf[i] == 43 or buf[i] == 46:
            plain = False
            break
    if plain:
        _sha_key(buf, n, hi, lo)
        return VALID
    m = 0
    for i in range(at):
        c = buf[i]
        if c == 43:
            break
        if c != 46:
            buf[m] = c
            m += 1
    if m == 0:
        return R_INVALID_EMAIL
    for i in range(at, n):
        buf[m] = buf[i]
        m += 1
    _sha_key(buf, m, hi, lo)
    return VALID


cdef inline bint _starts(const uint8_t* s, Py_ssize_t n, const uint8_t* p, int pn) noexcept nogil:
    return n >= pn and memcmp(s, p, pn) == 0


cdef int _prefix(const uint8_t* s, Py_ssize_t n, const PhoneRule* r) noexcept nogil:
    """The index of the ``+<cc><trunk>`` prefix ``s`` starts with, or -1."""
    cdef int i
    for i in range(r.n_prefixes):
        if _starts(s, n, r.prefixes[i], r.prefix_len[i]):
            return i
    return -1


cdef inline bint _digits(const uint8_t* s, Py_ssize_t n, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    if n < lo or n > hi:
        return False
    for i in range(n):
        if not _is_digit(s[i]):
            return False
    return True


cdef inline bint _is_international(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    # \+[1-9][0-9]{6,14}
    return n >= 2 and s[0] == 43 and 49 <= s[1] <= 57 and _digits(s + 2, n - 2, 6, 14)


cdef int _international(uint8_t* s, Py_ssize_t n, bint bracketed, const PhoneRule* r,
                        uint8_t* out, Py_ssize_t* olen) noexcept nogil:
    """``phone._international`` of ``s`` (``+<cc>…``) into ``out`` (which may be ``s``)."""
    cdef int p = _prefix(s, n, r)
    cdef Py_ssize_t k, cc_end
    if p >= 0:
        if not r.prefix_strips[p]:
            return F_FALLBACK
        k = n - r.prefix_len[p]
        if not (r.prefix_min[p] <= k <= r.prefix_max[p]) or s[r.prefix_len[p]] == 48:
            return F_FALLBACK
        cc_end = r.prefix_len[p] - 1  # drop the trunk prefix 0 after the country code
        memmove(out, s, cc_end)
        memmove(out + cc_end, s + cc_end + 1, k)
        olen[0] = n - 1
        return VALID
    if bracketed:
        return F_FALLBACK
    memmove(out, s, n)
    olen[0] = n
    return VALID


cdef int _phone(const uint8_t* v, Py_ssize_t n, const PhoneRule* r, uint8_t* c, uint8_t* out,
                Py_ssize_t* olen) noexcept nogil:
    """``phone.fast_phone`` of the trimmed ``v``: VALID with the E.164 form in ``out``, or
    F_FALLBACK where it returns None. ``c`` and ``out`` hold at least 32 bytes."""
    cdef Py_ssize_t i, m = 0, k
    cdef uint8_t b
    cdef bint bracketed = False
    for i in range(n - 2):
        if v[i] == 40 and v[i + 1] == 48 and v[i + 2] == 41:
            bracketed = True  # "(0)"
            break
    for i in range(n):
        b = v[i]
        if b == 32 or b == 9 or b == 40 or b == 41 or b == 46 or b == 45 or b == 47:
            continue
        if m >= PHONE_MAX:
            return F_FALLBACK
        c[m] = b
        m += 1
    if _is_international(c, m):
        return _international(c, m, bracketed, r, out, olen)
    if m >= 9 and c[0] == 48 and c[1] == 48 and 49 <= c[2] <= 57 and _digits(c + 3, m - 3, 6, 14):
        out[0] = 43
        memcpy(out + 1, c + 2, m - 2)
        if bracketed or _prefix(out, m - 1, r) >= 0:
            return F_FALLBACK
        olen[0] = m - 1
        return VALID
    if not r.present or not _digits(c, m, 6, 17):
        return F_FALLBACK
    if not (r.idd_len == 2 and r.idd[0] == 48 and r.idd[1] == 48) and _starts(c, m, r.idd, r.idd_len):
        out[0] = 43
        k = m - r.idd_len
        memcpy(out + 1, c + r.idd_len, k)
        if _is_international(out, k + 1):
            return _international(out, k + 1, bracketed, r, out, olen)
        return F_FALLBACK
    if bracketed:
        return F_FALLBACK
    cdef bint has_trunk = r.trunk_len > 0 and _starts(c, m, r.trunk, r.trunk_len)
    if has_trunk:
        k = m - r.trunk_len
        if r.min_len <= k <= r.max_len and c[r.trunk_len] != 48:
            return _with_cc(c + r.trunk_len, k, r, out, olen)
    if r.min_len <= m <= r.max_len and c[0] != 48 and not has_trunk:
        if _starts(c, m, r.cc, r.cc_len):
            return F_FALLBACK  # national length but starting with the country code: ambiguous
        return _with_cc(c, m, r, out, olen)
    if _starts(c, m, r.cc, r.cc_len):
        k = m - r.cc_len
        if r.min_len <= k <= r.max_len and c[r.cc_len] != 48:
            out[0] = 43
            memcpy(out + 1, c, m)
            olen[0] = m + 1
            return VALID
    return F_FALLBACK


cdef inline int _with_cc(const uint8_t* nsn, Py_ssize_t k, const PhoneRule* r, uint8_t* out,
                         Py_ssize_t* olen) noexcept nogil:
    out[0] = 43
    memcpy(out + 1, r.cc, r.cc_len)
    memcpy(out + 1 + r.cc_len, nsn, k)
    olen[0] = 1 + r.cc_len + k
    return VALID


cdef int _device(const uint8_t* v, Py_ssize_t n, uint8_t* buf) noexcept nogil:
    """``device.normalize_device_id`` of the trimmed ``v``: VALID with the lower-case id in
    ``buf`` (36 bytes), or R_INVALID_DEVICE_ID."""
    cdef Py_ssize_t i
    cdef uint8_t c
    cdef bint zero = True
    if n != 36:
        return R_INVALID_DEVICE_ID
    for i in range(36):
        c = v[i]
        if 65 <= c <= 90:
            c += 32
        if i == 8 or i == 13 or i == 18 or i == 23:
            if c != 45:
                return R_INVALID_DEVICE_ID
        elif not ((48 <= c <= 57) or (97 <= c <= 102)):
            return R_INVALID_DEVICE_ID
        elif c != 48:
            zero = False
        buf[i] = c
    if zero:
        return R_INVALID_DEVICE_ID  # the all-zero id of "limit ad tracking" identifies nobody
    return VALID


cdef int _field(const uint8_t* v, Py_ssize_t n, int kind, const PhoneRule* rule, uint8_t* buf,
                uint8_t* out, uint64_t* hi, uint64_t* lo) noexcept nogil:
    """One stripped field: VALID (key set), a reason, F_EMPTY or F_FALLBACK. TikTok's rule
    first (64 hex characters are a SHA-256, 32 an MD5 of a device id), then the normaliser of
    the column's kind."""
    cdef Py_ssize_t i
    cdef bint hex_ = True, digits = True
    if n == 0:
        return F_EMPTY
    for i in range(n):
        if not _is_hex(v[i]):
            hex_ = False
            break
        if not _is_digit(v[i]):
            digits = False
    if hex_ and n == 64:
        _hex_key(v, hi, lo)
        return VALID
    if not (n < 16 or not hex_ or (kind == K_PHONE and digits)):
        if n == 32:
            if kind == K_DEVICE:
                _hex_key(v, hi, lo)
                return VALID
            return R_MD5_EMAIL if kind == K_EMAIL else R_MD5_PHONE
        return R_INVALID_HASH_LENGTH
    cdef int outcome
    cdef Py_ssize_t olen = 0
    if kind == K_EMAIL:
        return _email(v, n, buf, hi, lo)
    if kind == K_PHONE:
        outcome = _phone(v, n, rule, buf, out, &olen)
        if outcome == VALID:
            _sha_key(out, olen, hi, lo)
        return outcome
    outcome = _device(v, n, buf)
    if outcome == VALID:
        _sha_key(buf, 36, hi, lo)
    return outcome


cdef inline Py_ssize_t _chars(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, count = 0
    for i in range(n):
        if (s[i] & 0xC0) != 0x80:
            count += 1
    return count


cdef PhoneRule _rule(object rule, object prefixes) except *:
    cdef PhoneRule r
    cdef int i
    r.present = rule is not None
    r.n_prefixes = 0
    r.cc_len = r.trunk_len = r.idd_len = r.min_len = r.max_len = 0
    if rule is not None:
        cc, trunk, min_len, max_len, idd = rule
        r.cc_len, r.trunk_len, r.idd_len = len(cc), len(trunk), len(idd)
        if max(r.cc_len, r.trunk_len, r.idd_len) > 8:
            raise ValueError("phone rule parts are at most 8 characters")
        for i in range(r.cc_len):
            r.cc[i] = cc[i]
        for i in range(r.trunk_len):
            r.trunk[i] = trunk[i]
        for i in range(r.idd_len):
            r.idd[i] = idd[i]
        r.min_len, r.max_len = min_len, max_len
    if len(prefixes) > MAX_PREFIXES:
        raise ValueError(f"at most {MAX_PREFIXES} international trunk prefixes")
    for p, strips, min_len, max_len in prefixes:
        if len(p) > 8:
            raise ValueError("international trunk prefixes are at most 8 characters")
        for i in range(len(p)):
            r.prefixes[r.n_prefixes][i] = p[i]
        r.prefix_len[r.n_prefixes] = len(p)
        r.prefix_strips[r.n_prefixes] = strips
        r.prefix_min[r.n_prefixes] = min_len
        r.prefix_max[r.n_prefixes] = max_len
        r.n_prefixes += 1
    return r


cdef inline bint _utf8(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Well-formed UTF-8 (Unicode table 3-7: no overlong forms, surrogates or values past
    U+10FFFF), as Python's decoder requires."""
    cdef Py_ssize_t i = 0, j, length
    cdef uint8_t c, lo, hi
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        # The lead byte gives the length and the range of the second byte; later bytes are
        # continuation bytes (10xxxxxx).
        lo, hi = 0x80, 0xBF
        if 0xC2 <= c <= 0xDF:
            length = 2
        elif 0xE0 <= c <= 0xEF:
            length = 3
            if c == 0xE0:
                lo = 0xA0  # no overlong forms
            elif c == 0xED:
                hi = 0x9F  # no surrogates
        elif 0xF0 <= c <= 0xF4:
            length = 4
            if c == 0xF0:
                lo = 0x90  # no overlong forms
            elif c == 0xF4:
                hi = 0x8F  # nothing past U+10FFFF
        else:
            return False
        if i + length > n or not (lo <= s[i + 1] <= hi):
            return False
        for j in range(2, length):
            if (s[i + j] & 0xC0) != 0x80:
                return False
        i += length
    return True


cdef inline bint _blank(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] != 32 and s[i] != 9:
            return False
    return True


cdef inline bint _has_control(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """Control characters no text file of identifiers holds (not tab, line ends, form feed)."""
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] <= 8 or 14 <= s[i] <= 31:
            return True
    return False


def find_lines(
    const uint8_t[::1] data,
    Py_ssize_t pos,
    Py_ssize_t stop,
    bint final,
    int64_t[::1] starts,
    int64_t[::1] ends,
):
    """Lines of ``data[pos:stop]``, at most ``len(starts)``: their spans (line ends excluded)
    into ``starts``/``ends``. A line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r``. Unless
    ``final``, a last line without its end is left for the next call (it may continue in the
    next chunk). Returns ``(lines, position after the last line)``."""
    cdef Py_ssize_t cap = min(starts.shape[0], ends.shape[0]), count = 0, i, a
    cdef const uint8_t* base
    cdef const uint8_t* nl
    cdef const uint8_t* cr
    if pos < 0 or stop < pos or stop > data.shape[0]:
        raise ValueError("span outside the data")
    if stop == pos:
        return 0, pos
    base = &data[0]
    with nogil:
        while pos < stop and count < cap:
            nl = <const uint8_t*>memchr(base + pos, 10, stop - pos)
            i = (nl - base) if nl != NULL else stop
            cr = <const uint8_t*>memchr(base + pos, 13, i - pos)
            if cr != NULL and not (cr - base == i - 1 and nl != NULL):
                # A lone \r ends the line (old Mac files), unless it is the chunk's last byte
                # and the next chunk may start with its \n.
                a = cr - base
                if a == stop - 1 and not final:
                    break
                starts[count] = pos
                ends[count] = a
                count += 1
                pos = a + 1
                continue
            if nl == NULL:
                if not final:
                    break
                starts[count] = pos
                ends[count] = stop
                count += 1
                pos = stop
                break
            starts[count] = pos
            ends[count] = i - 1 if (i > pos and base[i - 1] == 13) else i
            count += 1
            pos = i + 1
    return count, pos


def customer_lines(
    const uint8_t[::1] data,
    const int64_t[::1] starts,
    const int64_t[::1] ends,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t skip,
    const uint8_t[::1] kinds,
    object rule,
    object prefixes,
    uint32_t[::1] key_line,
    uint64_t[::1] key_hi,
    uint64_t[::1] key_lo,
    uint8_t[::1] key_col,
    uint8_t[::1] status,
    uint32_t[::1] fb_line,
    uint8_t[::1] fb_col,
    int64_t[::1] fb_start,
    int32_t[::1] fb_len,
):
    """Decide lines ``start:stop`` (spans ``starts``/``ends`` into ``data``) whose columns have
    ``kinds`` (codes of :data:`KIND_CODES`); line ``skip`` is the header (-1: none).

    ``rule`` is the region's phone rule ``(cc, trunk, min_len, max_len, idd)`` as bytes and ints
    (None: no rule) and ``prefixes`` the ``+<cc><trunk>`` prefixes, each with whether the trunk
    is dropped and for which lengths of the rest (``phone._international``). Writes each key (its
    line, two halves and column), each line's ``status`` (VALID, :data:`SKIP`, or a code of
    :data:`REASONS`) and each field left to Python (its line, column and byte span); returns
    ``(keys, fallbacks, controls)``, the last being the rejected lines holding control
    characters (a binary file has many). Output arrays hold ``(stop - start) * len(kinds)``
    entries, ``status`` one per line.
    """
    cdef Py_ssize_t ncols = kinds.shape[0]
    cdef Py_ssize_t cap = (stop - start) * ncols
    cdef Py_ssize_t i
    if ncols < 1 or ncols > 64:
        raise ValueError("between 1 and 64 columns")
    if (start < 0 or stop < start or stop > starts.shape[0] or stop > ends.shape[0]
            or status.shape[0] < stop):
        raise ValueError("line range outside the arrays")
    if (key_line.shape[0] < cap or key_hi.shape[0] < cap or key_lo.shape[0] < cap
            or key_col.shape[0] < cap or fb_line.shape[0] < cap or fb_col.shape[0] < cap
            or fb_start.shape[0] < cap or fb_len.shape[0] < cap):
        raise ValueError("output arrays are too small")
    for i in range(start, stop):
        if not 0 <= starts[i] <= ends[i] <= data.shape[0]:
            raise ValueError("line spans outside the data")
    cdef PhoneRule r = _rule(rule, prefixes)
    cdef Py_ssize_t col, a, b, e, nkeys = 0, nfb = 0, commas, controls = 0
    cdef const uint8_t* s
    cdef const uint8_t* base = &data[0] if data.shape[0] else NULL
    cdef Py_ssize_t length
    cdef int outcome, best
    cdef bint got
    cdef uint64_t hi = 0, lo = 0
    cdef uint8_t buf[256]
    cdef uint8_t out[32]
    with nogil:
        for i in range(start, stop):
            length = ends[i] - starts[i]
            s = base + starts[i]
            if not _utf8(s, length):
                status[i] = INVALID_UTF8
                continue
            if i == skip or _blank(s, length):
                status[i] = SKIPPED
                continue
            if length and (memchr(s, 1, length) != NULL or memchr(s, 2, length) != NULL):
                status[i] = CONTROL_CHARACTER
            elif length > MAX_LINE and _chars(s, length) > MAX_LINE:
                status[i] = LINE_TOO_LONG
            else:
                status[i] = VALID
                if ncols > 1:
                    commas = 0
                    for b in range(length):
                        if s[b] == 44:
                            commas += 1
                    if commas != ncols - 1:
                        status[i] = WRONG_FIELD_COUNT
            if status[i] != VALID:
                controls += _has_control(s, length)
                continue
            best = NO_IDENTIFIER
            got = False
            b = 0
            for col in range(ncols):
                e = b
                if ncols > 1:
                    while e < length and s[e] != 44:
                        e += 1
                else:
                    e = length
                a = b
                b = e + 1  # the next field
                while a < e and _is_strip(s[a]):
                    a += 1
                while e > a and _is_strip(s[e - 1]):
                    e -= 1
                outcome = _field(s + a, e - a, kinds[col], &r, buf, out, &hi, &lo)
                if outcome == VALID:
                    key_line[nkeys] = <uint32_t>i
                    key_hi[nkeys] = hi
                    key_lo[nkeys] = lo
                    key_col[nkeys] = <uint8_t>col
                    nkeys += 1
                    got = True
                elif outcome == F_FALLBACK:
                    fb_line[nfb] = <uint32_t>i
                    fb_col[nfb] = <uint8_t>col
                    fb_start[nfb] = starts[i] + a
                    fb_len[nfb] = <int32_t>(e - a)
                    nfb += 1
                elif outcome != F_EMPTY and outcome < best:
                    best = outcome
            status[i] = VALID if got else best
            if not got:
                controls += _has_control(s, length)
    return nkeys, nfb, controls


# --- the platform's side: every documented form of each user's identifiers -----------------

# Per value of ``user_keys``: nothing to do, keys written, refused, or left to Python.
cdef enum:
    UE = 0
    UK = 1
    UI = 2
    UF = 3
U_EMPTY, U_KEYS, U_INVALID, U_FALLBACK = UE, UK, UI, UF
KEYS_PER_VALUE = {K_EMAIL: 3, K_PHONE: 2, K_DEVICE: 4}


cdef inline bint _is_space(uint8_t c) noexcept nogil:
    # text.WHITESPACE: ASCII whitespace only
    return c == 32 or (9 <= c <= 13)


cdef int _email_forms(const uint8_t* v, Py_ssize_t n, uint8_t* buf, uint8_t* form,
                      uint64_t* hi, uint64_t* lo) noexcept nogil:
    """The keys of every documented form of a trimmed address (``users._email_keys``): the
    basic form, then the form without ``+tag``, then without the local part's dots, each only
    where it differs from the one before. Returns how many, or -1 (left to Python)."""
    cdef Py_ssize_t i, at = 0, plus = -1, m, local_end
    cdef int count = 1
    cdef uint8_t c
    if n > EMAIL_MAX:
        return -1
    for i in range(n):
        c = v[i]
        if c >= 128:
            return -1
        if 65 <= c <= 90:
            c += 32
        buf[i] = c
    if not _email_ok(buf, n, &at):
        return -1
    _sha_key(buf, n, &hi[0], &lo[0])
    for i in range(at):
        if buf[i] == 43:
            plus = i
            break
    local_end = at
    if plus >= 0:
        memcpy(form, buf, plus)
        memcpy(form + plus, buf + at, n - at)
        _sha_key(form, plus + n - at, &hi[count], &lo[count])
        count += 1
        local_end = plus
    if memchr(buf, 46, local_end) != NULL:
        m = 0
        for i in range(local_end):
            if buf[i] != 46:
                form[m] = buf[i]
                m += 1
        memcpy(form + m, buf + at, n - at)
        _sha_key(form, m + n - at, &hi[count], &lo[count])
        count += 1
    return count


def user_keys(
    int kind,
    const offset_t[::1] offsets,
    const uint8_t[::1] data,
    Py_ssize_t start,
    Py_ssize_t stop,
    const int8_t[::1] region,
    object rules,
    object prefixes,
    uint64_t[::1] key_hi,
    uint64_t[::1] key_lo,
    uint32_t[::1] key_row,
    uint8_t[::1] outcome,
):
    """Keys of rows ``start:stop`` of an Arrow string array (``offsets``, ``data``, no NULLs) of
    one identifier ``kind`` (a code of :data:`KIND_CODES`), as the users import keeps them:
    e-mails in up to three forms, phones with and without ``+``, device ids in both cases and
    both hashes (the key of the first form of each value comes first).

    Phones use ``rules[region[row]]`` (rules as in :func:`customer_lines`; -1: none). Writes each
    key with its row and each row's ``outcome`` (U_*); returns the number of keys. Key arrays
    hold ``KEYS_PER_VALUE[kind]`` per row.
    """
    cdef Py_ssize_t per = KEYS_PER_VALUE.get(kind, 0)
    cdef Py_ssize_t cap = (stop - start) * per
    cdef Py_ssize_t i, a, e, nkeys = 0, olen = 0
    cdef int j, got, nrules = len(rules)
    if per == 0:
        raise ValueError(f"unknown kind {kind}")
    if start < 0 or stop < start or stop + 1 > offsets.shape[0] or outcome.shape[0] < stop:
        raise ValueError("row range outside the array")
    if kind == K_PHONE and region.shape[0] < stop:
        raise ValueError("one region per row")
    if key_hi.shape[0] < cap or key_lo.shape[0] < cap or key_row.shape[0] < cap:
        raise ValueError("output arrays are too small")
    if offsets[stop] > data.shape[0] or offsets[start] < 0:
        raise ValueError("offsets outside the data")
    if nrules > 32:
        raise ValueError("at most 32 phone rules")
    cdef PhoneRule table[33]
    for j in range(nrules):
        table[j] = _rule(rules[j], prefixes)
    table[nrules] = _rule(None, prefixes)  # rows without a region
    if kind == K_PHONE:
        for i in range(start, stop):
            if not -1 <= region[i] < nrules:
                raise ValueError("region index outside the rules")
    cdef const uint8_t* base = &data[0] if data.shape[0] else NULL
    cdef const uint8_t* v
    cdef uint8_t buf[256]
    cdef uint8_t form[256]
    cdef uint8_t out[32]
    cdef uint64_t his[4]
    cdef uint64_t los[4]
    with nogil:
        for i in range(start, stop):
            a = offsets[i]
            e = offsets[i + 1]
            while a < e and _is_space(base[a]):
                a += 1
            while e > a and _is_space(base[e - 1]):
                e -= 1
            if a == e:
                outcome[i] = UE
                continue
            v = base + a
            if kind == K_EMAIL:
                got = _email_forms(v, e - a, buf, form, his, los)
                if got < 0:
                    outcome[i] = UF
                    continue
            elif kind == K_PHONE:
                j = region[i] if region[i] >= 0 else nrules
                if _phone(v, e - a, &table[j], buf, out, &olen) != VALID:
                    outcome[i] = UF
                    continue
                _sha_key(out, olen, &his[0], &los[0])
                _sha_key(out + 1, olen - 1, &his[1], &los[1])
                got = 2
            else:
                if _device(v, e - a, buf) != VALID:
                    outcome[i] = UI
                    continue
                _sha_key(buf, 36, &his[0], &los[0])
                _md5_key(buf, 36, &his[2], &los[2])
                for j in range(36):
                    if 97 <= buf[j] <= 122:
                        buf[j] -= 32
                _sha_key(buf, 36, &his[1], &los[1])
                _md5_key(buf, 36, &his[3], &los[3])
                got = 4
            for j in range(got):
                key_hi[nkeys] = his[j]
                key_lo[nkeys] = los[j]
                key_row[nkeys] = <uint32_t>i
                nkeys += 1
            outcome[i] = UK
    return nkeys
