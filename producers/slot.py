"""The logical replication slot: its creation with an exported snapshot, and its checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extras

from sluiceway.common.redact import pg_error_line
from sluiceway.common.settings import PostgresSettings
from sluiceway.producers.errors import SlotConflictError, SourceUnavailableError
from sluiceway.producers.events import lsn_to_int

PLUGINS = ("pgoutput", "wal2json")


@dataclass(frozen=True)
class SlotInfo:
    name: str
    confirmed_lsn: int


@dataclass(frozen=True)
class NewSlot:
    """A slot just created; ``snapshot`` stays importable while ``conn`` sits idle."""

    name: str
    consistent_lsn: int
    snapshot: str
    conn: Any


def replication_connection(pg: PostgresSettings) -> Any:
    try:
        return psycopg2.connect(
            **pg.connect_kwargs(),
            connection_factory=psycopg2.extras.LogicalReplicationConnection,
            options="-c TimeZone=UTC -c DateStyle=ISO",
        )
    except psycopg2.OperationalError as exc:
        first = pg_error_line(exc)
        raise SourceUnavailableError(
            f"replication connection to {pg.host}:{pg.port}/{pg.dbname} failed: {first}"
        ) from exc


def inspect_slot(conn: Any, name: str, dbname: str, plugin: str) -> SlotInfo | None:
    """The slot if it exists and suits us (created with ``plugin``); SlotConflictError
    naming the setting otherwise."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT slot_type, plugin, database, confirmed_flush_lsn::text "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (name,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    slot_type, found_plugin, database, confirmed = row
    for setting, found, wanted in (
        ("type", slot_type, "logical"),
        ("plugin", found_plugin, plugin),
        ("database", database, dbname),
    ):
        if found != wanted:
            # a slot of the other plugin can still be read: switching the setting keeps it
            keep = f", or SLUICEWAY_CAPTURE_PLUGIN to {found}" if setting == "plugin" else ""
            raise SlotConflictError(
                f"replication slot {name!r} exists with {setting} {found!r}; expected {wanted!r} "
                f"(drop it with SELECT pg_drop_replication_slot('{name}') or set "
                f"SLUICEWAY_CAPTURE_SLOT to another name{keep})"
            )
    return SlotInfo(name, lsn_to_int(confirmed))


def create_slot(pg: PostgresSettings, name: str, plugin: str) -> NewSlot:
    if plugin not in PLUGINS:
        raise SlotConflictError(
            f"output plugin {plugin!r} is not supported; expected one of {PLUGINS}"
        )
    conn = replication_connection(pg)
    with conn.cursor() as cur:
        cur.execute(f"CREATE_REPLICATION_SLOT {name} LOGICAL {plugin} (SNAPSHOT 'export')")
        _, consistent, snapshot, _ = cur.fetchone()
    return NewSlot(name, lsn_to_int(consistent), snapshot, conn)


def emit_heartbeat(conn: Any) -> None:
    """A non-transactional logical message: decoded in WAL order, so it proves progress."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_logical_emit_message(false, 'sluiceway-heartbeat', now()::text)")
