"""Likewise: a self-hostable Custom Audiences engine that speaks TikTok's audience APIs."""

__version__ = "0.1.0"
