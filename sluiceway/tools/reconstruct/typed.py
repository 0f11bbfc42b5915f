"""Reconstructing into PostgreSQL with the catalog's column types.

The rows of a catalog entity go back with the types the source has (``numeric(12,2)``,
``uuid``, ``interval``, arrays...), each value cast as restore casts it
(``sluiceway.common.pgtypes``), so a reconstructed table prints as the source does. Enums and
domains are written as what they are over (an enum as ``text``): the target database need
not have the catalog's types. Tables of only the types COPY's CSV carries exactly keep the
faster COPY path (``write.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from psycopg2 import sql
from psycopg2.extras import execute_values

from sluiceway.common.catalog import UserType
from sluiceway.common.entities import active_catalog
from sluiceway.common.pgtypes import PgType, pg_type

PAGE_ROWS = 1_000


def plain_type(name: str, types: Mapping[str, UserType]) -> str:
    """A catalog type without its enums and domains: an enum is ``text``, a domain its base."""
    name = name.strip()
    array = name.endswith("[]")
    base = name[:-2].strip() if array else name
    seen: set[str] = set()
    while base in types and base not in seen:
        seen.add(base)
        user = types[base]
        base = "text" if user.kind == "enum" else str(user.base).strip()
        if base.endswith("[]"):
            array, base = True, base[:-2].strip()
    return base + ("[]" if array else "")


def catalog_types(table: str) -> dict[str, PgType] | None:
    """Per output column (``tenant_id`` and the entity's columns), its type in the active
    catalog; None when the catalog has no such entity."""
    catalog = active_catalog()
    entity = catalog.entities.get(table)
    if entity is None:
        return None
    found = {"tenant_id": pg_type(plain_type(entity.tenant.type, catalog.types), {})}
    for column in entity.columns:
        found[column.name] = pg_type(plain_type(column.type, catalog.types), {})
    return found


def record_key(table: str) -> tuple[str, ...]:
    """The table's record key columns in the active catalog (``id`` for a table it lacks)."""
    found = active_catalog().entities.get(table)
    return found.record_key if found is not None else ("id",)


def insert_batches(
    cur: Any, name: sql.Composable, batches: pa.RecordBatchReader, types: Mapping[str, PgType]
) -> int:
    """Insert every batch, each catalog column's value cast to its type; the lake's metadata
    columns are sent as they are."""
    names = batches.schema.names
    adapt = [types[n].restore_param if n in types else _same for n in names]
    template = sql.SQL("({})").format(
        sql.SQL(", ").join(
            types[n].restore_placeholder() if n in types else sql.Placeholder() for n in names
        )
    )
    statement = sql.SQL("INSERT INTO {} ({}) VALUES %s").format(
        name, sql.SQL(", ").join(map(sql.Identifier, names))
    )
    text, rows = template.as_string(cur), 0
    for batch in batches:
        values = [
            tuple(a(v) for a, v in zip(adapt, row.values(), strict=True))
            for row in batch.to_pylist()
        ]
        execute_values(cur, statement, values, template=text, page_size=PAGE_ROWS)
        rows += batch.num_rows
    return rows


def _same(value: Any) -> Any:
    return value
