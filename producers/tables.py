"""What capture reads, per source table: the catalog's entities as the decoders and the
snapshot need them.

A row's tenant is the text form of the entity's tenant column (``tenant_id`` of its change
events and ``_tenant_id`` in the lake), or, for a schema-per-tenant entity, the tenant of
the schema its table lives in (``tenant.schema_pattern``'s first group): such an entity has
one table per matching schema, each a ``CapturedTable`` bound to its schema and tenant
(``relation_table`` finds one by name, so a table created while capture runs is known from
its first change, without reading the database); its id is the entity's record key, the envelope's
``entity_id`` (and ``key``; sluiceway.common.record_keys). Only the catalog's columns are
captured: other columns of the table are ignored, a catalog column the table lacks is
refused by name.
Values arrive as PostgreSQL's text output (pgoutput, and wal2json for most types) and are
parsed by ``sluiceway.common.pgtypes``, so both plugins and the snapshot put the same values
on the change topics.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from psycopg2 import sql

from sluiceway.common.catalog import Catalog, Entity
from sluiceway.common.codec import check_envelope_key
from sluiceway.common.entities import per_catalog
from sluiceway.common.pgtypes import PgType, column_type
from sluiceway.common.record_keys import identity, integer_keyed

# The schema of a table the catalog names without one (as ``to_regclass`` would find it
# with the default search path).
DEFAULT_SCHEMA = "public"
# A value of this Python type is already what the parser would return (wal2json hands
# integers and booleans as JSON, pgoutput hands text; the text PostgreSQL prints of a
# type carried as an Avro string is that string): the parser is skipped.
_READY: dict[str, type] = {"int": int, "long": int, "boolean": bool, "string": str}
Parser = Callable[[str], Any]


def _ready_type(pg: PgType) -> type | None:
    return _READY.get(pg.avro) if isinstance(pg.avro, str) else None


@dataclass(frozen=True)
class CapturedTable:
    """One entity's source table, as capture reads it."""

    entity: str
    schema: str
    name: str
    tenant: str | None
    """The tenant column; None for a schema-per-tenant entity (see ``tenant_id``)."""
    key: tuple[str, ...]
    """The record key columns (the key without the tenant column)."""
    integer_key: bool
    """Whether the record key is one integer column (the first envelope)."""
    columns: tuple[str, ...]
    """The catalog's columns, in catalog order (the tenant column is not among them)."""
    types: dict[str, PgType]
    fast: dict[str, tuple[type | None, Parser]]
    """Per column, tenant included: a Python type that needs no parsing, and the parser."""
    blank_padded: frozenset[str] = frozenset()
    """Columns of type character(n) (or a domain over it), whose ``::text`` cast drops the
    padding their output (what the decoders read) keeps."""
    tenant_id: str | None = None
    """A schema-per-tenant table's tenant (from its schema); None for a tenant column, and
    in an entity's unbound table (``schema`` empty) until ``bind`` names the schema."""

    @property
    def tenant_columns(self) -> tuple[str, ...]:
        """The tenant column, when the row carries its tenant."""
        return () if self.tenant is None else (self.tenant,)

    @property
    def row_key(self) -> tuple[str, ...]:
        """The columns that find one row in the table: the tenant column, the record key."""
        return (*self.tenant_columns, *self.key)

    def tenant_of(self, values: dict[str, Any]) -> Any:
        """The tenant of a row's ``values`` (the column's text, or the schema's tenant)."""
        return self.tenant_id if self.tenant is None else values.get(self.tenant)

    @property
    def per_schema(self) -> bool:
        return self.tenant is None

    def identity(self, values: dict[str, Any]) -> tuple[int | str, dict[str, Any] | None]:
        """The event's ``entity_id`` and ``key`` of a row (or a delete's key) ``values``."""
        return identity(self.key, self.integer_key, values)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def label(self) -> str:
        """The table's name in checkpoints and metrics: the bare name in ``public`` (as
        before tables could live elsewhere, so earlier checkpoints still resume)."""
        return self.name if self.schema == DEFAULT_SCHEMA else self.qualified

    def parse(self, name: str, value: Any) -> Any:
        """A non-NULL captured value (text, or a JSON scalar from wal2json) -> its Avro value."""
        ready, parser = self.fast[name]
        kind = type(value)
        if kind is ready:
            return value
        if kind is not str:
            value = text_form(value)
        return parser(value)


def text_form(value: Any) -> str:
    """A JSON scalar as PostgreSQL prints it (wal2json sends booleans and integers as JSON)."""
    if value is True:
        return "t"
    if value is False:
        return "f"
    return str(value)


def _captured(catalog: Catalog, name: str, entity: Entity) -> CapturedTable:
    tenant = entity.tenant.column
    check_envelope_key(catalog, name)
    types = {c.name: column_type(c, catalog.types) for c in entity.columns}
    fast: dict[str, tuple[type | None, Parser]] = {
        c: (_ready_type(pg), pg.parse) for c, pg in types.items()
    }
    if tenant is not None:
        fast[tenant] = (str, str)
    padded = frozenset(c.name for c in entity.columns if _blank_padded(c.type, catalog))
    return CapturedTable(
        entity=name,
        schema="" if tenant is None else entity.schema_name or DEFAULT_SCHEMA,
        name=entity.table_name,
        tenant=tenant,
        key=entity.record_key,
        integer_key=integer_keyed(catalog, name),
        columns=entity.column_names,
        types=types,
        fast=fast,
        blank_padded=padded,
    )


def as_text(name: str, blank_padded: bool) -> sql.Composable:
    """A column as its text output, for a query sent with parameters: ``::text``, except
    for character(n), whose cast drops the padding its output (what pgoutput and wal2json
    send) keeps."""
    column = sql.Identifier(name)
    if blank_padded:
        return sql.SQL("CASE WHEN {0} IS NULL THEN NULL ELSE format('%%s', {0}) END").format(column)
    return sql.SQL("{}::text").format(column)


_BPCHAR = re.compile(r"(?:character|char|bpchar)(?:\(\d+\))?", re.IGNORECASE)


def _blank_padded(type_name: str, catalog: Catalog) -> bool:
    seen: set[str] = set()
    while type_name in catalog.types and type_name not in seen:
        seen.add(type_name)
        user = catalog.types[type_name]
        if user.kind != "domain" or user.base is None:
            return False
        type_name = user.base.strip()
    return bool(_BPCHAR.fullmatch(type_name.strip()))


def captured_table(catalog: Catalog, name: str) -> CapturedTable:
    """Entity ``name``'s table; SourceSchemaError when capture cannot read it."""
    return _captured(catalog, name, catalog.entity(name))


@per_catalog
def captured_tables(catalog: Catalog) -> dict[str, CapturedTable]:
    """Every entity's table, by entity name; an entity capture cannot read is refused with
    one line naming it."""
    return {name: _captured(catalog, name, e) for name, e in catalog.entities.items()}


@per_catalog
def tables_by_relation(catalog: Catalog) -> dict[tuple[str, str], CapturedTable]:
    """Every table of an entity with a tenant column by (schema, table name)."""
    return {(t.schema, t.name): t for t in captured_tables(catalog).values() if not t.per_schema}


@per_catalog
def per_schema_tables(catalog: Catalog) -> dict[str, list[CapturedTable]]:
    """The unbound tables of the schema-per-tenant entities, by table name."""
    found: dict[str, list[CapturedTable]] = {}
    for table in captured_tables(catalog).values():
        if table.per_schema:
            found.setdefault(table.name, []).append(table)
    return found


def bind(table: CapturedTable, schema: str, catalog: Catalog) -> CapturedTable | None:
    """A schema-per-tenant entity's ``table`` in ``schema``; None when the schema does not
    match the entity's pattern. A table with a tenant column is returned as it is."""
    if not table.per_schema:
        return table
    tenant = catalog.entity(table.entity).tenant.tenant_of_schema(schema)
    return None if tenant is None else replace(table, schema=schema, tenant_id=tenant)


def relation_table(catalog: Catalog, schema: str, name: str) -> CapturedTable | None:
    """The captured table at ``schema.name`` as the decoders meet it; None when the catalog
    does not capture it. Pure: a tenant schema created a moment ago is known already."""
    found = tables_by_relation(catalog).get((schema, name))
    if found is not None:
        return found
    for table in per_schema_tables(catalog).get(name, ()):
        bound = bind(table, schema, catalog)
        if bound is not None:
            return bound
    return None
