"""Reading customer files: lines, their numbers and encodings, against plain Python references.

The compiled reader (``_fast.find_lines``, ``file_fields._Lines``) splits files read in chunks;
whatever the chunk and batch sizes, it must see the lines Python's own splitting sees.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from likewise.identity import _fast, file_fields
from likewise.identity.customer_file import parse_customer_file
from likewise.identity.hashing import hash_key, sha256_hex

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


def python_lines(data: bytes) -> list[bytes]:
    """The reference: lines end at \\n, \\r\\n or a lone \\r; a final line may lack its end."""
    if data.startswith(file_fields.BOM):
        data = data[3:]
    lines = re.split(rb"\r\n|\n|\r", data)
    if lines and lines[-1] == b"":
        lines.pop()  # the file's last line end does not start another line
    return lines


def compiled_lines(path: Path) -> list[bytes]:
    out = []
    for data, starts, ends, first in file_fields._Lines(path):
        assert first == len(out) + 1  # line numbers run on across batches
        out += [data[a:e].tobytes() for a, e in zip(starts, ends, strict=True)]
    return out


line_bytes = st.lists(
    st.sampled_from([b"a", b"bc", b",", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\xc3\xa9", b"\xff"]),
    max_size=40,
).map(b"".join)


@SETTINGS
@given(line_bytes, st.booleans(), st.integers(1, 9), st.integers(1, 4))
def test_lines_match_python_whatever_the_chunks(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, bom: bool, chunk: int, batch: int
) -> None:
    path = tmp_path_factory.mktemp("lines") / "f.csv"
    path.write_bytes((file_fields.BOM if bom else b"") + body)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(file_fields, "CHUNK_BYTES", chunk)
        mp.setattr(file_fields, "BATCH_LINES", batch)
        assert compiled_lines(path) == python_lines(path.read_bytes())


def test_find_lines_leaves_an_unfinished_line_for_the_next_chunk() -> None:
    data = np.frombuffer(b"a\r\nb\rc\r", np.uint8)
    starts, ends = np.empty(8, np.int64), np.empty(8, np.int64)
    count, pos = _fast.find_lines(data, 0, len(data), False, starts, ends)
    # The last \r may be the first half of a \r\n split across chunks.
    assert (count, pos) == (2, 5)
    assert list(zip(starts[:2], ends[:2], strict=True)) == [(0, 1), (3, 4)]
    count, pos = _fast.find_lines(data, 5, len(data), True, starts, ends)
    assert (count, pos, starts[0], ends[0]) == (1, 7, 5, 6)


def test_find_lines_stops_when_its_arrays_are_full() -> None:
    data = np.frombuffer(b"a\nb\nc\n", np.uint8)
    starts, ends = np.empty(2, np.int64), np.empty(2, np.int64)
    assert _fast.find_lines(data, 0, len(data), True, starts, ends) == (2, 4)
    assert _fast.find_lines(data, 4, len(data), True, starts, ends) == (1, 6)


def test_find_lines_refuses_a_span_outside_the_data() -> None:
    data = np.frombuffer(b"abc", np.uint8)
    starts, ends = np.empty(2, np.int64), np.empty(2, np.int64)
    for pos, stop in ((-1, 3), (2, 1), (0, 4)):
        with pytest.raises(ValueError, match="outside"):
            _fast.find_lines(data, pos, stop, True, starts, ends)


@SETTINGS
@given(st.binary(max_size=12))
@example(b"\xed\xa0\x80")  # a surrogate
@example(b"\xed\x9f\xbf")  # the last code point before them
@example(b"\xe0\x80\xaf")  # an overlong form
@example(b"\xf0\x8f\xbf\xbf")  # an overlong four-byte form
@example(b"\xf4\x90\x80\x80")  # past U+10FFFF
@example(b"\xf4\x8f\xbf\xbf")  # U+10FFFF itself
@example(b"\xc3")  # cut short
@example(b"\xe2\x82")  # cut short
@example(b"\xc0\xaf")  # a lead byte never used
def test_utf8_check_agrees_with_python(raw: bytes) -> None:
    """A line is unreadable exactly when Python cannot decode it (overlong forms, surrogates,
    code points past U+10FFFF, truncated sequences)."""
    line = b"x@y.com" + raw.replace(b"\n", b"").replace(b"\r", b"")
    try:
        line.decode("utf-8")
        readable = True
    except UnicodeDecodeError:
        readable = False
    data = np.frombuffer(line, np.uint8)
    status = np.empty(1, np.uint8)
    outputs = [np.empty(1, t) for t in (np.uint32, np.uint64, np.uint64, np.uint8)]
    fallback = [np.empty(1, t) for t in (np.uint32, np.uint8, np.int64, np.int32)]
    _fast.customer_lines(
        data,
        np.array([0], np.int64),
        np.array([len(line)], np.int64),
        0,
        1,
        -1,
        np.array([_fast.KIND_CODES["email"]], np.uint8),
        None,
        [],
        *outputs,
        status,
        *fallback,
    )
    assert (status[0] != 13) == readable, (line, status[0])
    assert (_fast.REASONS.get(int(status[0])) == "invalid_utf8") == (not readable)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"start": -1}, "outside the arrays"),
        ({"stop": 3}, "outside the arrays"),
        ({"kinds": np.array([], np.uint8)}, "columns"),
        ({"ends": np.array([0, 99], np.int64)}, "outside the data"),
        ({"starts": np.array([7, 0], np.int64)}, "outside the data"),
        ({"small": True}, "too small"),
    ],
)
def test_customer_lines_refuses_bad_arguments(shape: dict, message: str) -> None:
    data = np.frombuffer(b"a@b.co\nc@d.co", np.uint8)
    kinds = shape.get("kinds", np.array([0], np.uint8))
    size = 1 if shape.get("small") else 4
    with pytest.raises(ValueError, match=message):
        _fast.customer_lines(
            data,
            shape.get("starts", np.array([0, 7], np.int64)),
            shape.get("ends", np.array([6, 13], np.int64)),
            shape.get("start", 0),
            shape.get("stop", 2),
            -1,
            kinds,
            None,
            [],
            np.empty(size, np.uint32),
            np.empty(size, np.uint64),
            np.empty(size, np.uint64),
            np.empty(size, np.uint8),
            np.empty(2, np.uint8),
            np.empty(size, np.uint32),
            np.empty(size, np.uint8),
            np.empty(size, np.int64),
            np.empty(size, np.int32),
        )


def test_line_numbers_count_every_line(tmp_path: Path) -> None:
    """Blank lines, CR-only line ends and unreadable lines keep the numbering of the file, so
    the audience history points at the right lines."""
    sha = sha256_hex("a@b.co")
    body = (
        b"\xef\xbb\xbfemail\r\n\r\n" + b"bad@\xff\r" + b"  \t \n" + b"nope\n" + sha.encode() + b"\n"
    )
    path = tmp_path / "f.csv"
    path.write_bytes(body)
    out = tmp_path / "k.parquet"
    result = parse_customer_file(path, "EMAIL_SHA256", out)
    assert (result.rows_total, result.rows_valid) == (3, 1)
    assert result.reject_lines == {"invalid_utf8": [3], "invalid_email": [5]}
    keys = pq.read_table(out).to_pylist()
    assert [(k["row_no"], (k["k_hi"] << 64) | k["k_lo"]) for k in keys] == [(6, hash_key(sha))]


def test_a_line_longer_than_the_read_buffer(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"email\n" + b"x" * 100 + b"\na@b.co\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(file_fields, "CHUNK_BYTES", 16)
        result = parse_customer_file(path, "EMAIL_SHA256", tmp_path / "k.parquet")
    assert (result.rows_total, result.rows_valid, result.rejects) == (2, 1, {"invalid_email": 1})
