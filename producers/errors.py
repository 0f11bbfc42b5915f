"""Errors of the capture stage."""

from __future__ import annotations

from sluiceway.common.errors import TerminalError, TransientError


class SourceUnavailableError(TransientError):
    """The source database does not answer."""


class ProduceError(TransientError):
    """Kafka did not acknowledge every event in time."""


class SourceSchemaError(TerminalError):
    """A captured table is missing or not shaped as the schemas say."""


class SlotConflictError(TerminalError):
    """A replication slot of our name exists with other settings."""
