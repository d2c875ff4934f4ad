"""Domain errors: structured fields, no HTTP status and no TikTok codes.

``likewise.api.errors`` is the one table mapping each class to its TikTok code.
"""

from __future__ import annotations


class LikewiseError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidParameter(LikewiseError):
    """A request field is missing, malformed or out of range."""


class NotFound(LikewiseError):
    """The object does not exist, or the caller may not see it."""


class PermissionDenied(LikewiseError):
    """The caller is authenticated but may not act on this object."""


class AuthMissing(LikewiseError):
    """No credentials were sent."""


class AuthInvalid(LikewiseError):
    """Credentials were sent but are not valid."""


class AdvertiserMismatch(LikewiseError):
    """The token is valid but not for the advertiser named in the request."""


class LimitExceeded(LikewiseError):
    """A per-advertiser quota (for example 400 audiences) would be exceeded."""


class TooManyIds(LikewiseError):
    """More ids in one request than the endpoint takes."""


class AudienceTooSmall(LikewiseError):
    """The change would leave an audience below the minimum size."""


class AudienceNotReady(LikewiseError):
    """The audience is still calculating and cannot be changed yet."""


class FileSignatureMismatch(LikewiseError):
    """The uploaded file's MD5 differs from ``file_signature``."""


class FileEmpty(LikewiseError):
    """The uploaded file has no rows."""


class FileTooLarge(LikewiseError):
    """The uploaded file exceeds the size limit."""


class FileTypeUnsupported(LikewiseError):
    """The file name does not end in .csv or .txt."""


class FileInvalid(LikewiseError):
    """The file is not a text file of identifiers (binary, no valid rows)."""


class FileSpecInvalid(LikewiseError):
    """The file does not meet the format for its calculate_type (for example a bad header)."""


class CalculateTypeUnsupported(LikewiseError):
    """The calculate_type is not supported for this operation."""


class ImportError_(LikewiseError):
    """A platform users import could not be read."""


class NotHashed(InvalidParameter):
    """An identifier that must arrive hashed arrived in clear text."""
