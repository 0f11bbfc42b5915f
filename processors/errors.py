"""Errors of the processor stage."""

from __future__ import annotations

from sluiceway.errors import TerminalError, TransientError


class RunNotFoundError(TerminalError):
    """The etl_id names no run on the control topic."""


class ScanTimeoutError(TransientError):
    """The change topics could not be read up to the run's cut in time."""
