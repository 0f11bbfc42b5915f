"""The migration loop ``migrate start`` runs: a full run, then a delta every interval until
cut-over, each applied to the target in one transaction with the state row. I/O.

Restarting after a crash continues from the state row: complete runs the lake holds after
the last applied one are applied first (in order), and a run still going at the lake is
waited for (or cancelled when its workers are gone) before the chain goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluiceway.common.codec import Codec
from sluiceway.common.entities import entity_names, load_order
from sluiceway.common.errors import ConfigError
from sluiceway.common.health import HEALTH
from sluiceway.common.kafka_io import known_tenants
from sluiceway.common.settings import (
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    StackSettings,
)
from sluiceway.common.spec import parse_spec
from sluiceway.control import registry
from sluiceway.control.export import absolute_destination
from sluiceway.control.runner import follow, log_dir, read_manifest, start_run
from sluiceway.tools.backup import table_rows
from sluiceway.tools.migrate import logic, metrics, target
from sluiceway.tools.migrate.logic import CUT_OVER, CUTOVER_REQUESTED, Row

if TYPE_CHECKING:
    from sluiceway.lake.manifest import RunManifest

log = logging.getLogger("sluiceway.tools.migrate")
Say = Callable[[str], None]
Stop = Callable[[], bool]


@dataclass(frozen=True)
class Request:
    from_tenant: str
    to_tenant: str
    target_dsn: str
    destination: str | None = None
    id_offset: int = 0
    interval: float = 5.0
    replace: bool = False
    run_timeout: float = 600.0

    @property
    def name(self) -> str:
        return logic.migration_name(self.from_tenant, self.to_tenant)


def default_destination(name: str) -> str:
    return str(StackSettings().home / "migrations" / name)


def _spec(state: target.State, run_type: str) -> Any:
    return parse_spec(
        {"tenants": [state.from_tenant], "entities": list(entity_names()), "type": run_type,
         "destination": state.destination,
         "remap": {"tenant": state.to_tenant, "id_offset": state.id_offset}},
        source="migration",
    )  # fmt: skip


def _lake(destination: str, s3: S3Settings) -> Any:
    from sluiceway.tools.reconstruct.lake import open_source

    return open_source(destination, s3)


def _run_rows(lake: Any, manifest: RunManifest, tenant: str) -> dict[str, Iterator[Row]]:
    """The run's rows, all of tenant B (the remap's target): a row of any other tenant means
    the lake is not the migration's, and is refused rather than silently left out."""
    return {e: table_rows(lake, manifest, e, (tenant,), (tenant,)) for e in load_order()}


def _run(state: target.State, run_type: str, kafka: KafkaSettings, s3: S3Settings,
         timeout: float) -> RunManifest:  # fmt: skip
    """One run of the chain, followed to its manifest."""
    run, workers = start_run(_spec(state, run_type), kafka, s3)
    assert workers is not None
    follow(run, kafka, workers, timeout, lambda _done, _total: None, s3)
    return read_manifest(run, s3)


def settle(destination: str, kafka: KafkaSettings, s3: S3Settings, timeout: float,
           say: Say) -> None:  # fmt: skip
    """Let a run left at the lake by a killed worker finish, or cancel it when it does not."""
    item = registry.active_at(kafka, s3, destination)
    if item is None:
        return
    say(f"waiting for run {item.run.etl_id}, left going by an earlier worker")
    deadline = time.monotonic() + timeout
    while item.active and time.monotonic() < deadline:
        time.sleep(0.5)
        item = registry.state(kafka, s3, item.run.etl_id)
    if item.active:
        registry.cancel(kafka, item, log_dir(item.run.etl_id), "cancelled by a restarted migration")
        say(f"cancelled run {item.run.etl_id}: not complete after {timeout:.0f}s")


def pending(state: target.State, s3: S3Settings) -> list[str]:
    """The complete runs at the migration's lake that the target has not had yet."""
    from sluiceway.tools.reconstruct.lake import load_runs

    runs = [(r.etl_id, r.type) for r in load_runs(_lake(state.destination, s3)).values()]
    return logic.pending_runs(runs, state.last_etl_id)


def prepare(request: Request, kafka: KafkaSettings, source: PostgresSettings,
            codec: Codec) -> tuple[target.State | None, list[str]]:  # fmt: skip
    """Every check a user can fix, before anything is written. Returns the existing state
    (a restart) or None with the tables to create (a new migration)."""
    src, tgt = target.connect(source.dsn(), "source"), target.connect(request.target_dsn)
    try:
        logic.check_tenants(request.from_tenant, request.to_tenant,
                            target.identity(src) == target.identity(tgt))  # fmt: skip
        state = target.read_state(tgt, request.name)
        tgt.rollback()
        if state is not None:
            mine = (state.from_tenant, state.to_tenant, state.id_offset)
            asked = (request.from_tenant, request.to_tenant, request.id_offset)
            if mine != asked:
                raise ConfigError(
                    f"migration {request.name!r} exists with id offset {state.id_offset}, "
                    f"not {request.id_offset}; restart it with the same --id-offset"
                )
            dest = request.destination
            if dest and absolute_destination(dest) != state.destination:
                raise ConfigError(
                    f"migration {request.name!r} works at the lake {state.destination}, not "
                    f"{dest}; restart it without --dest"
                )
            if state.status == CUT_OVER:
                raise ConfigError(f"migration {request.name!r} is already cut over")
            return state, []
        if request.from_tenant not in known_tenants(kafka):
            raise ConfigError(
                f"unknown tenant {request.from_tenant!r}: capture has not seen it in the source"
            )
        return None, target.check_target(tgt, codec, request.to_tenant, request.replace)
    finally:
        src.close()
        tgt.close()


def migrate(request: Request, kafka: KafkaSettings, s3: S3Settings, source: PostgresSettings,
            say: Say, stop: Stop = lambda: False) -> target.State:  # fmt: skip
    """Start (or resume) the migration and run it until cut-over; returns the final state.

    ``stop()`` (SIGTERM) ends it between deltas: the state row already says where it is, so
    ``migrate resume`` goes on from there."""
    codec = Codec()
    state, missing = prepare(request, kafka, source, codec)
    conn = target.connect(request.target_dsn)
    try:
        if state is None:
            state = _start(request, conn, codec, kafka, s3, missing, say)
        else:
            say(f"resuming {state.name} ({state.status}) after run {state.last_etl_id}")
        settle(state.destination, kafka, s3, request.run_timeout, say)
        state = _catch_up(state, conn, codec, s3, say)
        HEALTH.ready(True, f"migrating {state.name}")
        return _loop(request, state, conn, codec, kafka, s3, say, stop)
    finally:
        conn.close()


def _start(request: Request, conn: Any, codec: Codec, kafka: KafkaSettings, s3: S3Settings,
           missing: list[str], say: Say) -> target.State:  # fmt: skip
    destination = absolute_destination(request.destination or default_destination(request.name))
    state = target.State(request.name, request.from_tenant, request.to_tenant, request.id_offset,
                         destination, logic.RUNNING, "", 0, 0)  # fmt: skip
    settle(destination, kafka, s3, request.run_timeout, say)
    manifest = _run(state, "full", kafka, s3, request.run_timeout)
    lake = _lake(manifest.spec.destination, s3)
    state = target.State(**{**state.__dict__, "destination": manifest.spec.destination,
                            "last_etl_id": manifest.etl_id})  # fmt: skip
    counts = target.apply_full(conn, codec, state, _run_rows(lake, manifest, state.to_tenant),
                               missing, request.replace)  # fmt: skip
    say(f"copied {manifest.etl_id}: {counts}")
    metrics.applied(manifest.etl_id, "full", counts)
    found = target.read_state(conn, state.name)
    conn.rollback()
    assert found is not None
    return found


def _apply(state: target.State, etl_id: str, conn: Any, codec: Codec, s3: S3Settings,
           final: bool, say: Say) -> target.State:  # fmt: skip
    from sluiceway.lake import reader

    lake = _lake(state.destination, s3)
    manifest = reader.run_manifest(lake, etl_id)
    if manifest is None:
        raise ConfigError(f"run {etl_id} of the migration has no manifest")
    counts = target.apply_delta(conn, codec, state.name, state.last_etl_id, etl_id,
                                _run_rows(lake, manifest, state.to_tenant), final)  # fmt: skip
    say(f"applied {etl_id}: {counts}")
    metrics.applied(etl_id, "delta", counts)
    found = target.read_state(conn, state.name)
    conn.rollback()
    assert found is not None
    return found


def _catch_up(state: target.State, conn: Any, codec: Codec, s3: S3Settings,
              say: Say) -> target.State:  # fmt: skip
    """Apply complete runs the lake holds past the state (a crash between run and apply)."""
    for etl_id in pending(state, s3):
        say(f"run {etl_id} is complete at the lake but not applied yet")
        state = _apply(state, etl_id, conn, codec, s3, False, say)
    return state


def _status(conn: Any, name: str) -> str:
    found = target.read_state(conn, name)
    conn.rollback()
    return found.status if found else ""


def _loop(request: Request, state: target.State, conn: Any, codec: Codec, kafka: KafkaSettings,
          s3: S3Settings, say: Say, stop: Stop) -> target.State:  # fmt: skip
    while True:
        deadline = time.monotonic() + request.interval
        while time.monotonic() < deadline and _status(conn, state.name) != CUTOVER_REQUESTED:
            HEALTH.beat()
            if stop():
                say(f"stopped after {state.last_etl_id}; resume with: sluiceway migrate resume")
                return state
            time.sleep(0.25)
        # read before the run starts: a final delta's cut must come after the request
        final = _status(conn, state.name) == CUTOVER_REQUESTED
        manifest = _run(state, "delta", kafka, s3, request.run_timeout)
        state = _apply(state, manifest.etl_id, conn, codec, s3, final, say)
        if state.status == CUT_OVER:
            say(f"cut over at {state.last_etl_id}")
            return state
