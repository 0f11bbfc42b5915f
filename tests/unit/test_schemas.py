"""Every schema parses, and a generated record of each entity survives encode/decode."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from sluiceway.common.codec import HEADER_LEN, MAGIC, Codec, default_schema_dir
from sluiceway.common.errors import InvalidEventError
from tests.catalogs import ENTITIES


def _value(avro_type: Any, rng: random.Random) -> Any:
    if isinstance(avro_type, list):
        branch = rng.choice(avro_type)
        return None if branch == "null" else _value(branch, rng)
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical == "timestamp-micros":
            return datetime(2026, 1, 2, 3, 4, 5, rng.randint(0, 999_999), tzinfo=UTC)
        if logical == "date":
            return date(2026, 1, rng.randint(1, 28))
        return _value(avro_type["type"], rng)
    return {
        "long": lambda: rng.randint(-(2**62), 2**62),
        "int": lambda: rng.randint(-(2**30), 2**30),
        "string": lambda: rng.choice(['a "quoted", value', "line\nbreak", "ünï 日本 🚀", ""]),
        "boolean": lambda: rng.random() < 0.5,
        "double": lambda: rng.random() * 100,
    }[avro_type]()


def generated_event(codec: Codec, entity: str, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    record = codec.schemas[entity].record
    after = {f["name"]: _value(f["type"], rng) for f in record["fields"]}
    return {
        "tenant_id": "tenant-001",
        "entity": entity,
        "entity_id": after["id"],
        "op": rng.choice(["r", "c", "u"]),
        "position": rng.randint(0, 2**62),
        "source_ts": datetime(2026, 11, 22, 1, 2, 3, 456789, tzinfo=UTC),
        "snapshot": False,
        "after": after,
    }


def test_every_schema_file_is_json_with_a_name() -> None:
    files = sorted(default_schema_dir().glob("*.avsc"))
    assert len(files) == 2 * len(ENTITIES)
    for path in files:
        schema = json.loads(Path(path).read_text())
        assert f"{schema['namespace']}.{schema['name']}.avsc" == path.name


@pytest.mark.parametrize("entity", ENTITIES)
@pytest.mark.parametrize("seed", range(5))
def test_round_trip(entity: str, seed: int) -> None:
    codec = Codec()
    event = generated_event(codec, entity, seed)
    data = codec.encode(event)
    assert data[:2] == MAGIC
    assert data[:HEADER_LEN] == codec.schemas[entity].header
    assert codec.decode(data) == event


def test_delete_event_round_trips_without_a_row() -> None:
    codec = Codec()
    event = generated_event(codec, "issue", 1) | {"op": "d", "after": None}
    assert codec.decode(codec.encode(event)) == event


def test_issue_has_data_pipeline_columns() -> None:
    names = {f["name"] for f in Codec().schemas["issue"].record["fields"]}
    expected = {
        "id",
        "key",
        "project_key",
        "issue_type",
        "summary",
        "description",
        "creator_id",
        "reporter_id",
        "assignee_id",
        "status",
        "status_category",
        "priority",
        "resolution",
        "created",
        "updated",
        "due_date",
        "resolution_date",
    }
    assert expected <= names


def test_fingerprints_differ_per_entity() -> None:
    headers = {s.header for s in Codec().schemas.values()}
    assert len(headers) == len(ENTITIES)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "not Avro single-object"),
        (b'{"json": 1}', "not Avro single-object"),
        (MAGIC + b"\x00" * 8 + b"body", "unknown schema fingerprint"),
    ],
)
def test_decode_rejects_bad_values(data: bytes, needle: str) -> None:
    with pytest.raises(InvalidEventError, match=needle):
        Codec().decode(data)


def test_decode_rejects_truncated_body() -> None:
    codec = Codec()
    data = codec.encode(generated_event(codec, "issue", 3))
    with pytest.raises(InvalidEventError, match="cannot decode issue event body"):
        codec.decode(data[: HEADER_LEN + 5])
