"""A fetched batch's events decoded, transformed and encoded column-wise. Pure.

The per-event path (fastavro decode, processors/transforms.py, fastavro encode) costs
~40 us an event; a batch of one writer schema is decoded into columns by polars
(sluiceway/common/avro_batch.py, as the sink does), transformed with polars expressions that mirror
transforms.py function by function, and encoded column-wise (sluiceway/common/avro_encode.py).
Its outputs are exactly the per-event path's (tests/unit/test_processor_batch.py runs
random batches through both).

Whatever the batch path cannot decode or doubts (a corrupt or unknown value, an event that
fails validation, an id that remap would overflow, a type it does not encode) makes
``BatchPath.transform`` return None: the caller then takes the per-event path for the
whole batch, which dead-letters each invalid event alone with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import polars as pl
from polars.exceptions import PanicException, PolarsError

from sluiceway.common.avro_batch import BatchDecoder, decodable
from sluiceway.common.avro_encode import ColumnEncoder, UnencodableError, UnsupportedSchemaError
from sluiceway.common.codec import HEADER_LEN, Codec, EventSchema, plain_schema
from sluiceway.common.entities import id_columns, updated_column
from sluiceway.common.run_schema import run_event_schema, run_record_fields
from sluiceway.common.spec import RunSpec
from sluiceway.processors.opt_out import OptedOut
from sluiceway.processors.transforms import MASK, id_kinds, pii_hash

# Below this many events the per-event path is as fast: polars has a fixed cost per call.
MIN_BATCH = 32
INT64_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Avro types whose polars values print as fastavro's do, so pii_hash hashes the same text.
HASHABLE = frozenset({"string", "long", "int", "boolean", "double"})

Output = tuple[bytes | None, bytes | None]


class DoubtError(Exception):
    """The batch holds something only the per-event path handles faithfully."""


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def in_scope_rows(frame: pl.DataFrame, entity: str, spec: RunSpec) -> pl.Series:
    """transforms.in_scope per row of ``entity``: selected tenant and entity, changed at/after
    from_date by the entity's own ``updated`` column."""
    keep = pl.col("tenant_id").is_in(spec.tenants) & pl.col("entity").is_in(spec.entities)
    column = updated_column(entity)
    if spec.from_date is not None and column is not None:
        after = pl.col("after")
        # A delete has no row, so its commit time stands in for the row's update time.
        updated = after.struct.field(column)
        moment = pl.when(after.is_null()).then(pl.col("source_ts")).otherwise(updated)
        # a NULL update time compares to null: fill_null leaves the row out, as in_scope does
        keep &= (moment.cast(pl.Int64) >= _micros(spec.from_date)).fill_null(False)
    return frame.select(keep.alias("keep")).to_series()


def opted_out_rows(frame: pl.DataFrame, entity: str, spec: RunSpec, opted: OptedOut) -> pl.Series:
    """transforms.opted_out per row: the same verdict, asked of the same values."""
    cascade = opted.cascade
    if not spec.opt_out or cascade is None or entity not in cascade.keys:
        return pl.Series([False] * frame.height)
    after = pl.col("after")
    columns = cascade.columns(entity)
    fields = [after.struct.field(c).alias(c) for c in columns]
    rows = frame.select(pl.when(after.is_not_null()).then(pl.struct(fields)).alias("row"))
    tenants, ids = frame["tenant_id"].to_list(), frame["entity_id"].to_list()
    verdicts = [
        opted.holds(entity, tenant, entity_id, row)
        for tenant, entity_id, row in zip(tenants, ids, rows["row"].to_list(), strict=True)
    ]
    return pl.Series(verdicts, dtype=pl.Boolean)


def redacted_after(frame: pl.DataFrame, entity: str, spec: RunSpec) -> pl.Expr:
    """transforms.project then transforms.redact, as the new ``after`` column."""
    rules = spec.pii_rules(entity)
    after = pl.col("after")
    fields: list[pl.Expr] = []
    row = frame.schema["after"]  # the writer schema's columns: a version may add or drop some
    known = tuple(f.name for f in row.fields) if isinstance(row, pl.Struct) else None
    for column in spec.columns(entity, known):
        rule, value = rules.get(column), after.struct.field(column)
        if rule == "drop":
            continue
        if rule == "hash":
            raw = frame.select(value).to_series().to_list()
            hashed = [None if v is None else pii_hash(v, spec) for v in raw]
            value = pl.lit(pl.Series(hashed, dtype=pl.String))
        elif rule == "mask":
            value = pl.when(value.is_not_null()).then(pl.lit(MASK))
        fields.append(value.alias(column))
    return pl.when(after.is_not_null()).then(pl.struct(fields)).alias("after")


def remapped(frame: pl.DataFrame, entity: str, spec: RunSpec) -> pl.DataFrame:
    """transforms.remap: the target tenant, every id and unredacted reference offset alike."""
    if spec.remap is None:
        return frame
    offset, rules = spec.remap.id_offset, spec.pii_rules(entity)
    after = frame.schema["after"]
    kept = {f.name for f in after.fields} if isinstance(after, pl.Struct) else set()
    moved = [c for c in id_columns(entity) if c in kept and c not in rules]
    kinds = id_kinds(entity)
    if "key" in frame.columns or any(kinds[c] != "integer" for c in moved):
        raise DoubtError("uuid and composite ids are remapped by the per-event path")
    ids = [pl.col("entity_id").max(), *(pl.col("after").struct.field(c).max() for c in moved)]
    highest = frame.select(pl.max_horizontal(ids)).item()
    if highest is not None and highest > INT64_MAX - offset:
        raise DoubtError("remap would take an id past int64; the per-event path rejects it")
    row = pl.col("after")
    shifted = row.struct.with_fields(*(pl.field(c) + offset for c in moved))
    return frame.with_columns(
        pl.lit(spec.remap.tenant).alias("tenant_id"),
        pl.col("entity_id") + offset,
        pl.when(row.is_not_null()).then(shifted).alias("after"),
    )


def transform_frame(
    frame: pl.DataFrame, entity: str, spec: RunSpec, opted: OptedOut
) -> pl.DataFrame:
    """transforms.transform for every row of ``frame``; rows it leaves out are dropped."""
    keep = in_scope_rows(frame, entity, spec) & ~opted_out_rows(frame, entity, spec, opted)
    frame = frame.filter(keep)
    frame = frame.with_columns(redacted_after(frame, entity, spec))
    return remapped(frame, entity, spec)


def output_keys(frame: pl.DataFrame) -> list[bytes]:
    """transforms.output_key per row: ``<tenant>/<entity_id>`` after remap."""
    key = pl.col("tenant_id") + "/" + pl.col("entity_id").cast(pl.String)
    keys: list[bytes] = frame.select(key.cast(pl.Binary)).to_series().to_list()
    return keys


def check_valid(frame: pl.DataFrame, entity: str, entities: frozenset[str]) -> None:
    """transforms.validate for every row, the key check aside (the decoder made it)."""
    if entity not in entities:
        raise DoubtError(f"entity {entity!r} not in this run")
    bad = (pl.col("entity") != entity) | ((pl.col("op") != "d") & pl.col("after").is_null())
    if frame.select(bad.any()).item():
        raise DoubtError("an event fails validation")


def _hashable(schema: EventSchema, spec: RunSpec) -> bool:
    """Whether every hashed column's values stringify alike from polars and fastavro."""
    rules = spec.pii_rules(schema.entity)
    for field in plain_schema(schema.record)["fields"]:
        if rules.get(field["name"]) != "hash":
            continue
        kinds = field["type"] if isinstance(field["type"], list) else [field["type"]]
        # a logical type (a dict) prints differently: fastavro's datetime.timezone.utc vs
        # polars' zoneinfo UTC would be the same text today, but nothing holds them to it
        if any(k != "null" and (not isinstance(k, str) or k not in HASHABLE) for k in kinds):
            return False
    return True


def _encoder_of(writer: EventSchema, spec: RunSpec, opted: OptedOut) -> ColumnEncoder | None:
    """The run schema's encoder for events of ``writer``; None: the per-event path."""
    if not _hashable(writer, spec) or not _batchable(writer, opted):
        return None
    try:
        return ColumnEncoder(run_event_schema(writer, spec))
    except UnsupportedSchemaError:
        return None


def _same_body(writer: EventSchema, spec: RunSpec) -> bytes | None:
    """The run schema's header when the run keeps the writer's events as they are (nothing
    projected away, redacted or remapped): an output is then the input's body under that
    header. Avro's binary form has no names in it, so the bytes are what encoding the
    decoded event again would give, without the decoding into Python and encoding back."""
    if spec.remap is not None:
        return None
    fields = plain_schema(writer.record)["fields"]
    # a hashed or masked nullable string keeps its field as it was (the redacted type is
    # ["null", "string"] too), so equal fields alone do not prove that no rule applies
    rules = spec.pii_rules(writer.entity)
    if any(f["name"] in rules for f in fields):
        return None
    if run_record_fields(writer, spec) != fields:
        return None
    return run_event_schema(writer, spec).header


def _judgeable(writer: EventSchema, opted: OptedOut) -> bool:
    """Whether the columns an opt-out verdict reads stringify alike from polars and fastavro
    (processors/opt_out.py compares their text forms)."""
    cascade = opted.cascade
    if not opted.values or cascade is None or writer.entity not in cascade.keys:
        return True
    read = set(cascade.columns(writer.entity))
    for field in plain_schema(writer.record)["fields"]:
        kinds = field["type"] if isinstance(field["type"], list) else [field["type"]]
        if field["name"] in read and any(
            k != "null" and (not isinstance(k, str) or k not in HASHABLE) for k in kinds
        ):
            return False
    return True


def _batchable(writer: EventSchema, opted: OptedOut) -> bool:
    # a type polars cannot read (sluiceway/common/avro_batch.py): not even tried
    return _judgeable(writer, opted) and decodable(plain_schema(writer.record))


class BatchPath:
    """The batch path of one run: what the run's worker hands each fetched batch to."""

    def __init__(
        self, spec: RunSpec, codec: Codec, run_schemas: dict[str, EventSchema],
        opted: OptedOut, full: bool,
    ) -> None:  # fmt: skip
        self.spec, self.codec, self.opted, self.full = spec, codec, opted, full
        self.decoder = BatchDecoder()
        self.encoders: dict[str, ColumnEncoder] = {}
        self.versions: dict[bytes, ColumnEncoder | None] = {}  # by writer header
        self.same: dict[bytes, bytes | None] = {}  # writer header -> _same_body's
        for entity, schema in run_schemas.items():
            writer = codec.schemas[entity]
            if not _hashable(writer, spec) or not _batchable(writer, opted):
                continue  # this entity's events take the per-event path
            try:
                self.encoders[entity] = ColumnEncoder(schema)
            except UnsupportedSchemaError:
                continue

    def transform(
        self, keys: Sequence[bytes | None], values: Sequence[bytes], entities: frozenset[str]
    ) -> list[Output] | None:
        """The outputs of a batch of wanted records in order, or None to go event by event."""
        if len(values) < MIN_BATCH:
            return None
        schema = self.codec.schema_of(values[0])
        if schema is None:
            return None
        same = self._same(schema)
        # a run that keeps its events as they are encodes nothing: any column type will do
        encoder = self._encoder(schema) if same is None else None
        if same is None and encoder is None:
            return None
        frame = self.decoder.decode(schema, values, keys)
        if frame is None:
            return None
        if same is not None:  # each row's place in ``values``, before any row is left out
            frame = frame.with_row_index("_at")
        try:
            check_valid(frame, schema.entity, entities)
            if self.full:  # deleted before the cut: not live, so not in a full export
                frame = frame.filter(pl.col("op") != "d")
            if same is not None:
                return self._passed(frame, schema.entity, values, same)
            assert encoder is not None
            return self._outputs(frame, schema.entity, encoder)
        except (DoubtError, UnencodableError, PolarsError, PanicException):
            return None

    def _same(self, schema: EventSchema) -> bytes | None:
        """``_same_body`` of a writer schema whose batches polars decodes and whose opt-out
        verdicts it can judge; else None."""
        if schema.header not in self.same:
            batchable = _batchable(schema, self.opted)
            self.same[schema.header] = _same_body(schema, self.spec) if batchable else None
        return self.same[schema.header]

    def _encoder(self, schema: EventSchema) -> ColumnEncoder | None:
        """The encoder of the run schema for events of writer schema ``schema``: a schema
        version capture wrote after a change of the table has its own (processors/app.py)."""
        if schema.header == self.codec.schemas[schema.entity].header:
            return self.encoders.get(schema.entity)
        if schema.header not in self.versions:
            self.versions[schema.header] = _encoder_of(schema, self.spec, self.opted)
        return self.versions[schema.header]

    def _passed(
        self, frame: pl.DataFrame, entity: str, values: Sequence[bytes], header: bytes
    ) -> list[Output]:
        """The outputs of a run that keeps its events as they are: the rows in scope and not
        opted out, each the input's body under the run schema's header."""
        keep = in_scope_rows(frame, entity, self.spec)
        keep &= ~opted_out_rows(frame, entity, self.spec, self.opted)
        kept = frame.filter(keep)
        bodies = [header + values[at][HEADER_LEN:] for at in kept["_at"].to_list()]
        return list(zip(output_keys(kept), bodies, strict=True))

    def _outputs(self, frame: pl.DataFrame, entity: str, encoder: ColumnEncoder) -> list[Output]:
        out = transform_frame(frame, entity, self.spec, self.opted)
        if out.height == 0:
            return []
        return list(zip(output_keys(out), encoder.encode(out), strict=True))
