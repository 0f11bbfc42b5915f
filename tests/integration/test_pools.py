"""Worker pools on the real stack: `process --pool` and `sink --pool` pick up a run that
`export start` only announced (SLUICEWAY_LAUNCH=pool), finish it, and stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import duckdb
import psycopg2
import pytest

from sluiceway.common.settings import PostgresSettings
from tests.conftest import Cli
from tests.net import free_port, get, get_json
from tests.polling import wait_for

pytestmark = pytest.mark.integration


def start_pool(cli: Cli, stage: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**cli.env, "SLUICEWAY_POOL_INTERVAL_S": "0.5"}
    return subprocess.Popen(
        [sys.executable, "-m", "sluiceway.cli", stage, "--pool", "--metrics-port", str(port)],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def issue_count(pg: PostgresSettings, tenant: str) -> int:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM issues WHERE tenant_id = %s", (tenant,))
        found: int = cur.fetchone()[0]
    conn.close()
    return found


def test_pools_run_an_announced_run_to_its_manifest(
    cli: Cli, source_db: PostgresSettings, tmp_path: Path
) -> None:
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "8")
    cli("capture", "--snapshot-only")
    ports = {"process": free_port(), "sink": free_port()}
    pools = {s: start_pool(cli, s, p, tmp_path / f"{s}-pool.log") for s, p in ports.items()}
    try:
        for stage, port in ports.items():
            wait_for(lambda p=port: get(p, "/readyz")[0] == 200, 60, f"the {stage} pool ready")
        announcer = Cli({**cli.env, "SLUICEWAY_LAUNCH": "pool"})
        lake = tmp_path / "lake"
        run = announcer.json(
            "export", "start", "--tenant", "tenant-001", "--dest", str(lake), "--wait",
            "--timeout", "240",
        )  # fmt: skip
        expected = issue_count(source_db, "tenant-001")
        assert run["rows"]["issue"] == expected > 0
        glob = f"{lake}/*/*/*/daily-export/full-export/issue/{run['etl_id']}/*.parquet"
        assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall() == [
            (expected,)
        ]
        # the children's samples reach the pools' /metrics (multiprocess mode)
        _, scraped = get(ports["sink"], "/metrics")
        assert 'sluiceway_sink_rows_total{table="issue"} ' + f"{float(expected)}" in scraped
        _, scraped = get(ports["process"], "/metrics")
        assert "sluiceway_processor_events_read_total" in scraped
        status, body = get_json(ports["sink"], "/healthz")
        assert status == 200 and body["status"] == "ok"
    finally:
        for pool in pools.values():
            pool.send_signal(signal.SIGTERM)
        codes = {stage: pool.wait(60) for stage, pool in pools.items()}
    assert codes == {"process": 0, "sink": 0}, (tmp_path / "sink-pool.log").read_text()[-2000:]


def test_run_and_pool_go_alone(cli: Cli) -> None:
    both = cli("sink", "--pool", "--run", "x", check=False)
    assert both.returncode == 3
    assert "give exactly one of --run ETL_ID and --pool" in both.stderr
    bad = Cli({**cli.env, "SLUICEWAY_LAUNCH": "k8s"})
    found = bad("export", "start", "--tenant", "t", "--dest", "/tmp/x", check=False)
    assert found.returncode == 3
    assert "SLUICEWAY_LAUNCH='k8s' is not a launch mode" in found.stderr


def run_workers(etl_id: str) -> list[int]:
    """Pids of this machine's `sluiceway ... --run etl_id` processes (from /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # it exited meanwhile
            continue
        if b"--run" in args and etl_id.encode() in args:
            found.append(int(cmdline.parent.name))
    return found


def test_a_stopped_pool_stops_its_run_workers(cli: Cli, tmp_path: Path) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "3")
    cli("capture", "--snapshot-only")
    # announced with no processor anywhere: the sink waits for end markers that never come
    run = cli.json("export", "start", "--tenant", "tenant-001", "--dest",
                   str(tmp_path / "lake"), "--no-launch")  # fmt: skip
    port = free_port()
    pool = start_pool(cli, "sink", port, tmp_path / "sink-pool.log")
    try:
        wait_for(lambda: "1 runs in progress" in get(port, "/readyz")[1], 60, "the run's sink")
        [child] = run_workers(run["etl_id"])
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(60) == 0, (tmp_path / "sink-pool.log").read_text()[-2000:]
        assert run_workers(run["etl_id"]) == []  # the pool waited for its child: none left
        assert not Path(f"/proc/{child}").exists()
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait(10)
        cli("export", "cancel", run["etl_id"])


def test_a_cancelled_run_stops_its_pool_worker(cli: Cli, tmp_path: Path) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "3")
    cli("capture", "--snapshot-only")
    run = cli.json("export", "start", "--tenant", "tenant-001", "--dest",
                   str(tmp_path / "lake"), "--no-launch")  # fmt: skip
    port = free_port()
    pool = start_pool(cli, "sink", port, tmp_path / "sink-pool.log")
    try:
        wait_for(lambda: "1 runs in progress" in get(port, "/readyz")[1], 60, "the run's sink")
        assert len(run_workers(run["etl_id"])) == 1
        cli("export", "cancel", run["etl_id"])
        wait_for(lambda: not run_workers(run["etl_id"]), 60, "the cancelled run's sink to stop")
        wait_for(lambda: "0 runs in progress" in get(port, "/readyz")[1], 30, "the pool idle")
        assert pool.poll() is None  # the pool itself goes on
    finally:
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(60) == 0


def test_serve_only_announces_and_stops_on_sigterm(cli: Cli, tmp_path: Path) -> None:
    """serve with SLUICEWAY_LAUNCH=pool: POST /runs announces, the pools run it; SIGTERM
    ends serve cleanly (uvicorn drains, the lifespan joins the scheduler)."""
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "4")
    cli("capture", "--snapshot-only")
    ports = {"process": free_port(), "sink": free_port()}
    pools = {s: start_pool(cli, s, p, tmp_path / f"{s}-pool.log") for s, p in ports.items()}
    api_port, token = free_port(), "pool-test-token-0123456789abcdef"
    env = {**cli.env, "SLUICEWAY_LAUNCH": "pool", "SLUICEWAY_API_TOKEN": token,
           "SLUICEWAY_API_ROOTS": str(tmp_path)}  # fmt: skip
    serve = subprocess.Popen(
        [sys.executable, "-m", "sluiceway.cli", "serve", "--port", str(api_port)],
        env=env, stdout=(tmp_path / "serve.log").open("ab"), stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: get(api_port, "/readyz")[0] == 200, 60, "serve ready")
        spec = {"tenants": ["tenant-001"], "destination": str(tmp_path / "lake")}
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/runs", data=json.dumps(spec).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert resp.status == 202
            etl_id = json.loads(resp.read())["etl_id"]
        # serve started no worker of its own: the pools' children are the run's workers
        wait_for(lambda: cli.json("export", "status", etl_id)["status"] == "complete", 180,
                 "the pools to complete the run")  # fmt: skip
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0, (tmp_path / "serve.log").read_text()[-2000:]
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(10)
        for pool in pools.values():
            pool.send_signal(signal.SIGTERM)
        for pool in pools.values():
            pool.wait(60)
