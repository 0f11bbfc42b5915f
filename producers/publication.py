"""The publication pgoutput reads: created for the captured tables, or checked if it exists.

pgoutput sends only the changes of the tables a publication lists, and looks the
publication up as of each change's place in the WAL. So it must exist, covering every
captured table, before the slot is created: changes written before then could not be
decoded (PostgreSQL stops with "publication does not exist"), and a table added later has
no changes before its addition. An existing publication is therefore checked, never
altered behind the user's back: a gap is refused with the statement that fixes it.

Schema-per-tenant tables are the exception: tenants come and go while capture runs, so the
publication is created with the tenant tables of the moment, and capture adds each new one
itself, reading its rows as it adds it (``producers/new_tables.py``); one missing from an
existing publication is added that way too, not refused. A publication FOR ALL TABLES (or
FOR TABLES IN SCHEMA) publishes them already.
"""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from sluiceway.common.entities import active_catalog
from sluiceway.common.redact import pg_error_line
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.tenant_tables import live_tables

_ACTIONS = ("insert", "update", "delete")


def captured_tables(cur: Any, per_schema: bool = True) -> list[str]:
    """``schema.table`` of every table of the active catalog that exists now (without the
    schema-per-tenant ones unless ``per_schema``)."""
    tables = live_tables(cur, active_catalog())
    return [t.qualified for t in tables if per_schema or not t.per_schema]


def create_statement(cur: Any, name: str) -> sql.Composed:
    tables = live_tables(cur, active_catalog())
    if not tables:  # only schema-per-tenant entities, no tenant yet: added as they come
        return sql.SQL("CREATE PUBLICATION {}").format(sql.Identifier(name))
    listed = sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in tables)
    return sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(name), listed)


def ensure_publication(conn: Any, name: str, slot: str, slot_exists: bool) -> bool:
    """Create publication ``name`` when missing (True) or check it covers what capture reads
    (False); SourceSchemaError with one line naming what is wrong and the fix otherwise."""
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = %s",
            (name,),
        )
        row = cur.fetchone()
        if row is None:
            if slot_exists:
                raise SourceSchemaError(
                    f"publication {name!r} does not exist but slot {slot!r} does: the changes "
                    "the slot holds cannot be decoded without it; drop the slot (SELECT "
                    f"pg_drop_replication_slot('{slot}')) so capture starts over with a new "
                    "snapshot, or set SLUICEWAY_CAPTURE_PUBLICATION to the slot's publication"
                )
            return _create(cur, name)
        problems = _action_problems(name, row) + _table_problems(cur, name)
    if problems:
        raise SourceSchemaError("; ".join(problems))
    return False


def _create(cur: Any, name: str) -> bool:
    statement = create_statement(cur, name)
    try:
        cur.execute(statement)
    except psycopg2.errors.DuplicateObject:
        return False  # another capture created it just now: it has the same tables
    except psycopg2.Error as exc:
        raise SourceSchemaError(
            f"cannot create publication {name!r}: {pg_error_line(exc)}; create it as the "
            f"tables' owner: {statement.as_string(cur)}"
        ) from exc
    return True


def _action_problems(name: str, published: tuple[bool, ...]) -> list[str]:
    lacking = [a for a, on in zip(_ACTIONS, published, strict=True) if not on]
    if not lacking:
        return []
    return [
        f"publication {name!r} does not publish {', '.join(lacking)}; "
        f"run: ALTER PUBLICATION {name} SET (publish = 'insert, update, delete, truncate')"
    ]


def _table_problems(cur: Any, name: str) -> list[str]:
    cur.execute(
        "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
        (name,),
    )
    published = {r[0] for r in cur.fetchall()}
    # a missing tenant table is added by capture, with its rows (see the top)
    missing = [t for t in captured_tables(cur, per_schema=False) if t not in published]
    problems = []
    if missing:
        problems.append(
            f"publication {name!r} lacks captured tables {', '.join(missing)}; "
            f"run: ALTER PUBLICATION {name} ADD TABLE {', '.join(missing)}"
        )
    return problems + _filter_problems(cur, name)


def _filter_problems(cur: Any, name: str) -> list[str]:
    """Row filters and column lists (PostgreSQL 15+) would drop rows or columns silently."""
    cur.execute("SELECT current_setting('server_version_num')::int >= 150000")
    if not cur.fetchone()[0]:
        return []
    cur.execute(
        "SELECT p.schemaname || '.' || p.tablename FROM pg_publication_tables p "
        "JOIN pg_class c ON c.oid = to_regclass(quote_ident(p.schemaname) || '.' || "
        "quote_ident(p.tablename)) "
        "WHERE p.pubname = %s AND (p.rowfilter IS NOT NULL OR cardinality(p.attnames) <> "
        "(SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attgenerated = ''))",
        (name,),
    )
    filtered_names = {r[0] for r in cur.fetchall()}
    captured = captured_tables(cur)
    filtered = sorted(set(captured) & filtered_names)
    if not filtered:
        return []
    tables = ", ".join(filtered)
    return [
        f"publication {name!r} filters rows or columns of {tables}; capture needs them whole: "
        f"run: ALTER PUBLICATION {name} SET TABLE {', '.join(captured)}"
    ]
