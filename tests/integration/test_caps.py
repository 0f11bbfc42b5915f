"""Tiny row and byte caps split tables into several files through the real pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import Cli, Stack, isolated

pytestmark = pytest.mark.integration
TENANT = "tenant-001"


@pytest.fixture(scope="module")
def captured(local_stack: Stack) -> Iterator[Cli]:
    for _kafka, _pg, cli in isolated(local_stack):
        cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "120", "--seed", "5")
        cli("capture", "--snapshot-only")
        yield cli


def export_with(cli: Cli, lake: Path, **env: str) -> dict[str, Any]:
    capped = Cli({**cli.env, **env})
    result: dict[str, Any] = capped.json(
        "export", "start", "--tenant", TENANT, "--dest", str(lake), "--wait", timeout=600
    )
    return result


def files_of(lake: Path, table: str) -> list[Path]:
    return sorted(lake.glob(f"*/*/*/daily-export/full-export/{table}/*/part-*.parquet"))


def test_row_cap_splits_tables(captured: Cli, tmp_path: Path) -> None:
    result = export_with(captured, tmp_path, SLUICEWAY_SINK_MAX_ROWS="25")
    for table in ("issue", "comment", "worklog"):
        files = files_of(tmp_path, table)
        rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
        assert len(files) >= 2, table
        assert max(rows) <= 25, table
        assert sum(rows) == result["rows"][table]


def test_byte_cap_splits_tables(captured: Cli, tmp_path: Path) -> None:
    cap = 24_000
    result = export_with(captured, tmp_path, SLUICEWAY_SINK_MAX_BYTES=str(cap))
    for table in ("issue", "comment"):
        files = files_of(tmp_path, table)
        assert len(files) >= 2, table
        sizes = [f.stat().st_size for f in files]
        assert max(sizes) <= cap, (table, sizes)
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == result["rows"][table]
