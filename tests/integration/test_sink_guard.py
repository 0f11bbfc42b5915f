"""The sink's completion webhook and disk guard, on the real stack.

The webhook is a local http.server that fails twice before accepting; the disk guard is
tripped by asking for more free space than the machine has, never by filling a disk.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluiceway.common.settings import StackSettings
from tests.conftest import Cli, Stack, isolated
from tests.polling import wait_for
from tests.unit.test_sink_notify import hook_certificate, serve_hook

pytestmark = pytest.mark.integration
TOKEN = "integration-hook-token"


@pytest.fixture(scope="module")
def seeded(local_stack: Stack) -> Iterator[Cli]:
    """Two small tenants, captured once for every test of this module."""
    for _kafka, _pg, cli in isolated(local_stack):
        cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "10", "--seed", "5")
        cli("capture", "--snapshot-only")
        yield cli


def with_env(cli: Cli, **extra: str) -> Cli:
    return Cli({**cli.env, **extra})


def test_the_webhook_gets_the_notice_after_two_failures(seeded: Cli, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with serve_hook(fail=2, tls=True) as hook:  # a token goes over https only
        cli = with_env(
            seeded,
            SSL_CERT_FILE=str(hook_certificate()),
            SLUICEWAY_SINK_WEBHOOK_URL=hook.url,
            SLUICEWAY_SINK_WEBHOOK_TOKEN=TOKEN,
            SLUICEWAY_SINK_WEBHOOK_BACKOFF_S="0.2",
        )
        result = cli.json(
            "export", "start", "--tenant", "tenant-001", "--dest", str(lake), "--wait",
            timeout=600,
        )  # fmt: skip
    manifest = json.loads((lake / "_runs" / f"{result['etl_id']}.json").read_text())
    assert len(hook.requests) == 3
    notice = hook.bodies[-1]
    assert notice["etl_id"] == manifest["etl_id"] == result["etl_id"]
    assert notice["rows"] == {t: info["rows"] for t, info in manifest["tables"].items()}
    assert sum(notice["rows"].values()) > 0
    assert notice["type"] == "full" and notice["destination"] == str(lake)
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for h, _ in hook.requests)
    log = (StackSettings().home / "runs" / result["etl_id"] / "sink.log").read_text()
    assert log.count("webhook attempt") == 2 and "got the notice" in log
    assert TOKEN not in log


def test_a_run_is_refused_when_the_destination_lacks_free_space(
    seeded: Cli, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    minimum = shutil.disk_usage(lake).free + 10**12
    cli = with_env(seeded, SLUICEWAY_SINK_MIN_FREE_BYTES=str(minimum))
    before = cli.json("export", "status", "--all")
    refused = cli("export", "start", "--tenant", "tenant-001", "--dest", str(lake), check=False)
    assert refused.returncode == 3
    message = refused.stderr.strip()
    assert "\n" not in message, message
    assert f"free space at {lake} is" in message
    assert f"below the minimum {minimum / 1e9:.2f} GB ({minimum} bytes)" in message
    assert cli.json("export", "status", "--all") == before  # no run was announced


def test_a_waiting_sink_explains_itself_in_export_status(seeded: Cli, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    start = ("export", "start", "--tenant", "tenant-002", "--dest", str(lake), "--no-launch")
    run = seeded.json(*start)
    etl_id = run["etl_id"]
    full = with_env(seeded, SLUICEWAY_SINK_MIN_FREE_BYTES=str(10**18))
    sink = subprocess.Popen(
        [sys.executable, "-m", "sluiceway.cli", "sink", "--run", etl_id],
        env=full.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        state = wait_for(
            lambda: (s := seeded.json("export", "status", etl_id))["note"] and s, 90, "a note"
        )
        assert state["status"] == "running"
        assert state["note"].startswith(f"waiting: free space at {lake} is")
        assert str(10**18) in state["note"]
        assert f"waiting: free space at {lake}" in seeded("export", "status", etl_id).stdout
    finally:
        sink.send_signal(signal.SIGINT)  # a clean exit leaves the consumer group at once
        sink.wait(30)
    seeded("process", "--run", etl_id, timeout=300)
    seeded("sink", "--run", etl_id, timeout=300)
    done = seeded.json("export", "status", etl_id)
    assert done["status"] == "complete" and done["note"] is None
