"""Errors of the processor stage."""

from __future__ import annotations

from sluiceway.common.errors import TransientError


class ScanTimeoutError(TransientError):
    """The change topics could not be read up to the run's cut in time."""
