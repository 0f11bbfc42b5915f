"""Each rule of the source-schema check, on its own."""

from __future__ import annotations

from sluiceway.common.codec import Codec
from sluiceway.producers.schema_check import _expected, table_problems

EXPECTED = _expected(Codec(), "comment")


def test_a_table_shaped_as_the_schema_passes() -> None:
    assert table_problems("comments", EXPECTED, dict(EXPECTED), ("tenant_id", "id")) == []


def test_missing_table() -> None:
    (problem,) = table_problems("comments", EXPECTED, {}, ())
    assert problem == "table comments does not exist (create it with: sluiceway source seed)"


def test_missing_or_other_primary_key() -> None:
    assert table_problems("comments", EXPECTED, dict(EXPECTED), ()) == [
        "table comments has primary key none; expected (tenant_id, id)"
    ]
    assert table_problems("comments", EXPECTED, dict(EXPECTED), ("id",)) == [
        "table comments has primary key (id); expected (tenant_id, id)"
    ]


def test_unsupported_type_extra_and_missing_columns_are_each_named() -> None:
    actual = dict(EXPECTED) | {"body": "jsonb", "mood": "text"}
    del actual["updated"]
    problems = table_problems("comments", EXPECTED, actual, ("tenant_id", "id"))
    assert problems == [
        "column comments.body has unsupported type jsonb; expected text",
        "column comments.mood (text) is not in the Avro schema",
        "column comments.updated is missing; expected timestamp with time zone",
    ]


def test_expected_types_use_the_catalog_names() -> None:
    assert EXPECTED["tenant_id"] == "text"
    assert EXPECTED["id"] == "bigint"
    assert EXPECTED["created"] == "timestamp with time zone"
