"""Run status, one active run per destination, and cancelling a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.integration


def test_status_conflict_cancel_and_release(cli: Cli, tmp_path: Path) -> None:
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "10")
    cli("capture", "--snapshot-only")
    lake = str(tmp_path / "lake")
    # No workers are launched: the run stands for one whose workers died.
    orphan = cli.json("export", "start", "--tenant", "tenant-001", "--dest", lake, "--no-launch")
    etl_id = orphan["etl_id"]
    assert orphan["workers"] == [
        f"sluiceway process --run {etl_id}",
        f"sluiceway sink --run {etl_id}",
    ]
    assert cli.json("export", "status", etl_id)["status"] == "running"
    busy = cli("export", "start", "--tenant", "tenant-001", "--dest", lake, check=False)
    assert busy.returncode == 1
    assert f"is busy with run {etl_id}" in busy.stderr
    assert cli.json("export", "cancel", etl_id)["status"] == "cancelled"
    assert cli.json("export", "status", etl_id)["status"] == "cancelled"
    again = cli.json("export", "start", "--tenant", "tenant-001", "--dest", lake, "--wait")
    latest = cli.json("export", "status")
    assert latest["etl_id"] == again["etl_id"] and latest["status"] == "complete"
    assert latest["rows"] == again["rows"]
    listed = cli.json("export", "status", "--all")
    assert [r["status"] for r in listed if r["etl_id"] in (etl_id, again["etl_id"])] == [
        "cancelled", "complete",
    ]  # fmt: skip
    done = cli("export", "cancel", again["etl_id"], check=False)
    assert done.returncode == 1 and "already complete" in done.stderr
