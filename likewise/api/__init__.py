"""HTTP surfaces: the TikTok v1.3 audience API and the platform admin API."""

from likewise.api.app import create_app

__all__ = ["create_app"]
