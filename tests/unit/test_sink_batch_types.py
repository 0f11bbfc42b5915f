"""The sink's batch decoder against its one-by-one path on an entity of every type of
docs/types.md (and an array of each): random events, deletes among them.

Both paths build the lake rows the sink writes, with the table schema the sink's plan
derives from the active catalog (a smallint is an ``int16``, a numeric(p,s) a decimal of
that precision). Where the batch path takes a batch, its rows must equal the one-by-one
path's; and it must take the batch for every type the capture writes, or a schema with a
uuid or a numeric would be decoded event by event (~40 us an event) without any test
noticing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sluiceway.common.avro_batch import BatchDecoder, lake_table
from sluiceway.common.entities import set_active_catalog
from sluiceway.sinks.plan import TableSchema, table_schema
from sluiceway.sinks.rows import event_row
from tests.integration.helpdesk_truth import plain
from tests.unit.test_processor_batch_types import TYPES, batches, catalog_of

ETL = "etl-types"
TOO_WIDE = {"numeric(60,20)"}
NO_SHRINK = (
    Phase.explicit,
    Phase.reuse,
    Phase.generate,
)  # a failure shows as drawn: shrinking takes minutes


@pytest.fixture(autouse=True)
def _restore_catalog() -> Iterator[None]:
    yield
    set_active_catalog(None)


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in table.to_pylist()]


def one_by_one(target: TableSchema, codec: Any, values: list[bytes]) -> pa.Table:
    """What the sink writes for events it decodes one at a time (sinks/consume.py)."""
    columns = list(target.columns)
    rows = [event_row(codec.decode(v), ETL, columns, target.key, target.uuids) for v in values]
    return pa.Table.from_pylist(rows, schema=target.schema)


def together(target: TableSchema, codec: Any, values: list[bytes], keys: list[Any]) -> Any:
    """What it writes for the same events decoded together, or None if it would not."""
    if not target.batch:
        return None
    frame = BatchDecoder().decode(codec.schemas["thing"], values, keys)
    if frame is None:
        return None
    return lake_table(frame, target.columns, target.schema, ETL, target.key)


def _smallints(codec: Any, values: list[bytes]) -> list[bytes]:
    """The events with their smallints in range (the drawn Avro ints span int32; capture
    never writes a smallint outside int16, and neither path may take one)."""
    out = []
    for value in values:
        event = codec.decode(value)
        if event["after"] is not None:
            after = event["after"]
            after["c"] = None if after["c"] is None else after["c"] % 65536 - 32768
            after["c_arr"] = after["c_arr"] and [
                None if v is None else v % 65536 - 32768 for v in after["c_arr"]
            ]
        out.append(codec.encode(event))
    return out


@pytest.mark.parametrize("kind", TYPES)
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), phases=NO_SHRINK)
@given(data=st.data())
def test_a_batch_of_every_type_is_decoded_together_into_the_rows_one_by_one_gives(
    kind: str, data: st.DataObject
) -> None:
    catalog, codec = catalog_of(TYPES[kind])
    set_active_catalog(catalog)
    keys, values = data.draw(batches(TYPES[kind]))
    if TYPES[kind] == "smallint":
        values = _smallints(codec, values)
    target = table_schema("thing", codec.schemas["thing"])
    batch = together(target, codec, values, keys)
    if TYPES[kind] in TOO_WIDE:
        assert batch is None  # polars holds 38 digits at most: one by one, not wrong
        return
    assert batch is not None, f"{TYPES[kind]} columns are decoded one event at a time"
    assert batch.schema == target.schema
    assert _rows(batch) == _rows(one_by_one(target, codec, values))
