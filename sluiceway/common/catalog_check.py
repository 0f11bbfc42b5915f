"""A catalog held against the live database: one line per difference, naming
``schema.table[.column]``, for ``sluiceway check``, capture and seeding."""

from __future__ import annotations

from typing import Any

from sluiceway.common.catalog import Catalog, Entity
from sluiceway.common.pg_catalog import PgTable, UserTypes, read_tables, user_schemas


def catalog_problems(conn: Any, catalog: Catalog) -> list[str]:
    """Every table exists; every captured column exists with the catalog's type and
    nullability; the key is the primary key or covered by the replica identity; the tenant
    column exists with its type; enums and domains are as the catalog says."""
    present = user_schemas(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT current_schema()")
        (default_schema,) = cur.fetchone()
    wanted = {
        name: _schemas(entity, present, default_schema) for name, entity in catalog.entities.items()
    }
    tables = {
        (t.schema, t.name): t
        for t in read_tables(conn, sorted({s for ss in wanted.values() for s in ss})).values()
    }
    types = UserTypes(conn)
    problems: list[str] = []
    for name, entity in catalog.entities.items():
        if not wanted[name]:
            problems.append(f"entity {name}: no schema matches {entity.tenant.schema_pattern!r}")
        for schema in wanted[name]:
            table = tables.get((schema, entity.table_name))
            if table is None:
                problems.append(f"{schema}.{entity.table_name}: table does not exist")
                continue
            problems += _table_problems(entity, table)
            problems += _type_problems(catalog, table, types)
    return list(dict.fromkeys(problems))  # a type used by many tables is named once


def entity_problems(conn: Any, catalog: Catalog, name: str) -> list[str] | None:
    """None when the table of ``name`` (an entity with a tenant column) does not exist,
    else how it differs from the catalog (``[]``: not at all)."""
    entity = catalog.entity(name)
    with conn.cursor() as cur:
        cur.execute("SELECT current_schema()")
        (default_schema,) = cur.fetchone()
    schema = entity.schema_name or default_schema
    found = [t for t in read_tables(conn, [schema]).values() if t.name == entity.table_name]
    if not found:
        return None
    return _table_problems(entity, found[0]) + _type_problems(catalog, found[0], UserTypes(conn))


def _schemas(entity: Entity, present: list[str], default: str) -> list[str]:
    if entity.tenant.schema_pattern is not None:
        return [s for s in present if entity.tenant.tenant_of_schema(s) is not None]
    return [entity.schema_name or default]


def _table_problems(entity: Entity, table: PgTable) -> list[str]:
    where = table.qualified
    problems = []
    for col in entity.columns:
        found = table.column(col.name)
        if found is None:
            problems.append(f"{where}.{col.name}: column does not exist")
        elif found.type != col.type:
            problems.append(
                f"{where}.{col.name}: type is {found.type} in the database, "
                f"{col.type} in the catalog"
            )
        elif found.not_null == col.nullable:
            now, then = ("NOT NULL", "nullable") if found.not_null else ("nullable", "NOT NULL")
            problems.append(f"{where}.{col.name}: {now} in the database, {then} in the catalog")
    tenant = entity.tenant
    if tenant.column is not None:
        found = table.column(tenant.column)
        if found is None:
            problems.append(f"{where}.{tenant.column}: tenant column does not exist")
        elif found.type != tenant.type:
            problems.append(
                f"{where}.{tenant.column}: tenant column is {found.type} in the database, "
                f"{tenant.type} in the catalog"
            )
    return problems + _key_problems(entity, table)


def _key_problems(entity: Entity, table: PgTable) -> list[str]:
    key = set(entity.key)
    if key == set(table.primary_key):
        return []
    if table.replica_identity == "i" and key == set(table.identity_index):
        return []
    if table.replica_identity == "f" and key <= {c.name for c in table.columns}:
        return []
    identity = {
        "d": f"default: the primary key {list(table.primary_key)}"
        if table.primary_key
        else "default, with no primary key",
        "n": "nothing",
        "i": f"index on {list(table.identity_index)}",
    }.get(table.replica_identity, "full")
    return [
        f"{table.qualified}: key {list(entity.key)} is neither the primary key "
        f"{list(table.primary_key) if table.primary_key else '(none)'} nor covered by "
        f"the replica identity ({identity})"
    ]


def _type_problems(catalog: Catalog, table: PgTable, types: UserTypes) -> list[str]:
    live = types.used_by(c.type_oid for c in table.columns)
    return [
        f"type {name}: {live[name].model_dump(exclude_defaults=True)} in the database, "
        f"{declared.model_dump(exclude_defaults=True)} in the catalog"
        for name, declared in catalog.types.items()
        if name in live and live[name] != declared
    ]
