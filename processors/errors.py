"""Errors of the processor stage."""

from __future__ import annotations

from sluiceway.errors import TerminalError


class RunNotFoundError(TerminalError):
    """The etl_id names no run on the control topic."""
