"""The migration worker as an operated service: metrics and probes on its port, and a
SIGTERM that stops it between deltas with its state intact (resume goes on from there)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Cli, Stack, fresh_database
from tests.integration.test_migrate import _state
from tests.net import free_port, get
from tests.polling import wait_for

pytestmark = pytest.mark.integration


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = get(port, "/metrics")
    assert status == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_migrate_worker_serves_metrics_and_stops_on_sigterm(
    cli: Cli, local_stack: Stack, tmp_path: Path, unique: str
) -> None:
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "6")
    cli("capture", "--snapshot-only")
    port, log = free_port(), tmp_path / "migrate.log"
    with fresh_database(local_stack.pg, f"sw_mops_{unique}") as target:
        args = ["--from-tenant", "tenant-001", "--to-tenant", "tenant-077", "--target-dsn",
                target.dsn(), "--interval", "1", "--dest", str(tmp_path / "lake"),
                "--metrics-port", str(port)]  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "sluiceway.cli", "migrate", "start", *args],
            env=cli.env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert wait_for(lambda: get(port, "/healthz")[0] == 200, 60, "the health server")
            wait_for(lambda: get(port, "/readyz")[0] == 200, 180, "the full copy applied")
            found = samples(port)
            state = _state(target)
            assert state is not None and state["runs"] >= 1
            rows = {k[1][0][1]: v for k, v in found.items()
                    if k[0] == "sluiceway_migrate_rows_applied_total"}  # fmt: skip
            assert rows.get("issue", 0) > 0, rows
            full = ("sluiceway_migrate_runs_applied_total", (("type", "full"),))
            assert found[full] == 1.0
            assert found[("sluiceway_migrate_lag_seconds", ())] > 0
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(120) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert "stopped after" in log.read_text()
        stopped = _state(target)
        assert stopped is not None and stopped["status"] == "running"  # resumable, not cut over
