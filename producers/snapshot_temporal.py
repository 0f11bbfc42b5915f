"""timestamptz and date columns in the snapshot: read as the integers Avro stores, and
refused, as streaming refuses them, when Avro cannot carry them.

The snapshot reads these columns as integers (microseconds or days since 1970), since
building datetimes only for fastavro to take them apart again costs a tenth of its time.
An integer expression alone would carry what the mapping refuses (docs/types.md): a BC
date or a year after 9999 becomes a number no reader can turn back into a date, and
``infinity`` fails the whole query with PostgreSQL's own error. So the expression gives
such a value as a sentinel that no carried value can be (the type's smallest integer), and
the row is refused with one line naming its table, column and key.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from sluiceway.common.pgtypes import UncarriedValueError
from sluiceway.producers.tables import CapturedTable

# how the snapshot reads the column (snapshot.read_as) -> the value of one Avro cannot carry
UNCARRIED = {"us": -(2**63), "days": -(2**31)}
_CARRIED = "from 0001-01-01 to 9999-12-31 (no infinity, no BC dates)"


def read_expression(how: str, column: sql.Identifier) -> sql.Composable:
    """The select expression of a column read as ``us`` or ``days``."""
    if how == "us":
        low, high = "TIMESTAMPTZ '0001-01-01 00:00:00+00'", "TIMESTAMPTZ '10000-01-01 00:00:00+00'"
        value = "(extract(epoch FROM {0}) * 1000000)::bigint"
    else:
        low, high = "DATE '0001-01-01'", "DATE '10000-01-01'"
        value = "({0} - DATE '1970-01-01')"
    return sql.SQL(
        "CASE WHEN {0} IS NULL THEN NULL "
        f"WHEN {{0}} >= {low} AND {{0}} < {high} THEN {value} "
        f"ELSE {UNCARRIED[how]} END AS {{0}}"
    ).format(column)


def refuse_uncarried(
    table: CapturedTable, tenant: str, values: list[Any], checked: list[tuple[int, str]]
) -> None:
    """Raise when a column read as ``us``/``days`` (``checked``: its place in ``values``, a
    row of ``table.columns``, and how it was read) holds the sentinel."""
    for at, how in checked:
        if values[at] == UNCARRIED[how]:
            kind = "timestamp with time zone" if how == "us" else "date"
            key = (tenant, *(values[table.columns.index(k)] for k in table.key))
            raise UncarriedValueError(
                f"{table.qualified}.{table.columns[at]} of the row keyed {key!r} holds a {kind} "
                f"that cannot be carried exactly; expected a value {_CARRIED}"
            )
