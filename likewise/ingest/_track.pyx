# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled fast path of ``event/track/``: the event log's lines straight from the request body.

The Python reference (``events.track_records`` then ``records.encode_batch``) builds one
``EventRecord`` per event and encodes it: about 5 µs per event, most of the server's time on a
batched request. This walks the body once and writes the same lines, copying the values it keeps
(hashed ids, page, properties ...) as they were sent.

It runs only on a body msgspec has already decoded as a ``TrackBody`` (so the JSON is valid and
every field of the schema has its type), and it decides only what it can decide exactly: for
anything else (a check that fails, a decimal string, an escape in a checked name, a raw device
id, a duplicate key ...) it returns ``None`` and the reference takes the request, giving the same
records or the right error. The agreement test checks that both give equal records.

A line it writes has the reference's fields, in the reference's order, with defaults left out.
Copied texts keep the sender's spelling (escapes, number forms such as ``19.90``), which decode to
the same values; ``properties`` is the sent object without whitespace.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.math cimport isfinite
from libc.stdlib cimport free, malloc, realloc, strtod
from libc.string cimport memcmp, memcpy, memmove, memset

# Event source kinds (``TrackBody.event_source``).
KINDS = {"web": 0, "app": 1, "offline": 2, "crm": 3}
cdef enum:
    WEB = 0
    APP = 1
    OFFLINE = 2
    CRM = 3

# Token kinds and string/number flags.
cdef enum:
    T_NONE = 0  # absent
    T_STR = 1
    T_NUM = 2
    T_NULL = 3
    T_TRUE = 4
    T_FALSE = 5
    T_OBJ = 6
    T_ARR = 7

cdef enum:
    F_ESCAPE = 1  # a backslash escape
    F_WIDE = 2  # a byte >= 0x80
    F_EXP = 8  # a number with an exponent
    F_FRAC = 16  # a number with a fraction
    F_NEG = 32  # a negative number

cdef enum:
    FALLBACK = -1
    MAX_DEPTH = 32  # nesting inside properties decided here
    MAX_KEYS = 64  # keys per object inside properties decided here
    MAX_NUMBER = 17  # longer number tokens go to the reference


cdef struct Tok:
    Py_ssize_t start  # first byte (the opening quote of a string)
    Py_ssize_t end  # one past the last byte
    int kind
    int flags
    Py_ssize_t chars  # code points of a string's content (without escapes: its length)


cdef struct Parser:
    const unsigned char* s
    Py_ssize_t n
    Py_ssize_t i


cdef struct Buf:
    char* p
    Py_ssize_t n
    Py_ssize_t cap


cdef struct Limits:
    Py_ssize_t event_name
    Py_ssize_t event_id
    Py_ssize_t ids
    Py_ssize_t contents
    Py_ssize_t properties
    # Scratch for the event being written: its contents items' ids, categories and prices
    # (each preceded by a comma), collected in the one pass that checks them.
    Buf* items


# --- output -----------------------------------------------------------------------------------

cdef int grow(Buf* b, Py_ssize_t more) noexcept:
    cdef Py_ssize_t cap = b.cap
    cdef char* p
    if b.n + more <= cap:
        return 0
    while b.n + more > cap:
        cap = cap * 2 if cap else 4096
    p = <char*>realloc(b.p, cap)
    if p == NULL:
        return FALLBACK
    b.p = p
    b.cap = cap
    return 0


cdef inline int put(Buf* b, const char* s, Py_ssize_t n) noexcept:
    if grow(b, n) < 0:
        return FALLBACK
    memcpy(b.p + b.n, s, n)
    b.n += n
    return 0


cdef inline int put_tok(Buf* b, Parser* p, Tok* t) noexcept:
    return put(b, <const char*>p.s + t.start, t.end - t.start)


cdef inline int put_lower_hex(Buf* b, Parser* p, Tok* t) noexcept:
    """A hex digest's string token, lowercased."""
    cdef Py_ssize_t k
    cdef unsigned char c
    cdef const unsigned char* s = p.s
    cdef char* out
    if grow(b, t.end - t.start) < 0:
        return FALLBACK
    out = b.p + b.n  # a local: a store through ``b.p`` could alias ``b.n``, reloaded each byte
    for k in range(t.start, t.end):
        c = s[k]
        if 65 <= c <= 70:
            c += 32
        out[0] = <char>c
        out += 1
    b.n = out - b.p
    return 0


# --- tokens -----------------------------------------------------------------------------------

cdef inline void ws(Parser* p) noexcept:
    cdef unsigned char c
    while p.i < p.n:
        c = p.s[p.i]
        if c != 32 and c != 10 and c != 13 and c != 9:
            return
        p.i += 1


cdef inline int hexval(unsigned char c) noexcept:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


# Bytes that stand for themselves inside a string: printable ASCII but the quote and backslash.
cdef unsigned char PLAIN[256]
for _c in range(256):
    PLAIN[_c] = 0x20 <= _c < 0x80 and _c != 34 and _c != 92


cdef int string(Parser* p, Tok* t) noexcept:
    """The string token at ``p.i`` (its opening quote).

    Runs of plain bytes are skipped in a tight loop over locals: the parser's fields, read
    through a pointer, would be reloaded for every byte (a store to ``t`` may alias them)."""
    cdef const unsigned char* s = p.s
    cdef Py_ssize_t n = p.n
    cdef Py_ssize_t i = p.i + 1
    cdef Py_ssize_t chars = 0
    cdef Py_ssize_t run
    cdef unsigned char c
    cdef int flags = 0
    cdef int u, k, h
    t.start = p.i
    t.kind = T_STR
    while True:
        run = i
        while i < n and PLAIN[s[i]]:
            i += 1
        chars += i - run
        if i >= n:
            return FALLBACK
        c = s[i]
        if c == 34:  # "
            t.end = i + 1
            t.flags = flags
            t.chars = chars
            p.i = i + 1
            return 0
        if c == 92:  # \
            flags |= F_ESCAPE
            if i + 1 >= n:
                return FALLBACK
            if s[i + 1] == 117:  # \uXXXX
                if i + 5 >= n:
                    return FALLBACK
                u = 0
                for k in range(2, 6):
                    h = hexval(s[i + k])
                    if h < 0:
                        return FALLBACK
                    u = u * 16 + h
                if 0xD800 <= u <= 0xDFFF:
                    return FALLBACK  # surrogates (lone or paired): the reference decides
                i += 6
            else:
                i += 2
            chars += 1
            continue
        if c >= 0x80:
            flags |= F_WIDE
            if c >= 0xC0:  # a lead byte; continuation bytes are not code points of their own
                chars += 1
            i += 1
            continue
        return FALLBACK  # a control character: msgspec refuses these; never here


cdef int number(Parser* p, Tok* t) noexcept:
    cdef Py_ssize_t i = p.i
    cdef Py_ssize_t n = p.n
    cdef const unsigned char* s = p.s
    cdef unsigned char c
    cdef int flags = 0
    t.start = i
    t.kind = T_NUM
    t.chars = 0
    if i < n and s[i] == 45:  # -
        flags |= F_NEG
        i += 1
    while i < n:
        c = s[i]
        if 48 <= c <= 57:
            pass
        elif c == 46:
            flags |= F_FRAC
        elif c == 101 or c == 69 or c == 43 or c == 45:
            flags |= F_EXP
        else:
            break
        i += 1
    t.flags = flags
    t.end = i
    p.i = i
    if i == t.start:
        return FALLBACK
    return 0


cdef inline int literal(Parser* p, Tok* t, const char* word, Py_ssize_t n, int kind) noexcept:
    if p.i + n > p.n or memcmp(p.s + p.i, word, n) != 0:
        return FALLBACK
    t.start = p.i
    t.end = p.i + n
    t.kind = kind
    t.flags = 0
    p.i += n
    return 0


cdef int skip(Parser* p, Tok* t, int depth) noexcept:
    """Any value, without looking inside (its token: containers span their brackets)."""
    cdef unsigned char c
    cdef Tok inner
    if p.i >= p.n or depth > 512:
        return FALLBACK
    c = p.s[p.i]
    if c == 34:
        return string(p, t)
    if c == 123 or c == 91:  # { [
        t.start = p.i
        t.kind = T_OBJ if c == 123 else T_ARR
        t.flags = 0
        p.i += 1
        ws(p)
        if p.i < p.n and p.s[p.i] == c + 2:  # } or ]
            p.i += 1
            t.end = p.i
            return 0
        while True:
            if c == 123:
                if p.i >= p.n or p.s[p.i] != 34 or string(p, &inner) < 0:
                    return FALLBACK
                ws(p)
                if p.i >= p.n or p.s[p.i] != 58:
                    return FALLBACK
                p.i += 1
                ws(p)
            if skip(p, &inner, depth + 1) < 0:
                return FALLBACK
            ws(p)
            if p.i >= p.n:
                return FALLBACK
            if p.s[p.i] == 44:
                p.i += 1
                ws(p)
                continue
            if p.s[p.i] != c + 2:
                return FALLBACK
            p.i += 1
            t.end = p.i
            return 0
    if c == 110:
        return literal(p, t, "null", 4, T_NULL)
    if c == 116:
        return literal(p, t, "true", 4, T_TRUE)
    if c == 102:
        return literal(p, t, "false", 5, T_FALSE)
    return number(p, t)


cdef int next_key(Parser* p, Tok* key, bint first) noexcept:
    """Inside an object: 1 and the next key (``p`` at its value), 0 at the end, or FALLBACK.
    ``first``: ``p`` is just past the opening brace."""
    ws(p)
    if p.i >= p.n:
        return FALLBACK
    if not first:
        if p.s[p.i] == 125:
            p.i += 1
            return 0
        if p.s[p.i] != 44:
            return FALLBACK
        p.i += 1
        ws(p)
    elif p.s[p.i] == 125:
        p.i += 1
        return 0
    if p.i >= p.n or p.s[p.i] != 34 or string(p, key) < 0:
        return FALLBACK
    if key.flags & F_ESCAPE:
        return FALLBACK  # "\u0065vent" is "event" to msgspec
    ws(p)
    if p.i >= p.n or p.s[p.i] != 58:
        return FALLBACK
    p.i += 1
    ws(p)
    return 1


cdef inline bint is_key(Parser* p, Tok* key, const char* name, Py_ssize_t n) noexcept:
    return key.end - key.start - 2 == n and memcmp(p.s + key.start + 1, name, n) == 0


cdef inline bint is_hex(Parser* p, Tok* t, Py_ssize_t n) noexcept:
    """A string token of exactly ``n`` hex digits."""
    cdef Py_ssize_t k
    if t.kind != T_STR or t.end - t.start - 2 != n:
        return False
    for k in range(t.start + 1, t.end - 1):
        if hexval(p.s[k]) < 0:
            return False
    return True


cdef inline bint empty_str(Tok* t) noexcept:
    return t.kind == T_STR and t.end - t.start == 2


cdef inline bint present_str(Tok* t) noexcept:
    """A non-empty string (the reference's ``value or None``)."""
    return t.kind == T_STR and t.end - t.start > 2


# --- one event --------------------------------------------------------------------------------

cdef struct Event:
    Tok event
    Tok event_time
    Tok event_id
    Tok email
    Tok phone
    Tok external_id
    Tok ttclid
    Tok ttp
    Tok idfa
    Tok gaid
    Tok att_status
    Tok url
    Tok referrer
    Tok app_id
    Tok ad_id
    Tok lead_id
    Tok properties
    Tok limited_data_use
    bint has_app
    bint has_lead
    # properties' typed fields
    Tok value
    Tok currency
    Tok content_type
    Tok content_id
    Tok content_ids
    Tok content_category
    Tok contents
    Tok price


cdef int set_once(Tok* slot, Tok* value) noexcept:
    """A known key's value; a second copy of the key (msgspec keeps the last) goes back."""
    if slot.kind != T_NONE:
        return FALLBACK
    slot[0] = value[0]
    return 0


cdef int value_of(Parser* p, Tok* slot) noexcept:
    cdef Tok t
    if skip(p, &t, 0) < 0:
        return FALLBACK
    return set_once(slot, &t)


cdef Tok* slot_of(Parser* p, Tok* key, Event* ev, int which) noexcept:
    """Where the value of ``key`` is kept: in the event itself (``which`` -1) or in its user (0),
    page (1), app (2), ad (3) or lead (4) object; NULL for a key the reference does not keep."""
    if which == -1:
        if is_key(p, key, "event", 5):
            return &ev.event
        if is_key(p, key, "event_time", 10):
            return &ev.event_time
        if is_key(p, key, "event_id", 8):
            return &ev.event_id
        if is_key(p, key, "properties", 10):
            return &ev.properties
        if is_key(p, key, "limited_data_use", 16):
            return &ev.limited_data_use
    elif which == 0:
        if is_key(p, key, "email", 5):
            return &ev.email
        if is_key(p, key, "phone", 5):
            return &ev.phone
        if is_key(p, key, "external_id", 11):
            return &ev.external_id
        if is_key(p, key, "ttclid", 6):
            return &ev.ttclid
        if is_key(p, key, "ttp", 3):
            return &ev.ttp
        if is_key(p, key, "idfa", 4):
            return &ev.idfa
        if is_key(p, key, "gaid", 4):
            return &ev.gaid
        if is_key(p, key, "att_status", 10):
            return &ev.att_status
    elif which == 1:
        if is_key(p, key, "url", 3):
            return &ev.url
        if is_key(p, key, "referrer", 8):
            return &ev.referrer
    elif which == 2 and is_key(p, key, "app_id", 6):
        return &ev.app_id
    elif which == 3 and is_key(p, key, "ad_id", 5):
        return &ev.ad_id
    elif which == 4 and is_key(p, key, "lead_id", 7):
        return &ev.lead_id
    return NULL


cdef inline int nested(Parser* p, Tok* key) noexcept:
    """Which nested object ``key`` names: user (0), page (1), app (2), ad (3), lead (4), or -1."""
    if is_key(p, key, "user", 4):
        return 0
    if is_key(p, key, "page", 4):
        return 1
    if is_key(p, key, "app", 3):
        return 2
    if is_key(p, key, "ad", 2):
        return 3
    if is_key(p, key, "lead", 4):
        return 4
    return -1


cdef int read_object(Parser* p, Event* ev, int which) noexcept:
    """The event's object at ``p`` (``which`` -1), or one of its nested objects (or null)."""
    cdef Tok key, t
    cdef Tok* slot
    cdef int r, inner, seen = 0  # the nested objects met (a second copy goes back)
    cdef bint first = True
    if which >= 0 and p.i < p.n and p.s[p.i] == 110:
        return literal(p, &t, "null", 4, T_NULL)
    if p.i >= p.n or p.s[p.i] != 123:
        return FALLBACK
    p.i += 1
    if which == 2:
        ev.has_app = True
    elif which == 4:
        ev.has_lead = True
    while True:
        r = next_key(p, &key, first)
        first = False
        if r <= 0:
            return r
        slot = slot_of(p, &key, ev, which)
        if slot != NULL:
            r = value_of(p, slot)
        elif which == -1 and (inner := nested(p, &key)) >= 0:
            r = FALLBACK if seen & (1 << inner) else read_object(p, ev, inner)
            seen |= 1 << inner
        else:
            r = skip(p, &t, 0)
        if r < 0:
            return FALLBACK


# --- properties -------------------------------------------------------------------------------

cdef int read_properties(Parser* p, Event* ev, Limits* lim) noexcept:
    """The typed fields of the properties object at ``ev.properties`` (the reference decodes
    them as ``schema.Properties``): their tokens, or FALLBACK for anything but the plain forms."""
    cdef Parser q
    cdef Tok key
    cdef int r
    cdef bint first = True
    q.s = p.s
    q.n = ev.properties.end
    q.i = ev.properties.start + 1
    while True:
        r = next_key(&q, &key, first)
        first = False
        if r <= 0:
            return r
        if is_key(&q, &key, "value", 5):
            r = value_of(&q, &ev.value)
            if r == 0 and ev.value.kind != T_NULL and not plain_number(&ev.value):
                return FALLBACK
        elif is_key(&q, &key, "currency", 8):
            r = value_of(&q, &ev.currency)
            if r == 0 and ev.currency.kind != T_NULL and not currency(&q, &ev.currency):
                return FALLBACK
        elif is_key(&q, &key, "content_type", 12):
            r = value_of(&q, &ev.content_type)
            if r == 0 and ev.content_type.kind != T_NULL and ev.content_type.kind != T_STR:
                return FALLBACK
        elif is_key(&q, &key, "content_id", 10):
            r = value_of(&q, &ev.content_id)
            if r == 0 and ev.content_id.kind != T_NULL and not content_id(&ev.content_id):
                return FALLBACK
        elif is_key(&q, &key, "content_ids", 11):
            r = value_of(&q, &ev.content_ids)
            if r == 0 and ev.content_ids.kind != T_NULL:
                r = content_ids(&q, &ev.content_ids, lim)
        elif is_key(&q, &key, "content_category", 16):
            r = value_of(&q, &ev.content_category)
            if r == 0 and ev.content_category.kind != T_NULL and ev.content_category.kind != T_STR:
                return FALLBACK
        elif is_key(&q, &key, "contents", 8):
            r = value_of(&q, &ev.contents)
            if r == 0 and ev.contents.kind != T_NULL:
                r = contents(&q, &ev.contents, lim)
        elif is_key(&q, &key, "price", 5):
            r = value_of(&q, &ev.price)
            if r == 0 and ev.price.kind != T_NULL and not plain_number(&ev.price):
                return FALLBACK
        else:
            r = skip(&q, &key, 0)
        if r < 0:
            return FALLBACK


cdef inline bint plain_number(Tok* t) noexcept:
    """A number the reference reads as the float the token spells (no exponent, not long)."""
    return t.kind == T_NUM and not (t.flags & F_EXP) and t.end - t.start <= MAX_NUMBER


cdef inline bint content_id(Tok* t) noexcept:
    """``str | int``: a string, or a whole number written as ``str(int)`` would write it."""
    if t.kind == T_STR:
        return True
    return (
        t.kind == T_NUM
        and not (t.flags & (F_EXP | F_FRAC | F_NEG))
        and t.end - t.start <= MAX_NUMBER
    )


cdef bint currency(Parser* p, Tok* t) noexcept:
    """Three ASCII letters (the reference uppercases them)."""
    cdef Py_ssize_t k
    cdef unsigned char c
    if t.kind != T_STR or t.end - t.start != 5:
        return False
    for k in range(t.start + 1, t.end - 1):
        c = p.s[k] | 32
        if c < 97 or c > 122:
            return False
    return True


cdef int content_ids(Parser* p, Tok* arr, Limits* lim) noexcept:
    cdef Parser q
    cdef Tok t
    cdef Py_ssize_t count = 0
    if arr.kind != T_ARR:
        return FALLBACK
    q.s = p.s
    q.n = arr.end - 1
    q.i = arr.start + 1
    ws(&q)
    while q.i < q.n:
        if skip(&q, &t, 0) < 0 or not content_id(&t):
            return FALLBACK
        count += 1
        ws(&q)
        if q.i < q.n:
            if q.s[q.i] != 44:
                return FALLBACK
            q.i += 1
            ws(&q)
    return FALLBACK if count > lim.contents else 0


cdef int contents(Parser* p, Tok* arr, Limits* lim) noexcept:
    """Check the ``contents`` items, and write their content ids, non-empty categories and
    prices to ``lim.items`` (0, 1, 2), each preceded by a comma."""
    cdef Parser q
    cdef Tok item, key, t, cid, cat, price, qty
    cdef Py_ssize_t count = 0
    cdef int r
    cdef bint first
    lim.items[0].n = lim.items[1].n = lim.items[2].n = 0
    if arr.kind != T_ARR:
        return FALLBACK
    q.s = p.s
    q.n = arr.end - 1
    q.i = arr.start + 1
    ws(&q)
    while q.i < q.n:
        if q.s[q.i] != 123:
            return FALLBACK
        q.i += 1
        cid.kind = cat.kind = price.kind = qty.kind = T_NONE
        first = True
        while True:
            r = next_key(&q, &key, first)
            first = False
            if r < 0:
                return FALLBACK
            if r == 0:
                break
            if is_key(&q, &key, "content_id", 10):
                r = value_of(&q, &cid)
                if r == 0 and cid.kind != T_NULL and not content_id(&cid):
                    return FALLBACK
            elif is_key(&q, &key, "content_category", 16):
                r = value_of(&q, &cat)
                if r == 0 and cat.kind != T_NULL and cat.kind != T_STR:
                    return FALLBACK
            elif is_key(&q, &key, "content_name", 12) or is_key(&q, &key, "brand", 5):
                r = skip(&q, &t, 0)
                if r == 0 and t.kind != T_NULL and t.kind != T_STR:
                    return FALLBACK
            elif is_key(&q, &key, "price", 5):
                r = value_of(&q, &price)
                if r == 0 and price.kind != T_NULL and not plain_number(&price):
                    return FALLBACK
            elif is_key(&q, &key, "quantity", 8):
                r = value_of(&q, &qty)
                if r == 0 and qty.kind != T_NULL and not plain_number(&qty):
                    return FALLBACK
            else:
                r = skip(&q, &t, 0)
            if r < 0:
                return FALLBACK
        count += 1
        if cid.kind != T_NONE and cid.kind != T_NULL:
            if put(&lim.items[0], ",", 1) < 0 or put_id(&lim.items[0], &q, &cid) < 0:
                return FALLBACK
        if present_str(&cat):
            if put(&lim.items[1], ",", 1) < 0 or put_tok(&lim.items[1], &q, &cat) < 0:
                return FALLBACK
        if price.kind == T_NUM:
            if put(&lim.items[2], ",", 1) < 0 or put_tok(&lim.items[2], &q, &price) < 0:
                return FALLBACK
        ws(&q)
        if q.i < q.n:
            if q.s[q.i] != 44:
                return FALLBACK
            q.i += 1
            ws(&q)
    return FALLBACK if count > lim.contents else 0


cdef inline int put_id(Buf* b, Parser* p, Tok* t) noexcept:
    """A content id as the reference keeps it: ``str(x)``."""
    if t.kind == T_STR:
        return put_tok(b, p, t)
    if put(b, '"', 1) < 0 or put_tok(b, p, t) < 0:
        return FALLBACK
    return put(b, '"', 1)


cdef int compact(Parser* p, Buf* b, int depth, Py_ssize_t* size) noexcept:
    """The value at ``p`` without whitespace, escaped to sit inside a JSON string; ``size``
    counts its bytes before that escaping. FALLBACK for what the reference would write
    differently enough to matter: a repeated key (msgspec keeps one), an exponent or a long
    number (re-encoding can lengthen it, and the size limit applies to the re-encoded text)."""
    cdef Tok t, key
    cdef Py_ssize_t keys[MAX_KEYS]
    cdef Py_ssize_t lens[MAX_KEYS]
    cdef Py_ssize_t nkeys = 0, k, j, n
    cdef unsigned char c, close
    cdef bint first = True
    if depth > MAX_DEPTH or p.i >= p.n:
        return FALLBACK
    c = p.s[p.i]
    if c == 123 or c == 91:
        close = c + 2
        if put(b, <const char*>&c, 1) < 0:
            return FALLBACK
        size[0] += 1
        p.i += 1
        while True:
            ws(p)
            if p.i >= p.n:
                return FALLBACK
            if first and p.s[p.i] == close:
                break
            if not first:
                if p.s[p.i] == close:
                    break
                if p.s[p.i] != 44 or put(b, ",", 1) < 0:
                    return FALLBACK
                size[0] += 1
                p.i += 1
                ws(p)
            first = False
            if close == 125:
                if p.i >= p.n or p.s[p.i] != 34 or string(p, &key) < 0:
                    return FALLBACK
                if key.flags & F_ESCAPE or nkeys == MAX_KEYS:
                    return FALLBACK
                n = key.end - key.start
                for j in range(nkeys):
                    if lens[j] == n and memcmp(p.s + keys[j], p.s + key.start, n) == 0:
                        return FALLBACK
                keys[nkeys] = key.start
                lens[nkeys] = n
                nkeys += 1
                if put_escaped(b, p, &key) < 0:
                    return FALLBACK
                size[0] += n + 1
                ws(p)
                if p.i >= p.n or p.s[p.i] != 58 or put(b, ":", 1) < 0:
                    return FALLBACK
                p.i += 1
                ws(p)
            if compact(p, b, depth + 1, size) < 0:
                return FALLBACK
        p.i += 1
        size[0] += 1
        return put(b, <const char*>&close, 1)
    if skip(p, &t, 0) < 0:
        return FALLBACK
    if t.kind == T_STR:
        size[0] += t.end - t.start
        return put_escaped(b, p, &t)
    if t.kind == T_NUM and (t.flags & F_EXP or t.end - t.start > MAX_NUMBER):
        return FALLBACK
    size[0] += t.end - t.start
    return put_tok(b, p, &t)


cdef int put_escaped(Buf* b, Parser* p, Tok* t) noexcept:
    """A token's bytes inside a JSON string: quotes and backslashes escaped."""
    cdef Py_ssize_t k
    cdef unsigned char c
    cdef const unsigned char* s = p.s
    cdef char* out
    if grow(b, 2 * (t.end - t.start)) < 0:
        return FALLBACK
    out = b.p + b.n  # a local, as in put_lower_hex
    for k in range(t.start, t.end):
        c = s[k]
        if c == 34 or c == 92:
            out[0] = 92
            out += 1
        out[0] = <char>c
        out += 1
    b.n = out - b.p
    return 0


# --- writing one event ------------------------------------------------------------------------

cdef int hashed(Buf* b, Parser* p, Tok* t, const char* name, Py_ssize_t name_n, Limits* lim) noexcept:
    """``"name":[digests]`` of a hashed key (string or list of SHA-256 hex), lowercased; nothing
    when it holds none. FALLBACK for anything but digests (the reference refuses it)."""
    cdef Parser q
    cdef Tok item
    cdef Py_ssize_t count = 0, written = 0
    if t.kind == T_NONE or t.kind == T_NULL or empty_str(t):
        return 0
    if t.kind == T_STR:
        if not is_hex(p, t, 64):
            return FALLBACK
        if put(b, name, name_n) < 0 or put(b, "[", 1) < 0 or put_lower_hex(b, p, t) < 0:
            return FALLBACK
        return put(b, "]", 1)
    if t.kind != T_ARR:
        return FALLBACK
    q.s = p.s
    q.n = t.end - 1
    q.i = t.start + 1
    ws(&q)
    while q.i < q.n:
        if skip(&q, &item, 0) < 0:
            return FALLBACK
        count += 1
        if not empty_str(&item):
            if not is_hex(p, &item, 64):
                return FALLBACK
            if written == 0:
                if put(b, name, name_n) < 0 or put(b, "[", 1) < 0:
                    return FALLBACK
            elif put(b, ",", 1) < 0:
                return FALLBACK
            if put_lower_hex(b, p, &item) < 0:
                return FALLBACK
            written += 1
        ws(&q)
        if q.i < q.n:
            if q.s[q.i] != 44:
                return FALLBACK
            q.i += 1
            ws(&q)
    if count > lim.ids:
        return FALLBACK
    if written:
        return put(b, "]", 1)
    return 0


cdef int device(Buf* b, Parser* p, Tok* t, const char* name, Py_ssize_t name_n) noexcept:
    """An MD5 or SHA-256 hex digest of a device id, lowercased; a raw id goes to the reference
    (it normalises and hashes it)."""
    if t.kind == T_NONE or t.kind == T_NULL or empty_str(t):
        return 0
    if not (is_hex(p, t, 64) or is_hex(p, t, 32)):
        return FALLBACK
    if put(b, name, name_n) < 0:
        return FALLBACK
    return put_lower_hex(b, p, t)


cdef inline int text(Buf* b, Parser* p, Tok* t, const char* name, Py_ssize_t name_n) noexcept:
    """A text field kept as ``value or None`` (msgspec has checked its type and length)."""
    if t.kind == T_NONE or t.kind == T_NULL or empty_str(t):
        return 0
    if t.kind != T_STR:
        return FALLBACK
    if put(b, name, name_n) < 0:
        return FALLBACK
    return put_tok(b, p, t)


cdef int event_time(Buf* b, Parser* p, Tok* t, double oldest, double latest) noexcept:
    """``"event_time":`` the reference's float: seconds, or milliseconds divided by 1,000."""
    cdef char digits[32]
    cdef char* end
    cdef double v
    cdef long long whole
    cdef int n = 0, k
    cdef char tmp
    if t.kind != T_NUM or t.end - t.start > 24:
        return FALLBACK
    v = strtod(<const char*>p.s + t.start, &end)
    if end != <const char*>p.s + t.end or not isfinite(v):
        return FALLBACK
    if v > 1e11:
        v /= 1000.0
    if v < oldest or v > latest:
        return FALLBACK
    whole = <long long>v
    if <double>whole != v or whole < 0:
        return FALLBACK  # a fraction of a second: rare, and written by the reference
    if put(b, ',"event_time":', 14) < 0:
        return FALLBACK
    while True:
        digits[n] = <char>(48 + whole % 10)
        n += 1
        whole //= 10
        if whole == 0:
            break
    for k in range(n // 2):
        tmp = digits[k]
        digits[k] = digits[n - 1 - k]
        digits[n - 1 - k] = tmp
    digits[n] = 46  # .0: the reference writes a float
    digits[n + 1] = 48
    return put(b, digits, n + 2)


cdef inline bint ascii_word(Parser* p, Tok* t, const char* word, Py_ssize_t n) noexcept:
    return t.kind == T_STR and t.end - t.start - 2 == n and memcmp(p.s + t.start + 1, word, n) == 0


cdef int write_event(
    Buf* b,
    Parser* p,
    Event* ev,
    int kind,
    const char* head,
    Py_ssize_t head_n,
    const char* received,
    Py_ssize_t received_n,
    bint test,
    double oldest,
    double latest,
    Limits* lim,
    object standard,
) except? -2:
    cdef Tok* name = &ev.event
    cdef unsigned char c0, c1
    cdef bint limited
    cdef Py_ssize_t size = 0
    cdef Parser q
    # The event name: required, stripped, at most lim.event_name characters.
    if name.kind != T_STR or name.flags & F_ESCAPE or name.end - name.start < 3:
        return FALLBACK
    c0 = p.s[name.start + 1]
    c1 = p.s[name.end - 2]
    if c0 <= 32 or c0 >= 0x80 or c1 <= 32 or c1 >= 0x80 or name.chars > lim.event_name:
        return FALLBACK
    if kind == OFFLINE:
        if name.flags & F_WIDE:
            return FALLBACK
        if (<bytes>p.s[name.start + 1 : name.end - 1]).decode("ascii") not in standard:
            return FALLBACK
    if kind == WEB and not present_str(&ev.url):
        return FALLBACK
    if kind == APP and not (ev.has_app and present_str(&ev.app_id)):
        return FALLBACK
    if kind == CRM and not (ev.has_lead and present_str(&ev.lead_id)):
        return FALLBACK
    limited = ev.limited_data_use.kind == T_TRUE
    if ev.att_status.kind == T_STR:
        if ev.att_status.flags & F_ESCAPE:
            return FALLBACK
        limited = limited or ascii_word(p, &ev.att_status, "DENIED", 6)
    if put(b, head, head_n) < 0 or put_tok(b, p, name) < 0:
        return FALLBACK
    if event_time(b, p, &ev.event_time, oldest, latest) < 0:
        return FALLBACK
    if put(b, received, received_n) < 0:
        return FALLBACK
    if present_str(&ev.event_id):
        if ev.event_id.flags & F_ESCAPE or ev.event_id.chars > lim.event_id:
            return FALLBACK
        if put(b, ',"event_id":', 12) < 0 or put_tok(b, p, &ev.event_id) < 0:
            return FALLBACK
    elif ev.event_id.kind != T_NONE and ev.event_id.kind != T_NULL and not empty_str(&ev.event_id):
        return FALLBACK
    if test and put(b, ',"test":true', 12) < 0:
        return FALLBACK
    if limited and put(b, ',"limited":true', 15) < 0:
        return FALLBACK
    if hashed(b, p, &ev.email, ',"email":', 9, lim) < 0:
        return FALLBACK
    if hashed(b, p, &ev.phone, ',"phone":', 9, lim) < 0:
        return FALLBACK
    if hashed(b, p, &ev.external_id, ',"external_id":', 15, lim) < 0:
        return FALLBACK
    if text(b, p, &ev.ttclid, ',"ttclid":', 10) < 0 or text(b, p, &ev.ttp, ',"ttp":', 7) < 0:
        return FALLBACK
    if device(b, p, &ev.idfa, ',"idfa":', 8) < 0 or device(b, p, &ev.gaid, ',"gaid":', 8) < 0:
        return FALLBACK
    if text(b, p, &ev.url, ',"url":', 7) < 0 or text(b, p, &ev.referrer, ',"referrer":', 12) < 0:
        return FALLBACK
    if ev.properties.kind == T_OBJ:
        if write_properties(b, p, ev, lim) < 0:
            return FALLBACK
    elif ev.properties.kind != T_NONE and ev.properties.kind != T_NULL:
        return FALLBACK
    if text(b, p, &ev.app_id, ',"app_id":', 10) < 0:
        return FALLBACK
    if text(b, p, &ev.ad_id, ',"ad_id":', 9) < 0:
        return FALLBACK
    if text(b, p, &ev.lead_id, ',"lead_id":', 11) < 0:
        return FALLBACK
    if ev.properties.kind == T_OBJ:
        q.s = p.s
        q.n = ev.properties.end
        q.i = ev.properties.start
        if put(b, ',"properties":"', 15) < 0 or compact(&q, b, 0, &size) < 0:
            return FALLBACK
        if size > lim.properties or put(b, '"', 1) < 0:
            return FALLBACK
    return put(b, "}\n", 2)


cdef int write_properties(Buf* b, Parser* p, Event* ev, Limits* lim) noexcept:
    """value, currency, content_type, content_ids, content_categories, prices."""
    cdef Parser q
    cdef Tok t
    cdef Py_ssize_t mark, k
    cdef bint any_item
    if read_properties(p, ev, lim) < 0:
        return FALLBACK
    if ev.value.kind == T_NUM:
        if put(b, ',"value":', 9) < 0 or put_tok(b, p, &ev.value) < 0:
            return FALLBACK
    if ev.currency.kind == T_STR:
        if put(b, ',"currency":"', 13) < 0 or grow(b, 4) < 0:
            return FALLBACK
        for k in range(ev.currency.start + 1, ev.currency.end - 1):
            b.p[b.n] = <char>(p.s[k] & ~32)  # ASCII letters (checked): uppercase
            b.n += 1
        if put(b, '"', 1) < 0:
            return FALLBACK
    if ev.content_type.kind == T_STR:
        if put(b, ',"content_type":', 16) < 0 or put_tok(b, p, &ev.content_type) < 0:
            return FALLBACK
    # content_ids: the list, then content_id, then each item's (the reference's order).
    mark = b.n
    if put(b, ',"content_ids":[', 16) < 0:
        return FALLBACK
    any_item = False
    if ev.content_ids.kind == T_ARR:
        q.s = p.s
        q.n = ev.content_ids.end - 1
        q.i = ev.content_ids.start + 1
        ws(&q)
        while q.i < q.n:
            if skip(&q, &t, 0) < 0:
                return FALLBACK
            if (any_item and put(b, ",", 1) < 0) or put_id(b, &q, &t) < 0:
                return FALLBACK
            any_item = True
            ws(&q)
            if q.i < q.n:
                q.i += 1
                ws(&q)
    if ev.content_id.kind == T_STR or ev.content_id.kind == T_NUM:
        if (any_item and put(b, ",", 1) < 0) or put_id(b, p, &ev.content_id) < 0:
            return FALLBACK
        any_item = True
    if closing_list(b, p, ev, lim, mark, any_item, 0) < 0:
        return FALLBACK
    # content_categories: content_category (if not empty), then each item's; prices: price,
    # then each item's.
    if list_field(
        b, p, ev, lim, ',"content_categories":[', 23, present_str(&ev.content_category),
        &ev.content_category, 1,
    ) < 0:
        return FALLBACK
    return list_field(b, p, ev, lim, ',"prices":[', 11, ev.price.kind == T_NUM, &ev.price, 2)


cdef int list_field(
    Buf* b, Parser* p, Event* ev, Limits* lim, const char* opening, Py_ssize_t opening_n,
    bint has_first, Tok* first, int what,
) noexcept:
    """A list field: ``opening`` (``,"name":[``), ``first`` if ``has_first``, then the
    contents items' part (see :func:`closing_list`)."""
    cdef Py_ssize_t mark = b.n
    if put(b, opening, opening_n) < 0:
        return FALLBACK
    if has_first and put_tok(b, p, first) < 0:
        return FALLBACK
    return closing_list(b, p, ev, lim, mark, has_first, what)


cdef int closing_list(
    Buf* b, Parser* p, Event* ev, Limits* lim, Py_ssize_t mark, bint any_item, int what
) noexcept:
    """Append the contents items' part of a list opened at ``mark`` and close it; a list left
    empty is taken back (the reference leaves empty lists out)."""
    cdef Py_ssize_t before = b.n
    if ev.contents.kind == T_ARR and lim.items[what].n:  # parts collected by contents()
        if put(b, lim.items[what].p, lim.items[what].n) < 0:
            return FALLBACK
    if b.n > before and not any_item:
        # The items' part starts with a comma; the list had nothing before it.
        memmove(b.p + before, b.p + before + 1, b.n - before - 1)
        b.n -= 1
        any_item = True
    elif b.n > before:
        any_item = True
    if not any_item:
        b.n = mark
        return 0
    return put(b, "]", 1)


# --- the entry point --------------------------------------------------------------------------

def track_lines(
    bytes body,
    int kind,
    bytes head,
    bytes received,
    bint test,
    double oldest,
    double latest,
    object standard,
    Py_ssize_t max_events,
    Py_ssize_t max_event_name,
    Py_ssize_t max_event_id,
    Py_ssize_t max_ids,
    Py_ssize_t max_contents,
    Py_ssize_t max_properties,
):
    """The event log's lines for the ``data`` of an ``event/track/`` body that msgspec decoded
    as a ``TrackBody``, or None when the reference must decide. ``head`` is each line's start up
    to the event name (``{"source_id":..,"channel":..,"event":``), ``received`` its
    ``,"received_at":..`` part; event times must lie in [``oldest``, ``latest``]; ``standard``
    holds the event names offline sources take; a request holds at most ``max_events``."""
    cdef Parser p
    cdef Buf b
    cdef Tok key
    cdef Event ev
    cdef Limits lim
    cdef Buf items[3]
    cdef int r
    cdef bint first = True, seen_data = False
    cdef Py_ssize_t count = 0, k
    cdef object out = None
    lim.event_name = max_event_name
    lim.event_id = max_event_id
    lim.ids = max_ids
    lim.contents = max_contents
    lim.properties = max_properties
    memset(items, 0, sizeof(items))
    lim.items = items
    p.s = <const unsigned char*>PyBytes_AS_STRING(body)
    p.n = PyBytes_GET_SIZE(body)
    p.i = 0
    b.p = NULL
    b.n = b.cap = 0
    try:
        ws(&p)
        if p.i >= p.n or p.s[p.i] != 123:
            return None
        p.i += 1
        while True:
            r = next_key(&p, &key, first)
            first = False
            if r < 0:
                return None
            if r == 0:
                break
            if not is_key(&p, &key, "data", 4):
                if skip(&p, &key, 0) < 0:
                    return None
                continue
            if seen_data or p.i >= p.n or p.s[p.i] != 91:
                return None
            seen_data = True
            p.i += 1
            ws(&p)
            if p.i < p.n and p.s[p.i] == 93:
                return None  # no events: refused by the reference
            while True:
                count += 1
                if count > max_events:
                    return None  # refused whole by the reference
                memset(&ev, 0, sizeof(Event))  # every token absent (T_NONE)
                if read_object(&p, &ev, -1) < 0:
                    return None
                r = write_event(
                    &b, &p, &ev, kind, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head),
                    PyBytes_AS_STRING(received), PyBytes_GET_SIZE(received), test, oldest,
                    latest, &lim, standard,
                )
                if r < 0:
                    return None
                ws(&p)
                if p.i >= p.n:
                    return None
                if p.s[p.i] == 44:
                    p.i += 1
                    ws(&p)
                    continue
                if p.s[p.i] != 93:
                    return None
                p.i += 1
                break
        if not seen_data:
            return None
        out = PyBytes_FromStringAndSize(b.p, b.n) if b.n else b""
        return out
    finally:
        free(b.p)
        for k in range(3):
            free(items[k].p)
