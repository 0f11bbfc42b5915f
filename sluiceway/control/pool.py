"""Worker pools: ``sluiceway process --pool`` and ``sluiceway sink --pool``.

A pool keeps running, reads the run registry (``sw.control.*``) every few seconds and starts
``sluiceway <stage> --run ETL_ID`` for each active run it does not already work on. Several
pools (a Deployment's replicas) each start one: the run's workers then share its consumer
groups. SIGTERM is forwarded to every child, which the pool waits for before it exits.

The children's Prometheus metrics reach the pool's /metrics through prometheus_client's
multiprocess mode: each child writes its samples to a directory the pool aggregates.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry, multiprocess
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sluiceway.common import control_topics as control
from sluiceway.common import health
from sluiceway.common.errors import SluicewayError
from sluiceway.common.health import HEALTH, HealthSettings
from sluiceway.common.settings import KafkaSettings, S3Settings, to_env
from sluiceway.common.settings_base import SluicewaySettings
from sluiceway.control import registry
from sluiceway.control.cleanup import Sweeper, Swept

log = logging.getLogger("sluiceway.control.pool")
Stage = Literal["process", "sink"]
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class PoolSettings(SluicewaySettings):
    """How often a pool looks for runs and how long its children get to stop."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_POOL_", frozen=True)

    interval_s: float = Field(5.0, gt=0, description="Seconds between reads of the registry.")
    retry_s: float = Field(
        30.0, ge=0, description="A run whose worker failed is started again after this long."
    )
    stop_timeout_s: float = Field(
        120.0, gt=0, description="After SIGTERM, how long children get before SIGKILL."
    )
    log_dir: Path | None = Field(
        None, description="Children's logs (<etl_id>.<stage>.log); None: inherit the pool's."
    )


@dataclass
class Pool:
    """The children of one pool and what it remembers of runs it worked on."""

    stage: Stage
    kafka: KafkaSettings
    s3: S3Settings
    settings: PoolSettings
    metrics_dir: Path
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)  # final, or done by our worker: never again
    failed_at: dict[str, float] = field(default_factory=dict)

    def active_runs(self) -> list[str]:
        """Active runs, oldest first; runs known final are not read again (no manifest trip)."""
        found = registry.states(self.kafka, self.s3, lambda r: r.etl_id not in self.finished)
        for item in found:
            if not item.active:
                self.finished.add(item.run.etl_id)
                if item.status != "complete":  # cancelled or failed: its worker must stop
                    self._terminate(item.run.etl_id)
        return [item.run.etl_id for item in found if item.active]

    def forget(self, swept: Swept | None) -> None:
        """Drop what the pool remembers of runs whose records expired, and their logs here."""
        for etl_id in swept.expired if swept else []:
            self.finished.discard(etl_id)
            self.failed_at.pop(etl_id, None)
            if self.settings.log_dir is not None:
                (self.settings.log_dir / f"{etl_id}.{self.stage}.log").unlink(missing_ok=True)

    def _terminate(self, etl_id: str) -> None:
        """SIGTERM a run's worker; ``reap`` collects it. A complete run's sink is left alone:
        it still commits and notifies after the manifest that made the run complete."""
        child = self.children.get(etl_id)
        if child is not None and child.poll() is None:
            log.info("run %s is over; stopping its %s worker", etl_id, self.stage)
            child.send_signal(signal.SIGTERM)

    def reap(self) -> None:
        for etl_id, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            del self.children[etl_id]
            multiprocess.mark_process_dead(child.pid, str(self.metrics_dir))
            if code == 0:
                log.info("%s worker of run %s finished", self.stage, etl_id)
                self.finished.add(etl_id)
            else:
                log.warning("%s worker of run %s exited with %s", self.stage, etl_id, code)
                self.failed_at[etl_id] = time.monotonic()

    def start_missing(self, active: list[str]) -> None:
        now = time.monotonic()
        for etl_id in active:
            if etl_id in self.children or etl_id in self.finished:
                continue
            if now - self.failed_at.get(etl_id, -self.settings.retry_s) < self.settings.retry_s:
                continue
            self.children[etl_id] = self._spawn(etl_id)
            log.info("started the %s worker of run %s", self.stage, etl_id)

    def _spawn(self, etl_id: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, **to_env(self.kafka), MULTIPROC_ENV: str(self.metrics_dir)}
        out = None
        if self.settings.log_dir is not None:
            self.settings.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.settings.log_dir / f"{etl_id}.{self.stage}.log").open("ab")
        command = [sys.executable, "-m", "sluiceway.cli", self.stage, "--run", etl_id]
        return subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        """Forward SIGTERM to every child and wait for it; SIGKILL after the timeout."""
        for child in self.children.values():
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.stop_timeout_s
        for etl_id, child in self.children.items():
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s worker of run %s did not stop; killing it", self.stage, etl_id)
                child.kill()
                child.wait()


def metrics_registry(metrics_dir: Path) -> CollectorRegistry:
    """The children's samples, summed as prometheus_client's multiprocess mode does, and the
    pool's own count of control records it could not read."""
    found = CollectorRegistry()
    multiprocess.MultiProcessCollector(found, path=str(metrics_dir))
    found.register(control.UNREADABLE)
    return found


def run_pool(
    pool: Pool, stop: Callable[[], bool], port: int | None, health_settings: HealthSettings
) -> None:
    """Watch the registry and keep a worker on every active run until ``stop()``."""
    health.serve(port, health_settings, registry=metrics_registry(pool.metrics_dir))
    sweep = Sweeper(pool.kafka, pool.s3)
    try:
        while not stop():
            HEALTH.beat()
            pool.reap()
            try:
                active = pool.active_runs()
            except (SluicewayError, KafkaException) as exc:
                HEALTH.ready(False, f"run registry unreadable: {exc}")
                log.warning("run registry unreadable (%s); retrying", exc)
            else:
                pool.start_missing(active)
                HEALTH.ready(True, f"{len(pool.children)} runs in progress")
                pool.forget(sweep())
            _sleep_unless(stop, pool.settings.interval_s)
    finally:
        HEALTH.ready(False, "stopping")
        pool.stop()


def _sleep_unless(stop: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop():
        time.sleep(0.1)


def new_pool(stage: Stage, kafka: KafkaSettings, s3: S3Settings, settings: PoolSettings) -> Pool:
    """A pool with a fresh metrics directory (stale samples of a dead pool would add up)."""
    return Pool(stage, kafka, s3, settings, Path(tempfile.mkdtemp(prefix=f"sw-{stage}-pool-")))


def cleanup(pool: Pool) -> None:
    shutil.rmtree(pool.metrics_dir, ignore_errors=True)
