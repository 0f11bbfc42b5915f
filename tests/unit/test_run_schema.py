"""Run-topic schemas: derived from the spec, decodable by fingerprint, distinct per projection."""

from __future__ import annotations

from typing import Any

import pytest
from fastavro import parse_schema
from hypothesis import given, settings

from sluiceway.common.codec import HEADER_LEN, MAGIC, Codec
from sluiceway.common.entities import active_catalog
from sluiceway.common.errors import InvalidEventError
from sluiceway.common.run_schema import run_event_schema, run_event_schemas, run_record_fields
from sluiceway.common.spec import RunSpec, parse_spec
from sluiceway.processors.opt_out import cascade_of, no_opt_out, verdicts_of
from sluiceway.processors.transforms import MASK, transform
from tests.catalogs import ENTITIES
from tests.unit.test_schemas import generated_event
from tests.unit.test_transforms_spec import events, specs


def _spec(**extra: Any) -> RunSpec:
    return parse_spec({"tenants": ["tenant-001"], "destination": "/tmp/lake", **extra})


PII_SPEC: dict[str, Any] = {
    "fields": {"user": ["email_address", "display_name", "account_id", "active"]},
    "pii": {
        "user.email_address": "hash",
        "user.display_name": "mask",
        "user.account_id": "drop",
        "issue.summary": "drop",
        "issue.story_points": "mask",
        "issue.due_date": "hash",
    },
    "pii_secret": "k",
    "remap": {"tenant": "tenant-900", "id_offset": 10},
}


def _names(record: dict[str, Any]) -> list[str]:
    return [f["name"] for f in record["fields"]]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


@pytest.mark.parametrize("entity", ENTITIES)
def test_derived_schemas_parse_and_keep_the_envelope(codec: Codec, entity: str) -> None:
    base = codec.schemas[entity]
    derived = run_event_schema(base, _spec(**PII_SPEC))
    parse_schema(derived.parsed)  # parses again from its own output
    assert derived.entity == entity
    assert derived.header[:2] == MAGIC and len(derived.header) == HEADER_LEN
    assert _names(derived.parsed) == _names(base.parsed)
    assert derived.parsed["name"].startswith("sluiceway.run.")
    assert derived.record["name"].startswith("sluiceway.run.")


def test_dropped_fields_are_absent_and_redacted_ones_are_text(codec: Codec) -> None:
    spec = _spec(**PII_SPEC)
    user = run_event_schema(codec.schemas["user"], spec).record
    assert _names(user) == ["id", "display_name", "email_address", "active"]
    types = {f["name"]: f["type"] for f in user["fields"]}
    assert types["email_address"] == types["display_name"] == ["null", "string"]
    assert types["id"] == "long" and types["active"] == "boolean"
    issue = run_event_schema(codec.schemas["issue"], spec).record
    assert "summary" not in _names(issue)
    assert {f["name"]: f["type"] for f in issue["fields"]}["due_date"] == ["null", "string"]


def test_unprojected_spec_still_gets_its_own_fingerprint(codec: Codec) -> None:
    base = codec.schemas["issue"]
    derived = run_event_schema(base, _spec())
    assert _names(derived.record) == _names(base.record)
    assert derived.header != base.header


def test_fingerprints_are_stable_for_the_same_spec(codec: Codec) -> None:
    first = run_event_schemas(_spec(**PII_SPEC), codec)
    second = run_event_schemas(_spec(**PII_SPEC), Codec())
    assert {e: s.header for e, s in first.items()} == {e: s.header for e, s in second.items()}


def test_fingerprints_differ_per_projection(codec: Codec) -> None:
    specs = [
        _spec(),
        _spec(fields={"issue": ["key"]}),
        _spec(fields={"issue": ["summary"]}),
        _spec(pii={"issue.summary": "drop"}),
        _spec(pii={"issue.story_points": "mask"}),
    ]
    headers = {run_event_schema(codec.schemas["issue"], s).header for s in specs}
    assert len(headers) == len(specs)
    # Differing only in a rule that leaves the record alike (hash vs mask) shares a schema.
    hashed = _spec(pii={"issue.summary": "hash"}, pii_secret="k")
    masked = _spec(pii={"issue.summary": "mask"})
    assert run_record_fields(codec.schemas["issue"], hashed) == run_record_fields(
        codec.schemas["issue"], masked
    )


def test_only_selected_entities_get_a_schema(codec: Codec) -> None:
    assert set(run_event_schemas(_spec(entities=["user", "issue"]), codec)) == {"user", "issue"}


@pytest.mark.parametrize("entity", ENTITIES)
@pytest.mark.parametrize("seed", range(4))
def test_transformed_event_round_trips(codec: Codec, entity: str, seed: int) -> None:
    spec = _spec(**PII_SPEC)
    event = generated_event(codec, entity, seed)
    out = transform(event, spec, no_opt_out())
    assert out is not None
    run_codec = codec.with_schemas(run_event_schemas(spec, codec).values())
    schema = run_event_schemas(spec, codec)[entity]
    data = run_codec.encode_with(schema, out)
    assert data[:HEADER_LEN] == schema.header
    assert run_codec.decode(data) == out
    if entity == "user":
        assert out["after"]["display_name"] == MASK
        assert "account_id" not in run_codec.decode(data)["after"]


def test_delete_round_trips(codec: Codec) -> None:
    spec = _spec(**PII_SPEC)
    schema = run_event_schemas(spec, codec)["issue"]
    deleted = generated_event(codec, "issue", 1) | {"op": "d", "after": None}
    out = transform(deleted, spec, no_opt_out())
    assert out is not None
    assert codec.with_schemas([schema]).decode(codec.encode_with(schema, out)) == out


def test_base_codec_does_not_know_run_schemas(codec: Codec) -> None:
    schema = run_event_schemas(_spec(), codec)["user"]
    data = codec.encode_with(schema, generated_event(codec, "user", 0))
    with pytest.raises(InvalidEventError, match="unknown schema fingerprint"):
        codec.decode(data)
    # with_schemas returns a new codec; the original is untouched.
    assert codec.with_schemas([schema]).decode(data)["entity"] == "user"
    with pytest.raises(InvalidEventError):
        codec.decode(data)


def test_encode_with_rejects_a_row_that_does_not_fit(codec: Codec) -> None:
    spec = _spec(fields={"user": ["active"]})
    schema = run_event_schemas(spec, codec)["user"]
    raw = generated_event(codec, "user", 0)  # untransformed: carries columns the run dropped
    with pytest.raises(InvalidEventError, match="does not fit schema"):
        codec.encode_with(schema, raw)


@settings(max_examples=200, deadline=None)
@given(spec=specs(), event=events())
def test_any_transformed_event_round_trips(spec: RunSpec, event: dict[str, Any]) -> None:
    codec = Codec()
    # the verdicts of a pass that found no rows: the opted-out entity's own field decides
    opted = verdicts_of(cascade_of(active_catalog()), spec.opt_out, [])
    out = transform(event, spec, opted)
    if out is None:
        return
    schemas = run_event_schemas(spec, codec)
    data = codec.encode_with(schemas[out["entity"]], out)
    assert codec.with_schemas(schemas.values()).decode(data) == out
