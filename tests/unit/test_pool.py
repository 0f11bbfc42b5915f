"""A pool's bookkeeping with real child processes standing in for run workers (no stack)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.control.pool import Pool, PoolSettings
from tests.polling import wait_for

# A worker that waits for a signal, and ends by itself after 60 s (SIGALRM) should the
# test leave it behind.
WAITS = "import signal; signal.alarm(60); signal.pause()"
# One that ignores SIGTERM, then says so by creating the file named by {flag}.
IGNORE_SIGTERM = (
    "import pathlib, signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path({flag!r}).touch(); signal.alarm(60); signal.pause()"
)


@dataclass
class ScriptPool(Pool):
    """Each run's worker is ``python -c scripts[etl_id]`` instead of `sluiceway <stage>`."""

    scripts: dict[str, str] = field(default_factory=dict)
    spawned: list[str] = field(default_factory=list)

    def _spawn(self, etl_id: str) -> subprocess.Popen[bytes]:
        self.spawned.append(etl_id)
        return subprocess.Popen([sys.executable, "-c", self.scripts[etl_id]])


def pool(tmp_path: Path, **settings: float) -> ScriptPool:
    return ScriptPool(
        "sink", KafkaSettings(port=1), S3Settings(port=1), PoolSettings(**settings), tmp_path
    )


def test_finished_runs_are_not_started_again_and_failed_ones_after_the_retry(
    tmp_path: Path,
) -> None:
    workers = pool(tmp_path, retry_s=0.5)
    workers.scripts = {"ok": "pass", "bad": "raise SystemExit(3)"}
    workers.start_missing(["ok", "bad"])
    workers.start_missing(["ok", "bad"])  # already running: nothing new
    assert workers.spawned == ["ok", "bad"]
    wait_for(lambda: all(c.poll() is not None for c in workers.children.values()), 10, "exits")
    workers.reap()
    assert workers.children == {}
    assert workers.finished == {"ok"} and set(workers.failed_at) == {"bad"}
    workers.start_missing(["ok", "bad"])
    assert workers.spawned == ["ok", "bad"]  # "bad" waits out retry_s first
    workers.failed_at["bad"] -= 0.6  # as if the retry delay had passed
    workers.start_missing(["ok", "bad"])
    assert workers.spawned == ["ok", "bad", "bad"]
    workers.stop()


def test_stop_forwards_sigterm_and_kills_after_the_timeout(tmp_path: Path) -> None:
    workers = pool(tmp_path, stop_timeout_s=1.0)
    flag = tmp_path / "deaf"
    deaf = IGNORE_SIGTERM.format(flag=str(flag))
    workers.scripts = {"polite": WAITS, "deaf": deaf}
    workers.start_missing(["polite", "deaf"])
    wait_for(flag.exists, 10, "the deaf worker to ignore SIGTERM")
    started = time.monotonic()
    workers.stop()
    assert time.monotonic() - started < 10
    assert workers.children["polite"].returncode == -signal.SIGTERM
    assert workers.children["deaf"].returncode == -signal.SIGKILL
