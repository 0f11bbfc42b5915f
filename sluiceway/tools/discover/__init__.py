"""``sluiceway source discover``: an entity catalog written from a live database's own catalog,
for the user to edit, with a list of what could not be mapped and why."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sluiceway.common.catalog import Tenant
from sluiceway.common.errors import ConfigError
from sluiceway.common.pg_catalog import UserTypes, read_tables, user_schemas
from sluiceway.tools.discover.build import (
    Discovery,
    NothingFoundError,
    Rule,
    Unmapped,
    by_schema_pattern,
    by_tenant_column,
)

__all__ = ["Discovery", "NothingFoundError", "Rule", "Unmapped", "discover"]


def discover(
    conn: Any, rule: Rule, *, schemas: Sequence[str] = (), unmapped: Unmapped
) -> Discovery:
    """The catalog of the tables ``rule`` selects in ``schemas`` (default: every schema but
    PostgreSQL's own); ``unmapped`` says why a column type cannot be captured."""
    if (rule.tenant_column is None) == (rule.schema_pattern is None):
        raise ConfigError("give exactly one of --tenant-column C and --schema-per-tenant PATTERN")
    present = user_schemas(conn)
    unknown = [s for s in schemas if s not in present]
    if unknown:
        raise ConfigError(
            f"--schemas names {', '.join(map(repr, unknown))}, not in the database; "
            f"it has {', '.join(present) or 'no schema of its own'}"
        )
    chosen = list(schemas) or present
    types = UserTypes(conn)
    if rule.schema_pattern is None:
        return by_tenant_column(read_tables(conn, chosen).values(), rule, types.used_by, unmapped)
    tenant_schemas = _tenant_schemas(rule.schema_pattern, chosen)
    tables = read_tables(conn, tenant_schemas).values()
    return by_schema_pattern(tables, tenant_schemas, rule, types.used_by, unmapped)


def _tenant_schemas(pattern: str, schemas: list[str]) -> list[str]:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"--schema-per-tenant {pattern!r} is not a regular expression ({exc}); "
            "expected e.g. 'tenant_(.*)'"
        ) from None
    rule = Tenant(schema_pattern=pattern)
    found = [s for s in schemas if rule.tenant_of_schema(s) is not None]
    if not found:
        raise ConfigError(
            f"--schema-per-tenant {pattern!r} matches no schema (it must match a whole name); "
            f"the database has {', '.join(schemas) or 'no schema of its own'}"
        )
    return found
