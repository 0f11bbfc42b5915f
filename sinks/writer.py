"""Routes a run's rows to one open file per (table, partition) and rotates them. I/O.

How rows reach a file is the run's format's (``sinks/formats.py``). Parquet: rows wait in
their file's buffer until a row group is full, then are written in as few row groups as
the caps allow (``write_row_groups``): when the next row group would break a cap, the rows
that fit are written, the file is published, and the rest start the next file.

CSV: each row is encoded on arrival, so its exact size is known; the file is published
before a row that would break a cap, through the same rotation policy.
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from sluiceway.lake.errors import RunStateError
from sluiceway.lake.manifest import FileRecord
from sluiceway.lake.storage import Lake
from sluiceway.sinks import formats, metrics, parquet_file, sizing
from sluiceway.sinks.config import SinkSettings
from sluiceway.sinks.formats import Format, PartFile
from sluiceway.sinks.parquet_file import OpenFile
from sluiceway.sinks.rotation import (
    Caps,
    Incoming,
    RotationReason,
    decide,
    fit_rows,
    overflows_alone,
)
from sluiceway.sinks.rows import Row

log = logging.getLogger("sluiceway.sink")

Key = tuple[str, int]  # (table, partition)


@dataclass
class RunWriter:
    lake: Lake
    etl_id: str
    settings: SinkSettings
    clock: Callable[[], float]
    table_dirs: dict[str, str]  # table -> directory relative to the root
    file_format: str = "parquet"  # the run's format (RunRecord.format)
    csv_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> columns
    files: dict[Key, PartFile] = field(default_factory=dict)
    published: list[FileRecord] = field(default_factory=list)
    covered: dict[Key, int] = field(default_factory=dict)  # last offset already published
    fmt: Format = field(init=False)  # the format named file_format

    def __post_init__(self) -> None:
        self.fmt = formats.named(self.file_format, self.etl_id)

    @property
    def caps(self) -> Caps:
        s = self.settings
        return Caps(max_rows=s.max_rows, max_bytes=s.max_bytes, max_age_s=s.max_age_s)

    def adopt(self, records: list[FileRecord]) -> None:
        """Take over files a previous attempt published, so their offsets are skipped."""
        for record in records:
            self.published.append(record)
            key = (record.table, record.partition)
            self.covered[key] = max(self.covered.get(key, -1), record.end_offset)

    def add(
        self, table: str, partition: int, offset: int, schema: pa.Schema, schema_id: str, row: Row
    ) -> int:
        """Buffer one row; returns how many files were published meanwhile."""
        key = (table, partition)
        if offset <= self.covered.get(key, -1):
            return 0  # already in a file published before a restart
        now = self.clock()
        current, published = self._file_for(key, offset, schema, schema_id, now)
        return published + self.fmt.add(self, current, row, offset, now)

    def add_table(
        self,
        table: str,
        partition: int,
        offsets: list[int],
        schema: pa.Schema,
        schema_id: str,
        rows: pa.Table,
    ) -> int:
        """Buffer rows decoded together (formats that take ``batches``: Parquet); ``offsets``
        ascend, one per row. Row groups are cut at ``row_group_rows`` exactly as when rows
        come one by one.
        """
        if not self.fmt.batches:
            raise RunStateError(f"run {self.etl_id} writes {self.fmt.name}: rows come one by one")
        key = (table, partition)
        skip = bisect.bisect_right(offsets, self.covered.get(key, -1))
        if skip:  # already in a file published before a restart
            rows, offsets = rows.slice(skip), offsets[skip:]
        if not offsets:
            return 0
        now = self.clock()
        first, published = self._file_for(key, offsets[0], schema, schema_id, now)
        current: OpenFile | None = formats.as_parquet(first)
        while offsets:
            if current is None:  # the last one was published: the rest start a new file
                current = formats.as_parquet(self._start(key, offsets[0], schema, schema_id, now))
            take = self.settings.row_group_rows - len(current.pending)
            current.pending.extend(rows.slice(0, take), offsets[:take])
            rows, offsets = rows.slice(take), offsets[take:]
            if len(current.pending) >= self.settings.row_group_rows:
                published += self.fmt.flush(self, current, now)
                found = self.files.get(key)  # the same, a restarted one, or none
                current = None if found is None else formats.as_parquet(found)
        return published

    def _file_for(
        self, key: Key, offset: int, schema: pa.Schema, schema_id: str, now: float
    ) -> tuple[PartFile, int]:
        """The open file of ``key`` for a row of ``schema_id`` at ``offset``; a file of
        another schema is written and published first (SCHEMA_CHANGE)."""
        published = 0
        current = self.files.get(key)
        if current is not None and current.state.schema_id != schema_id:
            published += self.fmt.flush(self, current, now)
            current = self.files.get(key)
            if current is not None:
                reason = decide(current.state, Incoming(1, 0, schema_id), now)
                published += self.publish(current, reason or RotationReason.SCHEMA_CHANGE)
                current = None
        if current is None:
            current = self._start(key, offset, schema, schema_id, now)
        return current, published

    def tick(self) -> int:
        """Publish files that have been open longer than max_age_s."""
        now = self.clock()
        published = 0
        for key, f in list(self.files.items()):
            if now - f.state.opened_at < self.settings.max_age_s:
                continue
            published += self.fmt.flush(self, f, now)
            current = self.files.get(key)
            if current is not None and now - current.state.opened_at >= self.settings.max_age_s:
                published += self.publish(current, RotationReason.AGE)
        return published

    def close_partition(
        self, partition: int, reason: RotationReason = RotationReason.RUN_END
    ) -> int:
        """The partition's input has ended (or it moves to another sink): write and publish
        all of its files."""
        published = 0
        for key in [k for k in self.files if k[1] == partition]:
            published += self.fmt.flush(self, self.files[key], self.clock())
            current = self.files.get(key)
            if current is not None:
                published += self.publish(current, reason)
        return published

    def close_all(self) -> int:
        return sum(self.close_partition(p) for p in sorted({k[1] for k in self.files}))

    def abort_all(self) -> None:
        for partition in sorted({k[1] for k in self.files}):
            self.abort_partition(partition)

    def abort_partition(self, partition: int) -> None:
        """Drop the partition's open files unpublished (their rows get read again)."""
        for key in [k for k in self.files if k[1] == partition]:
            self.fmt.abort(self.lake, self.files.pop(key))

    def forget(self, partition: int) -> None:
        """The partition went to another sink: what it publishes is no longer ours to skip."""
        self.abort_partition(partition)
        for key in [k for k in self.covered if k[1] == partition]:
            del self.covered[key]
        self.published = [r for r in self.published if r.partition != partition]

    def open_starts(self) -> dict[int, int]:
        """Smallest first offset of each partition's open files."""
        starts: dict[int, int] = {}
        for (_, partition), f in self.files.items():
            starts[partition] = min(f.start_offset, starts.get(partition, f.start_offset))
        return starts

    def _start(
        self, key: Key, offset: int, schema: pa.Schema, schema_id: str, now: float
    ) -> PartFile:
        table, partition = key
        f = self.fmt.open(self, table, partition, offset, schema, schema_id, now)
        self.files[key] = f
        return f

    def write_row_groups(self, f: OpenFile, rows: pa.Table, offsets: list[int], now: float) -> int:
        """Write buffered Parquet rows as row groups, publishing and restarting the file
        at its caps; returns how many files were published."""
        codec = self.settings.compression
        published = 0
        while rows.num_rows:
            whole = sizing.row_group_bound(rows, codec)
            reason = decide(f.state, Incoming(rows.num_rows, whole.total, f.state.schema_id), now)
            if reason in (RotationReason.AGE, RotationReason.SCHEMA_CHANGE):
                published += self.publish(f, reason)
                f = formats.as_parquet(self.restart(f, offsets[0], now))
                continue
            take = fit_rows(
                f.state, rows.num_rows, functools.partial(_bound, rows, codec=codec, whole=whole)
            )
            if take:
                part = rows.slice(0, take)
                bound = whole if take == rows.num_rows else sizing.row_group_bound(part, codec)
                parquet_file.write_row_group(
                    self.lake, f, part, offsets[take - 1], bound, codec,
                    self.settings.compression_level,
                )  # fmt: skip
                rows, offsets = rows.slice(take), offsets[take:]
            oversize = overflows_alone(f.state)
            if not rows.num_rows and not oversize:
                break
            published += self.publish(f, self._cap_reason(f, rows, codec, oversize, now))
            if rows.num_rows:
                f = formats.as_parquet(self.restart(f, offsets[0], now))
        return published

    def _cap_reason(
        self, f: OpenFile, rest: pa.Table, codec: str, oversize: bool, now: float
    ) -> RotationReason:
        if oversize:
            return self.oversize(f)
        nxt = Incoming(rest.num_rows, _bound(rest, 1, codec=codec, whole=None), f.state.schema_id)
        return decide(f.state, nxt, now) or RotationReason.BYTES

    def oversize(self, f: PartFile) -> RotationReason:
        log.warning(
            "row at offset %d of table=%s partition=%d alone exceeds max_bytes=%d; "
            "written alone in %s",
            f.end_offset, f.table, f.partition, f.state.caps.max_bytes, f.relative,
        )  # fmt: skip
        return RotationReason.BYTES

    def restart(self, old: PartFile, offset: int, now: float) -> PartFile:
        """The next file of ``old``'s table and partition, from ``offset``."""
        key = (old.table, old.partition)
        return self._start(key, offset, old.schema, old.state.schema_id, now)

    def publish(self, f: PartFile, reason: RotationReason) -> int:
        record = self.fmt.publish(self.lake, f)
        key = (f.table, f.partition)
        if self.files.get(key) is f:
            del self.files[key]
        self.published.append(record)
        self.covered[key] = record.end_offset
        log.info(
            "rotate table=%s partition=%d start_offset=%d rows=%d bytes=%d reason=%s file=%s",
            record.table, record.partition, record.start_offset, record.rows, record.bytes,
            reason.value, record.path,
        )  # fmt: skip
        metrics.ROTATIONS.labels(reason=reason.value).inc()
        metrics.ROWS.labels(table=record.table).inc(record.rows)
        metrics.BYTES.labels(table=record.table).inc(record.bytes)
        metrics.FILES.labels(table=record.table).inc()
        return 1


def _bound(rows: pa.Table, k: int, *, codec: str, whole: sizing.RowGroupBound | None) -> int:
    if whole is not None and k == rows.num_rows:
        return whole.total
    return sizing.row_group_bound(rows.slice(0, k), codec).total
