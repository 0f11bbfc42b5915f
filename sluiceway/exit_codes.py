"""Exit codes a scheduler can act on, and how an error is shown (a line, or JSON).

0 success; 2 usage (click's own); 3 bad input or config, do not retry; 4 transient (a server
does not answer), retry; 5 a run failed or was cancelled; 6 ``migrate verify`` found
differences; 1 is left to bugs (an unexpected traceback).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from sluiceway.common.errors import RunFailedError, SluicewayError, TerminalError, TransientError
from sluiceway.common.settings import settings_problem

OK = 0
USAGE = 2
BAD_INPUT = 3
TRANSIENT = 4
RUN_FAILED = 5
DIFFERENCES = 6

KINDS = {BAD_INPUT: "bad_input", TRANSIENT: "transient", RUN_FAILED: "run_failed"}


def transient_errors() -> tuple[type[BaseException], ...]:
    """Client errors that mean a server did not answer, as the libraries raise them."""
    import psycopg2
    from confluent_kafka import KafkaException

    return (TransientError, psycopg2.OperationalError, KafkaException)


def classify(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for an error a user can act on; None for a bug."""
    if isinstance(exc, RunFailedError):
        return RUN_FAILED, str(exc)
    if isinstance(exc, TerminalError):
        return BAD_INPUT, str(exc)
    if isinstance(exc, ValidationError):
        problem = settings_problem(exc)  # a bad setting, not a bug
        return None if problem is None else (BAD_INPUT, problem)
    if isinstance(exc, transient_errors()):
        return TRANSIENT, str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    if isinstance(exc, SluicewayError):
        return BAD_INPUT, str(exc)
    return None


def fail(exc: BaseException, as_json: bool) -> typer.Exit:
    """Print ``exc`` as one red line (or a JSON object on stdout) and return the exit to raise;
    re-raises what is not a user-facing error, so a bug keeps its traceback."""
    found = classify(exc)
    if found is None:
        raise exc
    code, message = found
    if as_json:
        problems = getattr(exc, "problems", None) or [message]
        payload: dict[str, Any] = {"error": message, "kind": KINDS[code], "problems": problems}
        typer.echo(json.dumps(payload))
    else:
        line = Text.assemble(("error:", "red"), f" {message}")
        Console(stderr=True).print(line, highlight=False, soft_wrap=True)
    return typer.Exit(code)
