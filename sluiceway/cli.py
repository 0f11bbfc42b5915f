"""The ``sluiceway`` command: one verb per stage or task (docs/architecture.md lists them).

Errors a user can act on end the command with one line (or a JSON object with ``--json``)
and an exit code from ``sluiceway.exit_codes``; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import typer

from sluiceway.exit_codes import fail

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Our errors become one line (JSON with --json) and a scheduler's exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            raise fail(exc, bool(kwargs.get("as_json"))) from exc

    return wrapper  # type: ignore[return-value]


def _version(given: bool) -> None:
    if given:
        try:
            typer.echo(f"sluiceway {version('sluiceway')}")
        except PackageNotFoundError:  # imported from a checkout that was never installed
            typer.echo("sluiceway (not installed)")
        raise typer.Exit(0)


def root(
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Config file (YAML); default: $SLUICEWAY_CONFIG, else ./sluiceway.yaml.",
    ),
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Sluiceway: stream a multi-tenant application's data into a Parquet lake."""
    from sluiceway.config import use_config_file

    use_config_file(config)


def build_app() -> typer.Typer:
    from sluiceway.commands import (
        check,
        config,
        demo,
        discover,
        export,
        migrate,
        reconstruct,
        replay,
        schemas,
        serve,
        source,
        workers,
    )
    from sluiceway.devstack.cli import stack_app

    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    app.callback()(root)
    app.add_typer(stack_app, name="stack", help="Run the local Kafka, PostgreSQL and S3 stack.")
    discover.register(source.app)
    app.add_typer(
        source.app, name="source", help="The source database: discover its catalog; the demo's."
    )
    app.add_typer(export.app, name="export", help="Start export runs.")
    app.add_typer(migrate.app, name="migrate", help="Migrate a tenant into another, until cutover.")
    app.add_typer(config.app, name="config", help="The merged settings and their documentation.")
    app.add_typer(schemas.app, name="schemas", help="Entity schemas derived from a catalog.")
    check.register(app)
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
    try:
        build_app()()
    except Exception as exc:  # raised outside a command's own handler: the --config callback
        exit_ = fail(exc, "--json" in sys.argv)
        sys.exit(exit_.exit_code)


if __name__ == "__main__":
    main()
