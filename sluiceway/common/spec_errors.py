"""Errors of the run contract: a run spec that is invalid, a run that does not exist."""

from __future__ import annotations

from collections.abc import Sequence

from sluiceway.common.errors import ConfigError, TerminalError
from sluiceway.common.redact import redact


class RunNotFoundError(TerminalError):
    """The etl_id names no run on the control topic."""


class SpecError(ConfigError):
    """A run spec is invalid; ``problems`` lists every (field path, message) at once.

    The API returns ``problems`` as JSON; the message joins them on one line for terminals.
    """

    def __init__(self, problems: Sequence[tuple[str, str]], source: str | None = None) -> None:
        self.problems = [(path, redact(msg)) for path, msg in problems]
        joined = "; ".join(f"{path}: {msg}" if path else msg for path, msg in self.problems)
        super().__init__(f"{source}: {joined}" if source else joined)
        self.source = source
