"""Tiny row and byte caps split tables into several files through the real pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import Cli, Stack, isolated

pytestmark = pytest.mark.integration
TENANT = "tenant-001"
ROW_CAP, BYTE_CAP = 25, 24_000
CAPS = {"rows": {"SLUICEWAY_SINK_MAX_ROWS": str(ROW_CAP)},
        "bytes": {"SLUICEWAY_SINK_MAX_BYTES": str(BYTE_CAP)}}  # fmt: skip


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


@pytest.fixture(scope="module")
def capped(
    captured: Cli, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each cap's export (lake and result), run at once: independent runs to their own lakes."""
    lakes = {name: tmp_path_factory.mktemp(f"caps-{name}") for name in CAPS}
    with ThreadPoolExecutor(len(CAPS)) as pool:
        runs = {name: pool.submit(export_with, captured, lakes[name], **env)
                for name, env in CAPS.items()}  # fmt: skip
        return {name: (lakes[name], run.result()) for name, run in runs.items()}


def files_of(lake: Path, table: str) -> list[Path]:
    return sorted(lake.glob(f"*/*/*/daily-export/full-export/{table}/*/part-*.parquet"))


def test_row_cap_splits_tables(capped: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    lake, result = capped["rows"]
    for table in ("issue", "comment", "worklog"):
        files = files_of(lake, table)
        rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
        assert len(files) >= 2, table
        assert max(rows) <= ROW_CAP, table
        assert sum(rows) == result["rows"][table]


def test_byte_cap_splits_tables(capped: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    lake, result = capped["bytes"]
    for table in ("issue", "comment"):
        files = files_of(lake, table)
        assert len(files) >= 2, table
        sizes = [f.stat().st_size for f in files]
        assert max(sizes) <= BYTE_CAP, (table, sizes)
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == result["rows"][table]
