"""Identifier normalisation, hashing and the keys the identity graph joins on.

Every identifier type has one Python normaliser (the reference, used for single values) and one
DuckDB SQL expression (the vectorised fast path, used for files and imports). Rows the fast path
cannot decide fall back to the Python normaliser, so both paths give the same answer.
"""

from likewise.identity.device import normalize_device_id
from likewise.identity.email import normalize_email_basic, normalize_email_file
from likewise.identity.hashing import hash_key, is_md5_hex, is_sha256_hex, md5_hex, sha256_hex
from likewise.identity.kinds import IdKind
from likewise.identity.phone import normalize_phone

__all__ = [
    "IdKind",
    "hash_key",
    "is_md5_hex",
    "is_sha256_hex",
    "md5_hex",
    "normalize_device_id",
    "normalize_email_basic",
    "normalize_email_file",
    "normalize_phone",
    "sha256_hex",
]
