"""Errors of the processor stage."""

from __future__ import annotations

from sluiceway.common.errors import TransientError


class ScanTimeoutError(TransientError):
    """The change topics could not be read up to the run's cut in time."""


class ScanStoppedError(Exception):
    """A stop signal arrived while a pass read the change topics (before the worker joined
    its group); raised from the pass's loop, never from the signal handler, because an
    exception raised inside a handler surfaces in whatever C call was running (librdkafka's
    constructor reports it as a TypeError about configuration names)."""
