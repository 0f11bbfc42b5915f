"""What PostgreSQL's own catalog says about a database's tables, read in a few queries.

Only ``pg_catalog`` is read (never the tables' rows), so a role that may only connect sees
enough. Types are printed by ``format_type``, the form the entity catalog stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluiceway.common.catalog import UserType

_USER_SCHEMAS = """
SELECT nspname FROM pg_namespace
WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND left(nspname, 3) <> 'pg_'
ORDER BY nspname
"""

_TABLES = """
SELECT c.oid, n.nspname, c.relname, coalesce(obj_description(c.oid, 'pg_class'), ''),
       c.relreplident
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
ORDER BY n.nspname, c.relname
"""

_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       coalesce(col_description(a.attrelid, a.attnum), ''), a.attgenerated <> '',
       a.atttypid IN ('timestamp'::regtype, 'timestamptz'::regtype, 'date'::regtype),
       a.atttypid
FROM pg_attribute a
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

# key columns of the primary key and of the replica identity index, in index order
# (INCLUDE columns are not part of either key)
_KEYS = """
SELECT i.indrelid, i.indisprimary, i.indisreplident,
       ARRAY(SELECT a.attname
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)
FROM pg_index i
WHERE i.indrelid = ANY(%s) AND (i.indisprimary OR i.indisreplident)
"""

_FOREIGN_KEYS = """
SELECT c.conname, c.conrelid, c.confrelid, pn.nspname || '.' || p.relname,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord)
FROM pg_constraint c
JOIN pg_class p ON p.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE c.contype = 'f' AND c.conrelid = ANY(%s)
ORDER BY c.conrelid, c.conname
"""

# enums, domains and arrays: what a column's type may be built from
_TYPES = """
SELECT t.oid, format_type(t.oid, NULL), t.typtype, t.typelem, t.typbasetype,
       format_type(t.typbasetype, t.typtypmod),
       ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid
             ORDER BY e.enumsortorder)
FROM pg_type t
WHERE t.typtype IN ('e', 'd') OR t.typcategory = 'A'
"""


@dataclass(frozen=True)
class PgColumn:
    name: str
    type: str
    """As ``format_type`` prints it."""
    not_null: bool
    doc: str
    generated: bool
    temporal: bool
    """A timestamp (with or without time zone) or a date: fit to say when a row changed."""
    type_oid: int


@dataclass(frozen=True)
class PgForeignKey:
    name: str
    child: int
    parent: int
    parent_table: str
    """``schema.table`` of the referenced table, for reports."""
    columns: tuple[str, ...]
    parent_columns: tuple[str, ...]


@dataclass
class PgTable:
    oid: int
    schema: str
    name: str
    doc: str
    replica_identity: str
    """``relreplident``: d(efault: the primary key), n(othing), f(ull) or i(ndex)."""
    columns: list[PgColumn] = field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    identity_index: tuple[str, ...] = ()
    foreign_keys: list[PgForeignKey] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> PgColumn | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class _PgType:
    name: str
    kind: str
    element: int
    base: int
    base_name: str
    labels: tuple[str, ...]


def _rows(conn: Any, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(statement, args)
        return list(cur.fetchall())


def user_schemas(conn: Any) -> list[str]:
    """Every schema but PostgreSQL's own (pg_catalog, information_schema, pg_toast...)."""
    return [name for (name,) in _rows(conn, _USER_SCHEMAS)]


def read_tables(conn: Any, schemas: Sequence[str]) -> dict[int, PgTable]:
    """Every table (partitioned tables, not their partitions) of ``schemas``, by oid, with
    its columns, keys and foreign keys."""
    tables = {
        oid: PgTable(oid, schema, name, doc, ident)
        for oid, schema, name, doc, ident in _rows(conn, _TABLES, list(schemas))
    }
    oids = list(tables)
    for rel, *values in _rows(conn, _COLUMNS, oids):
        tables[rel].columns.append(PgColumn(*values))
    for rel, primary, identity, names in _rows(conn, _KEYS, oids):
        if primary:
            tables[rel].primary_key = tuple(names)
        if identity:
            tables[rel].identity_index = tuple(names)
    for name, child, parent, parent_table, cols, parent_cols in _rows(conn, _FOREIGN_KEYS, oids):
        fk = PgForeignKey(name, child, parent, parent_table, tuple(cols), tuple(parent_cols))
        tables[child].foreign_keys.append(fk)
    return tables


class UserTypes:
    """The enums and domains of a database, and which of them a column's type uses."""

    def __init__(self, conn: Any) -> None:
        self._types = {
            oid: _PgType(name, kind, element, base, base_name, tuple(labels))
            for oid, name, kind, element, base, base_name, labels in _rows(conn, _TYPES)
        }

    def used_by(self, type_oids: Iterable[int]) -> dict[str, UserType]:
        """The enums and domains the given column types are or are built from (arrays of
        them, domains over them), by the name ``format_type`` prints."""
        found: dict[str, UserType] = {}
        pending = list(type_oids)
        while pending:
            found_type = self._types.get(pending.pop())
            if found_type is None:
                continue
            if found_type.kind == "e":
                found[found_type.name] = UserType(kind="enum", values=found_type.labels)
            elif found_type.kind == "d":
                found[found_type.name] = UserType(kind="domain", base=found_type.base_name)
                pending.append(found_type.base)
            else:  # an array: its element may be one of ours
                pending.append(found_type.element)
        return dict(sorted(found.items()))
