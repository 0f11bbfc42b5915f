"""The exception hierarchy every stage shares.

Transient errors are worth retrying (a broker restarting, a connection dropped); terminal
errors are not (a bad spec, a missing tool). Messages are one line and name the bad value
and what was expected, because users read them in a terminal or a run status.
"""

from __future__ import annotations


class SluicewayError(Exception):
    """Base of every error Sluiceway raises on purpose.

    Its text is masked by ``sluiceway.common.redact`` wherever it is shown (terminal, API answer,
    log, run status), since a message may quote a URL or connection string with a secret.
    """

    def __str__(self) -> str:
        from sluiceway.common.redact import redact

        return redact(super().__str__())


class TerminalError(SluicewayError):
    """Retrying will not help: the input, the config or the environment must change."""


class TransientError(SluicewayError):
    """A retry with backoff may succeed."""


class ConfigError(TerminalError):
    """A setting or argument is missing or has a value that is not allowed."""


class ToolMissingError(TerminalError):
    """A program the local stack needs (java, mvn, PostgreSQL) is not installed."""

    def __init__(self, tool: str, install: str) -> None:
        super().__init__(f"{tool} not found; install it with: {install}")
        self.tool = tool
        self.install = install


class StackDownError(TransientError):
    """A server of the stack does not answer."""


class InvalidEventError(TerminalError):
    """An event that cannot be decoded or fails validation; it belongs in a dead-letter topic."""


class RunConflictError(ConfigError):
    """Another run of the same destination is active (the API answers 409)."""


class RestoreError(TerminalError):
    """A backup cannot be restored as asked: no full export, a mismatched table, rows in the way."""


class RunFailedError(SluicewayError):
    """A run ended failed or cancelled: the input may be fine; its logs say what happened."""


class RunAlreadyCompleteError(SluicewayError):
    """A worker was started for a run that has already completed: nothing is left to do
    (a supervisor restarting a worker after its run ended); its command exits 0."""


class ConfigProblems(ConfigError):
    """Several problems found at once (a config file, `sluiceway check`), one line each."""

    def __init__(self, summary: str, problems: list[str]) -> None:
        super().__init__(f"{summary}: " + "; ".join(problems))
        self.problems = problems
