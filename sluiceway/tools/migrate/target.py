"""The target database of a migration: its state row and the rows of tenant B. I/O.

Every applied run is one transaction holding its rows AND the state row's new
``last_etl_id``: a crash anywhere leaves either the old state with the old rows or the new
state with the new rows, so a run is never applied twice nor half.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extras
from psycopg2 import sql
from psycopg2.extras import execute_values

from sluiceway.common.catalog import Catalog, Entity
from sluiceway.common.codec import Codec
from sluiceway.common.entities import load_order
from sluiceway.common.errors import ConfigError
from sluiceway.common.pgtypes import column_type
from sluiceway.common.redact import pg_error_line
from sluiceway.tools.migrate.logic import RUNNING, Row, latest_changes, transition
from sluiceway.tools.restore import (
    check_tables,
    column_list,
    load_table,
    prepare_tables,
    table_identifier,
    tenant_column,
)

STATE_TABLE = "sluiceway_migration"
STATE_DDL = f"""CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
  name text PRIMARY KEY,
  from_tenant text NOT NULL,
  to_tenant text NOT NULL,
  id_offset bigint NOT NULL,
  destination text NOT NULL,
  status text NOT NULL,
  last_etl_id text NOT NULL,
  runs_applied integer NOT NULL,
  rows_applied bigint NOT NULL,
  started timestamptz NOT NULL DEFAULT now(),
  updated timestamptz NOT NULL DEFAULT now()
)"""
_STATE_COLUMNS = ("name", "from_tenant", "to_tenant", "id_offset", "destination", "status",
                  "last_etl_id", "runs_applied", "rows_applied", "started", "updated")  # fmt: skip


@dataclass(frozen=True)
class State:
    name: str
    from_tenant: str
    to_tenant: str
    id_offset: int
    destination: str
    status: str
    last_etl_id: str
    runs_applied: int
    rows_applied: int
    started: Any = None
    updated: Any = None


def connect(dsn: str, what: str = "target") -> Any:
    try:
        return psycopg2.connect(dsn)
    except psycopg2.Error as exc:
        raise ConfigError(f"cannot connect to the {what} database: {pg_error_line(exc)}") from exc


def identity(conn: Any) -> tuple[Any, ...]:
    """What tells two connections to the same database apart from two databases."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT current_database(), inet_server_port(), pg_postmaster_start_time(), "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        found = tuple(cur.fetchone())
    conn.rollback()
    return found


def ensure_state_table(conn: Any) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(STATE_DDL)


def read_state(conn: Any, name: str, lock: bool = False) -> State | None:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (STATE_TABLE,))
        if cur.fetchone()[0] is None:
            return None
        cur.execute(
            f"SELECT {', '.join(_STATE_COLUMNS)} FROM {STATE_TABLE} WHERE name = %s"
            + (" FOR UPDATE" if lock else ""),
            (name,),
        )
        row = cur.fetchone()
    return State(*row) if row else None


def migration_names(conn: Any) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (STATE_TABLE,))
        if cur.fetchone()[0] is None:
            return []
        cur.execute(f"SELECT name FROM {STATE_TABLE} ORDER BY name")
        names = [r[0] for r in cur.fetchall()]
    conn.rollback()
    return names


def check_target(conn: Any, codec: Codec, tenant: str, replace: bool) -> list[str]:
    """Before the first write: the tables fit the source schema (missing ones are created
    later), and tenant B holds no rows unless ``replace``. Returns the missing tables."""
    with conn.cursor() as cur:
        missing = check_tables(cur, codec.catalog, list(load_order()))
        for entity in load_order():
            if entity in missing or replace:
                continue
            found = codec.catalog.entity(entity)
            cur.execute(_count_sql(found), (tenant,))
            count = cur.fetchone()[0]
            if count:
                raise ConfigError(
                    f"table {found.table} of the target already holds {count} rows of tenant "
                    f"{tenant!r}; migrate into an empty tenant, or pass --replace to delete them"
                )
    conn.rollback()
    return missing


def _count_sql(entity: Entity) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {} WHERE {}::text = %s").format(
        table_identifier(entity), sql.Identifier(tenant_column(entity))
    )


def _upsert(cur: Any, catalog: Catalog, name: str, rows: Iterable[Row]) -> int:
    """Insert or overwrite the rows (they carry tenant B in ``_tenant_id``), by primary key."""
    entity = catalog.entity(name)
    updates = [c for c in entity.column_names if c not in entity.key]
    action: sql.Composable = sql.SQL("DO NOTHING")
    if updates:
        action = sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
                               for c in updates)
        )  # fmt: skip
    conflict = sql.SQL("ON CONFLICT ({}) {}").format(column_list(entity.key), action)
    return load_table(cur, catalog, name, iter(rows), {}, conflict)


def _delete(
    cur: Any, catalog: Catalog, entity: Entity, tenant: str, keys: list[tuple[Any, ...]]
) -> None:
    """Delete tenant's rows of these record keys (one or several columns each), each key
    value cast to its column's type as restore casts it, so the primary key's index is used."""
    names = entity.record_key
    types = [column_type(entity.column(n), catalog.types) for n in names]
    matches = sql.SQL(" AND ").join(
        sql.SQL("t.{0} = d.{0}").format(sql.Identifier(n)) for n in names
    )
    delete = sql.SQL("DELETE FROM {} AS t USING (VALUES %s) AS d ({}) WHERE t.{}::text = {} AND {}")
    statement = delete.format(
        table_identifier(entity), column_list(names), sql.Identifier(tenant_column(entity)),
        sql.Literal(tenant), matches,
    )  # fmt: skip
    template = sql.SQL("({})").format(sql.SQL(", ").join(t.restore_placeholder() for t in types))
    params = [tuple(t.restore_param(v) for t, v in zip(types, key, strict=True)) for key in keys]
    execute_values(cur, statement, params, template=template.as_string(cur), page_size=1_000)


def apply_full(
    conn: Any, codec: Codec, state: State, rows: Mapping[str, Iterable[Row]], missing: list[str],
    replace: bool,
) -> dict[str, int]:  # fmt: skip
    """Load a full export into tenant B and create the state row, in one transaction."""
    tenant, catalog = state.to_tenant, codec.catalog
    with conn, conn.cursor() as cur:
        cur.execute(STATE_DDL)
        cleared = [e for e in load_order() if e not in missing] if replace else []
        prepare_tables(cur, catalog, missing, cleared, (tenant,))
        counts = {e: _upsert(cur, catalog, e, rows.get(e, ())) for e in load_order()}
        cur.execute(
            f"INSERT INTO {STATE_TABLE} (name, from_tenant, to_tenant, id_offset, destination, "
            "status, last_etl_id, runs_applied, rows_applied) VALUES (%s, %s, %s, %s, %s, %s, "
            "%s, 1, %s)",
            (state.name, state.from_tenant, tenant, state.id_offset, state.destination,
             RUNNING, state.last_etl_id, sum(counts.values())),
        )  # fmt: skip
    return counts


def apply_delta(
    conn: Any, codec: Codec, name: str, expected_last: str, etl_id: str,
    rows: Mapping[str, Iterable[Row]], final: bool,
) -> dict[str, int]:  # fmt: skip
    """Apply one delta run (upserts, then deletes in reverse order) and advance the state row,
    in one transaction. ``expected_last`` guards against a second worker on the same migration."""
    with conn, conn.cursor() as cur:
        state = read_state(conn, name, lock=True)
        if state is None:
            raise ConfigError(f"migration {name!r} has no state in the target database")
        if state.last_etl_id != expected_last:
            raise ConfigError(
                f"migration {name!r} moved on to run {state.last_etl_id} while this worker "
                f"applied {etl_id}; is another migrate worker running?"
            )
        status = transition(state.status, "final_apply" if final else "apply")
        catalog = codec.catalog
        changes = {
            e: latest_changes(rows.get(e, ()), catalog.entity(e).record_key) for e in load_order()
        }
        counts = {e: _upsert(cur, catalog, e, ch[0].values()) for e, ch in changes.items()}
        for entity in reversed(load_order()):
            deleted = sorted(changes[entity][1])
            if deleted:
                _delete(cur, catalog, catalog.entity(entity), state.to_tenant, deleted)
                counts[entity] += len(deleted)
        cur.execute(
            f"UPDATE {STATE_TABLE} SET status = %s, last_etl_id = %s, "
            "runs_applied = runs_applied + 1, rows_applied = rows_applied + %s, updated = now() "
            "WHERE name = %s",
            (status, etl_id, sum(counts.values()), name),
        )
    return counts


def request_cutover(conn: Any, name: str) -> State:
    with conn, conn.cursor() as cur:
        state = read_state(conn, name, lock=True)
        if state is None:
            raise ConfigError(f"no migration {name!r} in the target database")
        status = transition(state.status, "request_cutover")
        cur.execute(
            f"UPDATE {STATE_TABLE} SET status = %s, updated = now() WHERE name = %s",
            (status, name),
        )
    return state


def tenant_rows(conn: Any, catalog: Catalog, entity: str, tenant: str) -> list[Row]:
    """Every row of ``tenant`` in ``entity``'s table: the catalog's columns (not the tenant's)."""
    found = catalog.entity(entity)
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        select = sql.SQL("SELECT {} FROM {} WHERE {}::text = %s").format(
            column_list(found.column_names), table_identifier(found),
            sql.Identifier(tenant_column(found)),
        )  # fmt: skip
        cur.execute(select, (tenant,))
        rows = [dict(r) for r in cur.fetchall()]
    conn.rollback()
    return rows


def tenant_counts(conn: Any, catalog: Catalog, tenant: str) -> dict[str, int]:
    counts = {}
    with conn.cursor() as cur:
        for entity in load_order():
            found = catalog.entity(entity)
            cur.execute("SELECT to_regclass(%s)", (table_identifier(found).as_string(cur),))
            if cur.fetchone()[0] is None:
                counts[entity] = 0
                continue
            cur.execute(_count_sql(found), (tenant,))
            counts[entity] = int(cur.fetchone()[0])
    conn.rollback()
    return counts
