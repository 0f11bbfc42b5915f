"""The snapshot's column path writes exactly the bytes of its per-row path (fastavro), on
random rows of every table it takes, and leaves to the per-row path what it cannot hold."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from sluiceway.common.catalog import load_catalog
from sluiceway.common.codec import Codec, plain_schema
from sluiceway.common.resources import example_catalog
from sluiceway.common.settings import KafkaSettings
from sluiceway.producers.snapshot import encode_rows
from sluiceway.producers.snapshot_columns import ColumnChunks
from sluiceway.producers.tables import CapturedTable, captured_tables

POINT = (0x16B374D848 << 20, datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC))
KAFKA = KafkaSettings(partitions=6, spread=2, tenant_spread={"t/2": 4, "ß-3": 9})
SHARED = {"entity": "issue", "op": "r", "position": 1, "source_ts": 0, "snapshot": True}
TEXT = ["", "plain", "ünïcödé ✓", "tab\tand\nnewline", "x" * 3000, "'quoted' \"both\"", "😀"]


def _value(rng: random.Random, avro: Any) -> Any:
    logical = avro.get("logicalType") if isinstance(avro, dict) else None
    if logical == "timestamp-micros":
        return rng.randint(-(2**62), 2**62)
    if logical == "date":
        return rng.randint(-(2**31), 2**31 - 1)
    if avro == "long":
        return rng.choice(
            [0, -1, 1, 63, 64, -65, 2**63 - 1, -(2**63), rng.randint(-(2**40), 2**40)]
        )
    if avro == "int":
        return rng.randint(-(2**31), 2**31 - 1)
    if avro == "boolean":
        return rng.random() < 0.5
    if avro == "double":
        return rng.choice([0.0, -0.0, 1.5, -2.25e300, math.inf, -math.inf, math.nan, rng.random()])
    assert avro == "string", avro
    return rng.choice(TEXT)


def _nullable(codec: Codec, entity: str) -> set[str]:
    after = next(f for f in plain_schema(codec.schemas[entity].parsed)["fields"]
                 if f["name"] == "after")  # fmt: skip
    record = next(k for k in after["type"] if k != "null")
    return {f["name"] for f in record["fields"] if isinstance(f["type"], list)}


def _rows(rng: random.Random, table: CapturedTable, n: int) -> list[tuple[Any, ...]]:
    nullable = _nullable(Codec(), table.entity)
    rows = []
    for i in range(n):
        values = []
        for name in table.columns:
            pg = table.types[name]
            if name == table.key[0]:
                values.append(rng.choice([i, -i, rng.randint(-(2**62), 2**62)]))  # any sign
            elif name in nullable and rng.random() < 0.2:
                values.append(None)
            else:
                values.append(_value(rng, pg.avro))
        rows.append((rng.choice(["tenant-001", "t/2", "ß-3"]), *values))
    return rows


@pytest.mark.parametrize("entity", sorted(captured_tables(Codec().catalog)))
def test_random_chunks_encode_as_the_per_row_path_does(entity: str) -> None:
    codec = Codec()
    table = captured_tables(codec.catalog)[entity]
    columnar = ColumnChunks.of(codec.schemas[entity], table)
    assert columnar is not None, f"the Jira example's {entity} table takes the column path"
    rng = random.Random(entity)
    for size in (1, 2, 17, 500):
        rows = _rows(rng, table, size)
        assert columnar.encode(rows, [], SHARED, KAFKA) is not None  # the column path took it
        fast = encode_rows(codec, table, POINT, KAFKA, rows, columnar)
        assert fast == encode_rows(codec, table, POINT, KAFKA, rows)  # the per-row path


def test_a_value_its_column_cannot_hold_goes_row_by_row() -> None:
    codec = Codec()
    table = captured_tables(codec.catalog)["comment"]
    columnar = ColumnChunks.of(codec.schemas["comment"], table)
    assert columnar is not None
    rows = _rows(random.Random(1), table, 5)
    body = table.columns.index("body")
    bad = [*rows[:2], (*rows[2][: body + 1], 12345, *rows[2][body + 2 :]), *rows[3:]]
    # an int where the schema holds a string
    assert columnar.encode(bad, [], {**SHARED, "entity": "comment"}, KAFKA) is None
    with pytest.raises(Exception, match=r"body|str|12345"):
        encode_rows(codec, table, POINT, KAFKA, bad, columnar)  # fastavro names the problem


def test_tables_keyed_by_other_than_one_integer_take_the_per_row_path() -> None:
    catalog = load_catalog(example_catalog("helpdesk"))
    codec = Codec(catalog=catalog)
    tables = captured_tables(catalog)
    chosen = {
        name: ColumnChunks.of(codec.schemas[name], t) is not None for name, t in tables.items()
    }
    assert not any(chosen[n] for n, t in tables.items() if not t.integer_key), chosen
