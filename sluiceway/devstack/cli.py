"""`sluiceway stack up|status|down`: the local stack from the command line.

Settings objects are built inside each command, never at import time. Progress goes to
stderr so that `--json` output on stdout stays parseable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from pydantic_settings import BaseSettings
from rich.console import Console
from rich.table import Table

from sluiceway.common.errors import SluicewayError
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings, StackSettings
from sluiceway.devstack import Server, ServerStatus, servers
from sluiceway.devstack.kafka_cluster import Layout, bootstrap, client_env_file, node
from sluiceway.exit_codes import fail

stack_app = typer.Typer(
    help="Run the local stack (Kafka, PostgreSQL, S3Proxy) on 127.0.0.1 without Docker.",
    no_args_is_help=True,
)


@contextmanager
def _one_line_errors(as_json: bool) -> Iterator[None]:
    """A SluicewayError becomes one `error: ...` line (JSON with --json) and its exit code."""
    try:
        yield
    except SluicewayError as exc:
        raise fail(exc, as_json) from exc


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def _from_env(cls: type[SettingsT]) -> SettingsT:
    """Build a settings object from the environment and its defaults."""
    return cls()


def _servers(**stack: object) -> list[Server]:
    return servers(
        StackSettings.for_dev_stack().model_copy(update=stack),
        _from_env(KafkaSettings),
        _from_env(PostgresSettings),
        _from_env(S3Settings),
    )


def _run_each(
    items: list[Server], verb: str, action: Callable[[Server], ServerStatus]
) -> list[ServerStatus]:
    """Run action on each server behind a spinner; one line per server when done."""
    err = Console(stderr=True)
    done: list[ServerStatus] = []
    for server in items:
        started = time.monotonic()
        with err.status(f"{verb} {server.name}..."):
            result = action(server)
        state = "[green]running[/green]" if result.running else "[yellow]stopped[/yellow]"
        err.print(f"{server.name}: {state} ({time.monotonic() - started:.1f}s)")
        done.append(result)
    return done


def _report(statuses: list[ServerStatus], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in statuses], indent=2))
        return
    table = Table(title="Sluiceway local stack")
    for column in ("server", "state", "pid", "address", "data", "log"):
        wraps = column in ("data", "log")
        table.add_column(column, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")
    for s in statuses:
        state = "[green]running[/green]" if s.running else "[red]stopped[/red]"
        pid = "-" if s.pid is None else str(s.pid)
        table.add_row(s.name, state, pid, s.address, str(s.data_dir), str(s.log_file))
    Console().print(table)


@stack_app.command()
def up(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    brokers: int = typer.Option(
        1, "--brokers", min=1, max=9, help="Kafka nodes (a KRaft cluster when more than 1)."
    ),
    sasl_ssl: bool = typer.Option(
        False, "--sasl-ssl", help="Also serve SASL_SSL (SCRAM users, a generated test CA)."
    ),
) -> None:
    """Start Kafka, PostgreSQL and S3Proxy (those not answering yet) and wait for them."""
    with _one_line_errors(as_json):
        stack = StackSettings.for_dev_stack()
        options = {
            "kafka_brokers": max(brokers, stack.kafka_brokers),
            "kafka_sasl_ssl": sasl_ssl or stack.kafka_sasl_ssl,
        }
        items = _servers(**options)
        _report(_run_each(items, "starting", lambda s: s.up()), as_json)
        _print_client_settings(stack.model_copy(update=options))


def _print_client_settings(stack: StackSettings) -> None:
    layout = Layout.of(stack)
    if not layout.clustered:
        return
    err, kafka = Console(stderr=True), _from_env(KafkaSettings)
    err.print(f"clients: SLUICEWAY_KAFKA_BOOTSTRAP={bootstrap(kafka, layout.brokers)}")
    if layout.sasl_ssl:
        err.print(f"SASL_SSL client settings (with the password): {client_env_file(stack)}")


@stack_app.command("kill-broker")
def kill_broker(node_id: int = typer.Argument(..., help="Node number, from 1.")) -> None:
    """SIGKILL one node of the local Kafka cluster (a crash, for failover tests)."""
    with _one_line_errors(False):
        found = node(StackSettings.for_dev_stack(), _from_env(KafkaSettings), node_id).kill()
        _report([found], as_json=False)


@stack_app.command("start-broker")
def start_broker(node_id: int = typer.Argument(..., help="Node number, from 1.")) -> None:
    """Start one node of the local Kafka cluster again and wait until it answers."""
    with _one_line_errors(False):
        broker = node(StackSettings.for_dev_stack(), _from_env(KafkaSettings), node_id)
        broker.wait(broker.start())
        _report([broker.status()], as_json=False)


@stack_app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show which servers run, with their pid, address, data folder and log file."""
    with _one_line_errors(as_json):
        _report([server.status() for server in _servers()], as_json)


@stack_app.command()
def down(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Stop the servers the stack started (reverse order); does nothing if none run."""
    with _one_line_errors(as_json):
        items = list(reversed(_servers()))
        stopped = _run_each(items, "stopping", lambda s: s.down())
        _report(stopped[::-1], as_json)
