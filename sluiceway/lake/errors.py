"""Errors the sink raises on purpose; messages are one line and name the bad value."""

from __future__ import annotations

from sluiceway.common.errors import ConfigError, TerminalError, TransientError


class DestinationError(ConfigError):
    """The destination is malformed, unsupported or not writable."""


class UnsupportedSchemaError(ConfigError):
    """An entity's Avro schema has a type the lake has no column type for."""


class LakeWriteError(TransientError):
    """Writing, renaming or listing a lake object failed; a restart redoes the work."""


class RunTimeoutError(TransientError):
    """The run did not complete in the time the caller allowed."""


class RunStateError(TerminalError):
    """The run's record or the lake contradict what the sink expects."""


class UnsafePathError(RunStateError):
    """A manifest lists a file outside its lake (absolute, or with a ``..`` segment)."""


class ManifestError(RunStateError):
    """A run manifest or ``manifest.json`` is not JSON, or a field is missing or malformed."""
