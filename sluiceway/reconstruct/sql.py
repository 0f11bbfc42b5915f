"""The one reconstruction SQL: the command runs it, the README shows it, the tests use it.

``{rows}`` is every row of the full export and its deltas for one table: the command
passes a DuckDB view over the Parquet files, the README a ``read_parquet([...])`` call.
"""

from __future__ import annotations

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


def reconstruct_sql(rows: str) -> str:
    """The reconstruction over ``rows`` (a table, view or table function)."""
    return RECONSTRUCT_SQL.format(rows=rows)


def read_parquet_rows(files: list[str]) -> str:
    """``read_parquet`` over these files, as the README writes it (quotes doubled)."""
    quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"read_parquet([{quoted}], union_by_name = true)"
