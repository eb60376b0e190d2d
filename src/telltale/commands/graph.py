"""Commands: graph (filled in by the analyses that need them)."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add this module's commands to the `telltale` group."""
