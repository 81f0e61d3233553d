"""``dpsad-core`` commands for export."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to the ``dpsad-core`` parser."""
