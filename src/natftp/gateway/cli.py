"""CLI commands of this part of natftp (registered by natftp.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the `natftp` app."""
