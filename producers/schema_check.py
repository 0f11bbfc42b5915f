"""Checking that the source tables are shaped as the catalog says, before capturing.

Capture maps columns to the catalog's by name and type; a table it cannot capture fully
and faithfully is refused up front, naming the table, column or key, rather than found
out row by row while streaming.
"""

from __future__ import annotations

from typing import Any

from sluiceway.common.catalog_check import catalog_problems
from sluiceway.common.codec import Codec
from sluiceway.producers.errors import SourceSchemaError
from sluiceway.producers.tables import captured_tables


def check_source_schema(conn: Any, codec: Codec) -> None:
    """Raise SourceSchemaError listing every way the live tables differ from the catalog
    (``sluiceway check``'s comparison), one line, before anything is read."""
    captured_tables(codec.catalog)  # an entity capture cannot read is refused first
    problems = catalog_problems(conn, codec.catalog)
    conn.rollback()
    if problems:
        raise SourceSchemaError("source tables differ from the catalog: " + "; ".join(problems))
