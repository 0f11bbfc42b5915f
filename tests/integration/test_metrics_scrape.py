"""Real workers on the real stack serve what the dashboard queries, and their probes answer.

Capture streams (with its metrics port), a run's processor and sink run with theirs; a
thread per worker scrapes /metrics, /healthz and /readyz over HTTP while they work (the
processor and sink exit when the run is done, so what they served is gathered as it comes).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluiceway.common.settings import PostgresSettings
from tests.conftest import Cli
from tests.integration.capture_harness import (
    CaptureProcess,
    settings_for_capture,
    slot_caught_up,
    wal_lsn,
)
from tests.net import free_port, get
from tests.polling import wait_for
from tests.repo import ROOT

pytestmark = pytest.mark.integration
DASHBOARD = ROOT / "deploy" / "grafana" / "sluiceway-dashboard.json"


def dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return {m for e in exprs for m in re.findall(r"\bsluiceway_[a-z_]+", e)}


@dataclass
class Scraper:
    """Scrapes one worker's health server until stopped; remembers every sample name."""

    port: int
    samples: set[str] = field(default_factory=set)
    probes: dict[str, set[int]] = field(
        default_factory=lambda: {"/healthz": set(), "/readyz": set()}
    )
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.scrape()

    def scrape(self) -> bool:
        status, body = get(self.port, "/metrics")
        if status != 200:
            return False
        for family in text_string_to_metric_families(body):
            self.samples |= {s.name for s in family.samples}
        for path, seen in self.probes.items():
            seen.add(get(self.port, path)[0])
        return True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def worker(cli: Cli, log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sluiceway.cli", *args],
        env=cli.env, stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_workers_serve_every_dashboard_metric(
    cli: Cli, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    """Capture streaming, and the processor and sink pools (the Deployments' workers) on a
    small run: a pool's /metrics keeps its run workers' samples after they exit, so the
    scrape after the run sees everything the run did."""
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "10")
    ports = {"capture": free_port(), "process": free_port(), "sink": free_port()}
    env = settings_for_capture(
        cli.env, f"sw_{unique}", SLUICEWAY_CAPTURE_METRICS_PORT=str(ports["capture"])
    )
    capture = CaptureProcess(env, tmp_path / "capture.log")
    capture.start()
    pool_env = Cli({**cli.env, "SLUICEWAY_POOL_INTERVAL_S": "0.5"})
    procs = {
        stage: worker(pool_env, tmp_path / f"{stage}.log", stage, "--pool", "--metrics-port",
                      str(ports[stage]))
        for stage in ("process", "sink")
    }  # fmt: skip
    scrapers = {stage: Scraper(port) for stage, port in ports.items()}
    try:
        for stage, port in ports.items():
            wait_for(lambda p=port: get(p, "/readyz")[0] == 200, 120, f"{stage} ready")
        # a change while streaming, so the stream's own metrics move too
        ledger = str(tmp_path / "ledger.jsonl")
        cli("source", "churn", "--rate", "20", "--seconds", "1", "--seed", "5", "--ledger", ledger)
        target = wal_lsn(source_db)
        wait_for(lambda: slot_caught_up(source_db, f"sw_{unique}", target), 60, "the stream")
        announcer = Cli({**cli.env, "SLUICEWAY_LAUNCH": "pool"})
        run = announcer.json("export", "start", "--tenant", "tenant-001", "--dest",
                             str(tmp_path / "lake"), "--wait", "--timeout", "240")  # fmt: skip
        assert run["rows"]["issue"] > 0
        for stage, scraper in scrapers.items():  # once more, now that everything happened
            assert scraper.scrape(), stage
    finally:
        for scraper in scrapers.values():
            scraper.stop()
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(60)
        capture.stop()
    served = set().union(*(s.samples for s in scrapers.values()))
    missing = dashboard_metrics() - served
    assert not missing, f"the dashboard queries metrics no worker served: {sorted(missing)}"
    for stage, scraper in scrapers.items():
        assert 200 in scraper.probes["/healthz"], stage
        assert 200 in scraper.probes["/readyz"], stage


def test_a_single_run_worker_answers_its_probes(cli: Cli, tmp_path: Path) -> None:
    """`sink --run --metrics-port` on a run with no processor: it waits for end markers, so
    it stays up to be probed; it is ready once it consumes the run topic."""
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "3")
    cli("capture", "--snapshot-only")
    run = cli.json("export", "start", "--tenant", "tenant-001", "--dest",
                   str(tmp_path / "lake"), "--no-launch")  # fmt: skip
    port = free_port()
    sink = worker(cli, tmp_path / "sink.log", "sink", "--run", run["etl_id"], "--metrics-port",
                  str(port))  # fmt: skip
    try:
        wait_for(lambda: get(port, "/readyz")[0] == 200, 60, "the sink ready")
        status, body = get(port, "/readyz")
        topic = f"{cli.env['SLUICEWAY_KAFKA_TOPIC_PREFIX']}run.{run['etl_id']}"
        assert json.loads(body) == {"status": "ready", "reason": f"consuming {topic}"}
        status, body = get(port, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        # the lag is sampled once the group has assigned the run's partitions
        wait_for(lambda: "sluiceway_sink_consumer_lag{" in get(port, "/metrics")[1], 60, "lag")
        assert get(port, "/metrics")[0] == 200
    finally:
        sink.kill()
        sink.wait(10)
        cli("export", "cancel", run["etl_id"])


def test_capture_confirms_what_it_streamed_when_stopped(
    cli: Cli, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    """SIGTERM: capture flushes Kafka and confirms the slot before it exits (code 0).

    Feedback every hour: only the stop itself can confirm the changes made meanwhile."""
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "5")
    slot, port = f"sw_{unique}", free_port()
    env = settings_for_capture(
        cli.env, slot, SLUICEWAY_CAPTURE_FEEDBACK_S="3600",
        SLUICEWAY_CAPTURE_HEARTBEAT_S="3600", SLUICEWAY_CAPTURE_METRICS_PORT=str(port),
    )  # fmt: skip
    capture = CaptureProcess(env, tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: "streaming" in get(port, "/readyz")[1], 120, "capture streaming")
        target = unconfirmed_change(source_db, slot, port)
        assert capture.proc is not None
        capture.proc.terminate()
        assert capture.proc.wait(60) == 0, (tmp_path / "capture.log").read_text()[-3000:]
    finally:
        capture.stop()
    assert slot_caught_up(source_db, slot, target)


def unconfirmed_change(pg: PostgresSettings, slot: str, port: int) -> str:
    """A change capture has streamed but not confirmed. The slot can move past it without
    capture's word (psycopg2 answers the server's keepalives itself), so a few tries."""
    for _ in range(5):
        before = capture_events(port)
        target = change_one_issue(pg)
        wait_for(lambda b=before: capture_events(port) > b, 60, "the change's events on Kafka")
        if not slot_caught_up(pg, slot, target):
            return target
    raise AssertionError(f"slot {slot} confirmed every change before capture stopped")


def change_one_issue(pg: PostgresSettings) -> str:
    """Update an issue; returns a WAL position inside that transaction, so its commit (which
    capture must confirm) lies past it. Other databases' WAL never lets the slot get there."""
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("UPDATE issues SET updated = now() WHERE id = (SELECT min(id) FROM issues)")
        assert cur.rowcount == 1
        cur.execute("SELECT pg_current_wal_lsn()::text")
        lsn: str = cur.fetchone()[0]
    conn.close()
    return lsn


def capture_events(port: int) -> float:
    status, body = get(port, "/metrics")
    if status != 200:
        return 0.0
    return sum(
        s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "sluiceway_capture_events_total"
    )
