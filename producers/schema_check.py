"""Checking that the source tables are shaped as the catalog says, before capturing.

Capture maps columns to the catalog's by name and type; a table it cannot capture fully
and faithfully is refused up front, naming the table, column or key, rather than found
out row by row while streaming. A catalog column the table dropped, or whose type it
widened, while capture ran is not refused: the table's schema version carries it
(``producers/schema_evolution.py``), as it did before the restart.
"""

from __future__ import annotations

from typing import Any

from sluiceway.common.catalog import Catalog
from sluiceway.common.catalog_check import catalog_problems
from sluiceway.common.codec import Codec
from sluiceway.common.pg_catalog import read_tables
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.schema_evolution import UncarriedChangeError, live_version
from sluiceway.producers.tables import captured_tables
from sluiceway.producers.tenant_tables import live_tables


def check_source_schema(conn: Any, codec: Codec, carry_versions: bool = True) -> None:
    """Raise SourceSchemaError listing every way the live tables differ from the catalog
    (``sluiceway check``'s comparison) that no schema version carries (none, unless
    ``carry_versions``), one line, before anything is read."""
    captured_tables(codec.catalog)  # an entity capture cannot read is refused first
    problems = catalog_problems(conn, codec.catalog)
    carried = carried_columns(conn, codec.catalog) if problems and carry_versions else set()
    conn.rollback()
    problems = [
        p
        for p in problems
        if p.split(": ", 1)[0] not in carried
        and not _no_tenant_yet(p)
        and not _tenant_table_not_yet(codec.catalog, p)
    ]
    if problems:
        raise SourceSchemaError("source tables differ from the catalog: " + "; ".join(problems))


def _no_tenant_yet(problem: str) -> bool:
    """A schema-per-tenant entity without tenants yet (a new deployment) is no problem for
    capture: its first tenant's tables are found while it runs, like any new tenant's."""
    return problem.startswith("entity ") and ": no schema matches " in problem


def _tenant_table_not_yet(catalog: Catalog, problem: str) -> bool:
    """Neither is a tenant schema that lacks one entity's table (a tenant being set up, or
    a table rolled out tenant by tenant): the table is found when it is created."""
    where, _, what = problem.partition(": ")
    if what != "table does not exist":
        return False
    return any(
        schema != where
        and entity.tenant.schema_pattern is not None
        and entity.tenant.tenant_of_schema(schema) is not None
        for entity in catalog.entities.values()
        for schema in [where.removesuffix(f".{entity.table_name}")]
    )


def carried_columns(conn: Any, catalog: Catalog) -> set[str]:
    """``schema.table.column`` of each catalog column a table dropped or widened, where the
    table's live columns make a schema version of its entity."""
    carried: set[str] = set()
    with conn.cursor() as cur:
        captured = live_tables(cur, catalog)  # a schema-per-tenant entity's in each schema
    live = {
        (t.schema, t.name): t
        for t in read_tables(conn, sorted({t.schema for t in captured})).values()
    }
    for table in captured:
        found = live.get((table.schema, table.name))
        if found is None:
            continue
        columns = [(c.name, c.type) for c in found.columns if not c.generated]
        try:
            live_version(catalog, table.entity, columns)
        except UncarriedChangeError:
            continue
        types = dict(columns)
        carried |= {
            f"{found.qualified}.{c.name}"
            for c in catalog.entity(table.entity).columns
            if types.get(c.name) != c.type
        }
    return carried
