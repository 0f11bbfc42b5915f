"""The one reconstruction SQL: the command runs it, the README shows it, the tests use it.

``{rows}`` is every row of the full export and its deltas for one table: the command
passes a DuckDB view over the Parquet files, the README a ``read_parquet([...])`` call.
"""

from __future__ import annotations

from sluiceway.tools.reconstruct.errors import BrokenChainError

RECONSTRUCT_SQL = """\
SELECT * EXCLUDE (rn) FROM (
  SELECT *, row_number() OVER (PARTITION BY _tenant_id, id ORDER BY _position DESC) AS rn
  FROM {rows}
) WHERE rn = 1 AND NOT _deleted"""

# What the README puts in place of {rows}; a unit test checks the README shows exactly this.
README_ROWS = (
    "read_parquet(['lake/<full-export folder>/*.parquet', 'lake/<each delta folder>/*.parquet'],"
    "\n                    union_by_name = true)"
)


def reconstruct_sql(rows: str, key: tuple[str, ...] = ("id",)) -> str:
    """The reconstruction over ``rows`` (a table, view or table function), rows told apart
    by ``_tenant_id`` and the record key columns ``key`` (the catalog's; ``id`` in the demo)."""
    text = RECONSTRUCT_SQL.format(rows=rows)
    if key == ("id",):
        return text
    columns = ", ".join(quote_identifier(k) for k in key)
    return text.replace("PARTITION BY _tenant_id, id", f"PARTITION BY _tenant_id, {columns}")


def quote_identifier(name: str) -> str:
    """``name`` as one DuckDB identifier, whatever it holds.

    Column names come from lake files, which are data: inside double quotes with every
    double quote doubled (SQL's rule, which DuckDB follows) no name can end the identifier
    and append SQL of its own. A NUL (which would cut the text short) is refused."""
    if "\0" in name:
        raise BrokenChainError(f"column name {name!r} holds a NUL character; no lake has one")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a DuckDB string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def read_parquet_rows(files: list[str]) -> str:
    """``read_parquet`` over these files, as the README writes it (quotes doubled)."""
    quoted = ", ".join(quote_literal(f) for f in files)
    return f"read_parquet([{quoted}], union_by_name = true)"
