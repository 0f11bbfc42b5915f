"""Prometheus metrics of the migration worker (``migrate start|resume --metrics-port``)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import Counter, Gauge

from sluiceway.common.runs import etl_id_time

ROWS_APPLIED = Counter(
    "sluiceway_migrate_rows_applied_total", "Rows written to the target, by table.", ["table"]
)
RUNS_APPLIED = Counter(
    "sluiceway_migrate_runs_applied_total", "Runs applied to the target, by type.", ["type"]
)
LAST_APPLIED = Gauge(
    "sluiceway_migrate_last_applied_cut_seconds",
    "Unix time of the cut of the last run applied to the target.",
)
LAG = Gauge(
    "sluiceway_migrate_lag_seconds",
    "Seconds since the cut of the last applied run: how far the target trails the source.",
)
_last_cut: list[float] = []  # set once a run is applied; the lag is measured at each scrape
LAG.set_function(lambda: time.time() - _last_cut[-1] if _last_cut else 0.0)


def applied(etl_id: str, run_type: str, counts: Mapping[str, int]) -> None:
    """A run is in the target: count its rows and restart the lag from its cut."""
    for table, rows in counts.items():
        ROWS_APPLIED.labels(table=table).inc(rows)
    RUNS_APPLIED.labels(type=run_type).inc()
    cut = etl_id_time(etl_id).timestamp()
    LAST_APPLIED.set(cut)
    _last_cut[:] = [cut]
