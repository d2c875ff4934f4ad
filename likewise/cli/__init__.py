"""The ``likewise`` command line (Typer + rich)."""

from likewise.cli.main import app, main

__all__ = ["app", "main"]
