"""Record keys other than one integer column, on the help desk example: the second envelope
(typed ``key`` plus the canonical text form), Kafka keys, sink rows and remap."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from sluiceway.common.avro_batch import BatchDecoder, lake_table
from sluiceway.common.catalog import Catalog, load_catalog
from sluiceway.common.codec import Codec, event_key
from sluiceway.common.entities import set_active_catalog
from sluiceway.common.partitioning import partition_for
from sluiceway.common.record_keys import key_text, key_values
from sluiceway.common.resources import example_catalog
from sluiceway.common.spec import parse_spec
from sluiceway.processors.batch import DoubtError, remapped
from sluiceway.processors.transforms import key_tenant, remap, remap_uuid
from sluiceway.producers.events import change_event
from sluiceway.sinks.plan import catalog_types
from sluiceway.sinks.rows import arrow_schema, event_row, plain_values

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TICKET = "5f0c2a4e-1d2b-4c3d-9e8f-001122334455"
CUSTOMER = "00000000-0000-4000-8000-0000000000aa"


@pytest.fixture
def helpdesk() -> Iterator[Catalog]:
    path = example_catalog("helpdesk")
    catalog = load_catalog(path)
    set_active_catalog(catalog, path)
    yield catalog
    set_active_catalog(None)


def _reply(op: str = "u", n: int = 2, parent: int | None = 1) -> dict[str, Any]:
    key = {"ticket_id": TICKET, "n": n}
    row = None
    if op != "d":
        row = {**key, "parent_n": parent, "body": "hi / there", "sent_at": None,
               "internal": False, "updated_at": T0}  # fmt: skip
    return change_event("reply", "7", key_text([TICKET, n]), op, row, 1 << 20, T0, key)


def test_the_canonical_text_form_is_a_json_array_whose_slashes_are_escaped() -> None:
    assert key_text([TICKET, 3]) == f'["{TICKET}","3"]'
    assert key_text(["a/b"]) == '["a\\u002fb"]' and key_values(key_text(["a/b"])) == ["a/b"]
    key = event_key("org/7", key_text(["a/b", 3]))
    assert key == b'org/7/["a\\u002fb","3"]'
    assert key_tenant(key) == "org/7"  # the last "/" separates the tenant
    assert key_tenant(b"org/7/5") == "org/7" and key_tenant(b"org/7/x") is None


def test_a_composite_delete_round_trips_with_its_typed_key(helpdesk: Catalog) -> None:
    codec = Codec()
    event = _reply("d")
    decoded = codec.decode(codec.encode(event))
    assert decoded["entity_id"] == f'["{TICKET}","2"]' and decoded["after"] is None
    assert decoded["key"] == {"ticket_id": uuid.UUID(TICKET), "n": 2}
    columns = list(helpdesk.entity("reply").column_names)
    row = event_row(decoded, "e1", columns, ("ticket_id", "n"))
    assert (row["ticket_id"], row["n"], row["body"], row["_deleted"]) == (TICKET, 2, None, True)


def test_the_batch_sink_path_keeps_a_deletes_key_columns_like_the_per_event_path(
    helpdesk: Catalog,
) -> None:
    codec = Codec()
    schema = codec.schemas["reply"]
    events = [_reply("c", n=1, parent=None), _reply("d", n=1), _reply("u", n=2)]
    values = [codec.encode(e) for e in events]
    keys = [event_key(e["tenant_id"], e["entity_id"]) for e in events]
    frame = BatchDecoder().decode(schema, values, keys)
    assert frame is not None
    columns = [f["name"] for f in schema.record["fields"]]
    lake = arrow_schema(schema.record, catalog_types("reply"))
    batch = lake_table(frame, columns, lake, "e1", ("ticket_id", "n")).to_pylist()
    uuids = plain_values(schema.record)
    one = [event_row(codec.decode(v), "e1", columns, ("ticket_id", "n"), uuids) for v in values]
    assert [(r["ticket_id"], r["n"], r["_deleted"]) for r in batch] == [
        (TICKET, 1, False), (TICKET, 1, True), (TICKET, 2, False),
    ]  # fmt: skip
    assert [{k: r[k] for k in columns} for r in one] == [{k: r[k] for k in columns} for r in batch]


def test_a_text_key_spreads_over_the_tenants_partitions_stably() -> None:
    parts = {partition_for("7", key_text([str(i)]), 12, 4) for i in range(50)}
    assert len(parts) == 4
    assert partition_for("7", key_text(["x"]), 12, 4) == partition_for("7", '["x"]', 12, 4)


def test_remap_maps_uuids_deterministically_and_references_follow(helpdesk: Catalog) -> None:
    spec = parse_spec({"tenants": ["7"], "destination": "/l",
                       "remap": {"tenant": "9", "id_offset": 100}})  # fmt: skip
    moved = remap(_reply(), spec)
    target = remap_uuid(TICKET, "9")
    assert target == str(uuid.uuid5(uuid.UUID(TICKET), "9")) and target != TICKET
    assert remap_uuid(TICKET, "8") != target
    assert moved["key"] == {"ticket_id": target, "n": 102}
    assert moved["entity_id"] == key_text([target, 102]) and moved["tenant_id"] == "9"
    after = moved["after"]
    assert (after["ticket_id"], after["n"], after["parent_n"]) == (target, 102, 101)
    deleted = remap(_reply("d"), spec)
    assert deleted["key"] == moved["key"] and deleted["entity_id"] == moved["entity_id"]
    # the parent ticket's own key maps to the same uuid its replies now reference
    ticket = change_event("ticket", "7", key_text([TICKET]), "d", None, 1, T0, {"id": TICKET})
    assert remap(ticket, spec)["key"] == {"id": target}
    # an integer-keyed entity's uuid references move too; its integer key by the offset
    attachment = {"id": 5, "ticket_id": TICKET, "reply_n": 2, "file_name": "a", "content": None,
                  "size_bytes": 7, "checksum": None}  # fmt: skip
    event = change_event("attachment", "7", 5, "c", attachment, 1, T0)
    out = remap(event, spec)
    assert out["entity_id"] == 105 and "key" not in out
    assert (out["after"]["id"], out["after"]["ticket_id"], out["after"]["reply_n"]) == (
        105, target, 102,
    )  # fmt: skip


def test_the_batch_path_leaves_uuid_and_composite_remaps_to_the_per_event_path(
    helpdesk: Catalog,
) -> None:
    codec = Codec()
    events = [_reply("u", n=i) for i in range(3)]
    values = [codec.encode(e) for e in events]
    keys = [event_key(e["tenant_id"], e["entity_id"]) for e in events]
    frame = BatchDecoder().decode(codec.schemas["reply"], values, keys)
    assert frame is not None
    spec = parse_spec({"tenants": ["7"], "destination": "/l",
                       "remap": {"tenant": "9", "id_offset": 100}})  # fmt: skip
    with pytest.raises(DoubtError):
        remapped(frame, "reply", spec)
