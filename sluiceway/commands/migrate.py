"""``sluiceway migrate start|cutover|status|verify``: tenant-to-tenant migration."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import typer

from sluiceway.cli import friendly_errors
from sluiceway.commands.export import print_payload
from sluiceway.common.entities import active_catalog, load_order
from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings
from sluiceway.exit_codes import DIFFERENCES
from sluiceway.tools.migrate import logic, target, worker

app = typer.Typer(no_args_is_help=True)

TARGET = typer.Option(..., "--target-dsn", help="libpq DSN or postgresql:// URL of the target.")
NAME = typer.Option(None, "--name", help="The migration (default: the target's only one).")
JSON = typer.Option(False, "--json", help="Print JSON.")
METRICS = typer.Option(None, "--metrics-port", help="Serve /metrics, /healthz and /readyz here.")


def _worker(metrics_port: int | None) -> Callable[[], bool]:
    """Health and metrics for the long-running worker; SIGTERM stops it between deltas."""
    from sluiceway.commands.workers import stop_on_signals
    from sluiceway.common import health

    health.serve(metrics_port)
    return stop_on_signals()


@app.command("start")
@friendly_errors
def start(
    from_tenant: str = typer.Option(..., "--from-tenant", help="Tenant A, in the source."),
    to_tenant: str = typer.Option(..., "--to-tenant", help="Tenant B, in the target."),
    target_dsn: str = TARGET,
    dest: str | None = typer.Option(None, "--dest", help="Working lake (default: stack home)."),
    id_offset: int = typer.Option(0, "--id-offset", min=0, max=2**62, help="Added to every id."),
    interval: float = typer.Option(5.0, "--interval", min=0.0, help="Seconds between deltas."),
    replace: bool = typer.Option(False, "--replace", help="Delete B's rows first (one txn)."),
    as_json: bool = JSON,
    metrics_port: int | None = METRICS,
) -> None:
    """Copy tenant A into tenant B of the target, then apply A's changes until cutover.

    Run it again after a crash: it resumes from the state kept in the target database."""
    request = worker.Request(from_tenant, to_tenant, target_dsn, dest, id_offset, interval,
                             replace)  # fmt: skip
    say = (lambda _line: None) if as_json else typer.echo
    stop = _worker(metrics_port)
    state = worker.migrate(request, KafkaSettings(), S3Settings(), PostgresSettings(), say, stop)
    print_payload(_state_dict(state), as_json)


@app.command("resume")
@friendly_errors
def resume(
    target_dsn: str = TARGET,
    name: str | None = NAME,
    interval: float = typer.Option(5.0, "--interval", min=0.0, help="Seconds between deltas."),
    as_json: bool = JSON,
    metrics_port: int | None = METRICS,
) -> None:
    """Resume a migration from the state kept in the target (as ``start`` with its arguments)."""
    conn = target.connect(target_dsn)
    try:
        state = _state(conn, name)
    finally:
        conn.close()
    request = worker.Request(state.from_tenant, state.to_tenant, target_dsn, state.destination,
                             state.id_offset, interval)  # fmt: skip
    say = (lambda _line: None) if as_json else typer.echo
    stop = _worker(metrics_port)
    done = worker.migrate(request, KafkaSettings(), S3Settings(), PostgresSettings(), say, stop)
    print_payload(_state_dict(done), as_json)


def _state_dict(state: target.State) -> dict[str, Any]:
    out = dict(state.__dict__)
    for key in ("started", "updated"):
        if isinstance(out[key], datetime):
            out[key] = out[key].isoformat()
    return out


def _name(conn: Any, name: str | None) -> str:
    if name:
        return name
    names = target.migration_names(conn)
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise ConfigError(f"the target holds migrations {found}; name one with --name")
    return names[0]


def _state(conn: Any, name: str | None) -> target.State:
    chosen = _name(conn, name)
    state = target.read_state(conn, chosen)
    conn.rollback()
    if state is None:
        raise ConfigError(f"no migration {chosen!r} in the target database")
    return state


@app.command("cutover")
@friendly_errors
def cutover(
    target_dsn: str = TARGET,
    name: str | None = NAME,
    timeout: float = typer.Option(600.0, help="Give up waiting after this many seconds."),
    as_json: bool = JSON,
) -> None:
    """Ask the running migration for a final delta, and wait until it is cut over."""
    conn = target.connect(target_dsn)
    try:
        state = _state(conn, name)
        if state.status != logic.CUT_OVER:
            target.request_cutover(conn, state.name)
        deadline = time.monotonic() + timeout
        while (state := _state(conn, state.name)).status != logic.CUT_OVER:
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"migration {state.name!r} not cut over after {timeout:.0f}s; is its "
                    "worker (sluiceway migrate start) running?"
                )
            time.sleep(0.5)
    finally:
        conn.close()
    print_payload(_state_dict(state), as_json)


@app.command("status")
@friendly_errors
def status(target_dsn: str = TARGET, name: str | None = NAME, as_json: bool = JSON) -> None:
    """Where the migration stands: state, last applied run, lag, runs not yet applied, rows of
    B per table."""
    conn = target.connect(target_dsn)
    try:
        state = _state(conn, name)
        counts = target.tenant_counts(conn, active_catalog(), state.to_tenant)
    finally:
        conn.close()
    payload = _state_dict(state)
    updated = state.updated if isinstance(state.updated, datetime) else None
    payload["lag_seconds"] = (
        None if updated is None or state.status == logic.CUT_OVER
        else round((datetime.now(UTC) - updated).total_seconds(), 1)
    )  # fmt: skip
    payload["runs_pending"] = len(worker.pending(state, S3Settings()))
    payload["rows"] = counts
    print_payload(payload, as_json)


@app.command("verify")
@friendly_errors
def verify(
    target_dsn: str = TARGET,
    name: str | None = NAME,
    limit: int = typer.Option(100, help="Differences listed at most (all are counted)."),
    as_json: bool = JSON,
) -> None:
    """Compare A (source) with B (target) per table, modulo the id map; exit 6 on a difference."""
    conn = target.connect(target_dsn)
    src = target.connect(PostgresSettings().dsn(), "source")
    try:
        state = _state(conn, name)
        reports = [
            logic.compare_table(
                entity,
                target.tenant_rows(src, active_catalog(), entity, state.from_tenant),
                target.tenant_rows(conn, active_catalog(), entity, state.to_tenant),
                state.id_offset,
                state.to_tenant,
            )
            for entity in load_order()
        ]
    finally:
        conn.close()
        src.close()
    differences = [d for r in reports for d in r.differences]
    payload = {
        "name": state.name, "status": state.status, "last_etl_id": state.last_etl_id,
        "tables": {r.table: r.to_dict() for r in reports},
        "total_differences": len(differences),
        "differences": [d.to_dict() for d in differences[:limit]],
    }  # fmt: skip
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        for r in reports:
            typer.echo(f"{r.table}: source {r.source_rows} rows, target {r.target_rows} rows, "
                       f"{len(r.differences)} differences")  # fmt: skip
        for d in differences[:limit]:
            typer.echo(f"{d.table} id {d.id}: {d.kind} {' '.join(d.columns)}".rstrip())
    if differences:
        raise typer.Exit(DIFFERENCES)
