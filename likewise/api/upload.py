"""Streaming receipt of a multipart customer-file upload.

The file part goes straight to the data directory's ``tmp/`` while its MD5 is computed, so a
1 GB upload needs neither 1 GB of memory nor a second copy on disk. Other form fields are small
and kept in memory.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from likewise.engine.uploads import ReceivedFile
from likewise.errors import FileTooLarge, InvalidParameter

MAX_FIELD_BYTES = 64 * 1024


class _Receiver:
    def __init__(self, tmp_dir: Path, max_bytes: int) -> None:
        self.tmp_dir = tmp_dir
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.file: ReceivedFile | None = None
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._name = ""
        self._filename: str | None = None
        self._buffer = bytearray()
        self._fh: IO[bytes] | None = None
        self._path: Path | None = None
        self._md5 = hashlib.md5()
        self._size = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self._headers = {}
        self._name, self._filename = "", None
        self._buffer = bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if self._name == "file":  # streamed to disk even when the client sent no filename
            if self.file is not None or self._fh is not None:
                raise InvalidParameter("send exactly one file", field="file")
            self._filename = filename.decode("utf-8", "replace") if filename is not None else ""
            self._path = self.tmp_dir / f"upload-{secrets.token_hex(8)}"
            self._fh = open(self._path, "wb")  # noqa: SIM115 - closed in part_end/cleanup

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._fh is not None:
            self._size += len(chunk)
            if self._size > self.max_bytes:
                raise FileTooLarge(
                    f"the file is larger than the limit of {self.max_bytes} bytes", field="file"
                )
            self._md5.update(chunk)
            self._fh.write(chunk)
        else:
            self._buffer += chunk
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise InvalidParameter(f"form field {self._name!r} is too long", field=self._name)

    def part_end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            assert self._path is not None
            self.file = ReceivedFile(
                self._path, self._filename or "", self._size, self._md5.hexdigest()
            )
        elif self._name:
            self.fields.setdefault(self._name, self._buffer.decode("utf-8", "replace"))

    @property
    def incomplete(self) -> bool:
        """The body ended before the file part did: what arrived must not be used or kept."""
        return self._fh is not None

    def cleanup(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


async def receive_upload(
    request: Request, tmp_dir: Path, max_bytes: int
) -> tuple[dict[str, str], ReceivedFile | None]:
    """Form fields and the received file (None when no file part was sent)."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidParameter(
            "the request must be multipart/form-data with a file part", field="file"
        )
    receiver = _Receiver(tmp_dir, max_bytes)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if receiver.incomplete:
            raise InvalidParameter(
                "malformed multipart body: it ends inside the file part (no closing boundary)",
                field="file",
            )
    except MultipartParseError as exc:
        receiver.cleanup()
        raise InvalidParameter(f"malformed multipart body: {exc}", field="file") from None
    except BaseException:
        receiver.cleanup()
        raise
    return receiver.fields, receiver.file
