"""The ``sluiceway`` command: one verb per stage or task (DESIGN.md section 5)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from sluiceway.errors import SluicewayError
from sluiceway.settings import settings_problem

F = TypeVar("F", bound=Callable[..., Any])
err_console = Console(stderr=True)


def friendly_errors(func: F) -> F:
    """Our errors become one red line and exit code 1, not a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SluicewayError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from exc
        except ValidationError as exc:
            problem = settings_problem(exc)  # a bad SLUICEWAY_* variable, not a bug
            if problem is None:
                raise
            err_console.print(f"[red]error:[/red] {problem}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from exc

    return wrapper  # type: ignore[return-value]


def build_app() -> typer.Typer:
    from sluiceway.commands import (
        demo,
        export,
        migrate,
        reconstruct,
        replay,
        serve,
        source,
        workers,
    )
    from sluiceway.stack.cli import stack_app

    app = typer.Typer(
        help="Sluiceway: stream a multi-tenant application's data into a Parquet lake.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    app.add_typer(stack_app, name="stack", help="Run the local Kafka, PostgreSQL and S3 stack.")
    app.add_typer(source.app, name="source", help="The Jira-shaped demo source database.")
    app.add_typer(export.app, name="export", help="Start export runs.")
    app.add_typer(migrate.app, name="migrate", help="Migrate a tenant into another, until cutover.")
    workers.register(app)
    demo.register(app)
    replay.register(app)
    serve.register(app)
    reconstruct.register(app)
    return app


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("SLUICEWAY_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Connection failures surface as one-line errors; librdkafka's retries would repeat them.
    logging.getLogger("sluiceway.kafka.client").setLevel(logging.CRITICAL)
    build_app()()


if __name__ == "__main__":
    main()
