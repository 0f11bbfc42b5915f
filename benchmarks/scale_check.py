"""What the scale bench reads besides the runs: a tenant's rows in the source, the events in
the change topics, and whether a tenant's lake reconstructs to its source rows.

The comparison is the migration's ``verify`` (sluiceway.tools.migrate.logic.compare_table):
the lake's rows of every run in the destination folded to the latest per record key (a
delete removes the key), against ``SELECT`` of the tenant's rows, cell by cell.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import closing
from itertools import chain
from typing import Any

import psycopg2

from sluiceway.common.entities import active_catalog
from sluiceway.common.kafka_io import watermarks
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, PostgresSettings, S3Settings
from sluiceway.tools.backup import table_rows
from sluiceway.tools.migrate import logic
from sluiceway.tools.migrate.target import tenant_counts
from sluiceway.tools.migrate.target import tenant_rows as source_tenant_rows
from sluiceway.tools.reconstruct.lake import load_runs, open_source

Row = dict[str, Any]


def tenant_row_counts(pg: PostgresSettings, tenant: str) -> dict[str, int]:
    """The tenant's own rows in the source, per entity."""
    with closing(psycopg2.connect(pg.dsn())) as conn:
        return tenant_counts(conn, active_catalog(), tenant)


def topic_events(kafka: KafkaSettings, entities: Iterable[str]) -> int:
    """Events in these entities' change topics now: high minus low watermark, summed over
    every partition (what a reader of the whole topics would read)."""
    total = 0
    for entity in entities:
        marks = watermarks(kafka, kafka.cdc_topic(entity), range(kafka.partitions))
        total += sum(high - low for low, high in marks.values())
    return total


def run_range_events(run: RunRecord) -> int:
    """Events between the run's start and cut, over the partitions its record lists."""
    return sum(
        max(0, cut - run.start.get(topic, {}).get(partition, 0))
        for topic, partitions in run.cut.items()
        for partition, cut in partitions.items()
    )


def _lake_rows(lake: Any, runs: Iterable[Any], entity: str, tenant: str) -> Iterator[Row]:
    return chain.from_iterable(table_rows(lake, m, entity, (tenant,)) for m in runs)


def _own_columns(rows: Iterable[Row], names: tuple[str, ...]) -> list[Row]:
    """Lake rows without the lake's own columns (_tenant_id, _position, ...)."""
    return [{n: r.get(n) for n in names} for r in rows]


def compare_tenant(destination: str, pg: PostgresSettings, tenant: str) -> dict[str, Any]:
    """The tenant's chain at ``destination`` reconstructed, against its source rows: per
    entity the row counts and differences; ``equal`` when there is none."""
    catalog = active_catalog()
    lake = open_source(destination, S3Settings())
    runs = list(load_runs(lake).values())
    tables: dict[str, Any] = {}
    with closing(psycopg2.connect(pg.dsn())) as conn:
        for entity in catalog.names:
            found = catalog.entity(entity)
            latest, _deleted = logic.latest_changes(
                _lake_rows(lake, runs, entity, tenant), found.record_key
            )
            mine = _own_columns(latest.values(), tuple(found.column_names))
            source = source_tenant_rows(conn, catalog, entity, tenant)
            report = logic.compare_table(entity, source, mine, 0, tenant)
            tables[entity] = {
                "source_rows": report.source_rows, "lake_rows": report.target_rows,
                "differences": len(report.differences),
                "first": [d.to_dict() for d in report.differences[:3]],
            }  # fmt: skip
    equal = all(t["differences"] == 0 for t in tables.values())
    return {"equal": equal, "runs": [r.etl_id for r in runs], "tables": tables}
