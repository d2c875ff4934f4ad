"""Customer-file uploads: checks, parse to hashed keys, and delete the raw file."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from likewise.errors import (
    FileEmpty,
    FileInvalid,
    FileSignatureMismatch,
    FileSpecInvalid,
    FileTooLarge,
    FileTypeUnsupported,
    InvalidParameter,
    NotFound,
)
from likewise.identity.customer_file import CALCULATE_TYPES, parse_customer_file
from likewise.settings import Settings
from likewise.store.db import Database
from likewise.store.models import Upload

FILE_PATH_ALPHABET = string.ascii_lowercase + string.digits
SUFFIXES = (".csv", ".txt")


@dataclass(frozen=True)
class ReceivedFile:
    """A raw file streamed to the data directory by the wire layer."""

    path: Path
    filename: str
    size: int
    md5: str


class Uploads:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    @property
    def folder(self) -> Path:
        return self.settings.data_dir / "uploads"

    def accept(
        self,
        *,
        advertiser_id: int,
        received: ReceivedFile,
        file_signature: str,
        calculate_type: str,
        region: str | None,
        now: datetime,
        name: str = "",
    ) -> Upload:
        """Check, parse and store one file; the raw file is deleted whatever happens."""
        try:
            return self._accept(
                advertiser_id, received, file_signature, calculate_type, region, now, name
            )
        finally:
            received.path.unlink(missing_ok=True)

    def _accept(
        self,
        advertiser_id: int,
        received: ReceivedFile,
        file_signature: str,
        calculate_type: str,
        region: str | None,
        now: datetime,
        name: str,
    ) -> Upload:
        if calculate_type not in CALCULATE_TYPES:
            raise InvalidParameter(
                f"calculate_type {calculate_type!r} is not one of " + ", ".join(CALCULATE_TYPES),
                field="calculate_type",
            )
        if not received.filename:
            raise FileTypeUnsupported(
                "the file part has no filename: send one ending in .csv or .txt", field="file"
            )
        if not received.filename.lower().endswith(SUFFIXES):
            raise FileTypeUnsupported(
                f"file {received.filename!r} is not supported: the name must end in .csv or .txt",
                field="file",
            )
        if received.size > self.settings.max_upload_bytes:
            raise FileTooLarge(
                f"file is {received.size} bytes; at most {self.settings.max_upload_bytes} allowed",
                field="file",
            )
        if received.size == 0:
            raise FileEmpty("the file is empty", field="file")
        if file_signature.strip().lower() != received.md5:
            raise FileSignatureMismatch(
                "file_signature does not match the MD5 of the uploaded file", field="file_signature"
            )
        with open(received.path, "rb") as fh:
            if b"\x00" in fh.read(65536):
                raise FileInvalid(
                    "the file is binary, not a text file of identifiers", field="file"
                )
        file_path = "".join(secrets.choice(FILE_PATH_ALPHABET) for _ in range(16))
        keys = self.folder / f"{file_path}.parquet"
        try:
            result = parse_customer_file(
                received.path,
                calculate_type,
                keys,
                region=region,
                threads=self.settings.duckdb_threads,
            )
        except (FileSpecInvalid, FileInvalid):
            keys.unlink(missing_ok=True)
            raise
        if result.rows_valid == 0:
            keys.unlink(missing_ok=True)
            raise FileSpecInvalid(
                f"the file has no valid identifiers for calculate_type {calculate_type}: "
                + result.message(),
                field="file",
            )
        upload = Upload(
            file_path=file_path,
            advertiser_id=advertiser_id,
            calculate_type=calculate_type,
            name=name or received.filename,
            size_bytes=received.size,
            md5=received.md5,
            rows_total=result.rows_total,
            rows_valid=result.rows_valid,
            rows_rejected=result.rows_rejected,
            rejects=result.as_dict(),
            keys_file=keys.name,
            created_at=now,
        )
        with self.db.session() as s:
            s.add(upload)
        return upload

    def get(self, advertiser_id: int, file_path: str) -> Upload:
        """An upload of this advertiser; another advertiser's looks exactly like a missing one."""
        with self.db.session() as s:
            upload = s.get(Upload, file_path)
        if upload is None or upload.advertiser_id != advertiser_id:
            raise NotFound(f"file_path {file_path!r} does not exist", field="file_paths")
        return upload

    def keys_path(self, upload: Upload) -> Path:
        return self.folder / upload.keys_file
