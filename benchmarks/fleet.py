"""Worker processes of one run, started together and watched until a condition holds.

Each worker is a ``sluiceway process|sink --run ID`` child with its own Prometheus port
(scraped for progress and for when the first event was read) and its own log files. The
children are reaped with ``wait4`` so each one's CPU seconds are known exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.env import BenchEnv, cli_command, free_port, scrape

READ_METRIC = "sluiceway_processor_events_read_total"
SINK_ROWS_METRIC = "sluiceway_sink_rows_total"
PORT_ENV = {"process": "SLUICEWAY_PROCESSOR_METRICS_PORT", "sink": "SLUICEWAY_SINK_METRICS_PORT"}
ARGS = {"process": ("--json",), "sink": ()}


def say(message: str) -> None:
    """Progress on stderr, so stdout stays the results'."""
    sys.stderr.write(f"[e2e {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


@dataclass
class Worker:
    stage: str  # "process" or "sink"
    proc: subprocess.Popen[bytes]
    port: int
    logs: Path
    started_at: float
    exited_at: float | None = None
    exit_code: int | None = None
    cpu_s: float | None = None
    killed: bool = False

    def reap(self) -> bool:
        """True once the child has exited (its CPU time is then recorded)."""
        if self.exit_code is None:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid == 0:
                return False
            self.exited_at = time.time()
            self.exit_code = self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_s = usage.ru_utime + usage.ru_stime
        return True

    def kill(self) -> None:
        if not self.reap():
            self.killed = True
            self.proc.kill()
            while not self.reap():
                time.sleep(0.05)

    def output(self) -> tuple[str, str]:
        return (
            (self.logs / "out").read_text(errors="replace"),
            (self.logs / "err").read_text(errors="replace"),
        )

    def stats(self) -> dict[str, Any]:
        """The processor's ``--json`` statistics ({} if it printed none)."""
        lines = [x for x in self.output()[0].splitlines() if "{" in x]
        if not lines:
            return {}
        found: dict[str, Any] = json.loads(lines[-1][lines[-1].index("{") :])
        return found

    def summary(self) -> dict[str, Any]:
        end = self.exited_at or time.time()
        return {
            "stage": self.stage, "exit_code": self.exit_code, "killed": self.killed,
            "wall_s": round(end - self.started_at, 3),
            "cpu_s": None if self.cpu_s is None else round(self.cpu_s, 3),
        }  # fmt: skip


def spawn(env: BenchEnv, stage: str, etl_id: str, index: int) -> Worker:
    port = free_port()
    logs = env.workdir / "workers" / f"{etl_id}-{stage}-{index}"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = cli_command(stage, "--run", etl_id, *ARGS[stage])
    with (logs / "out").open("wb") as out, (logs / "err").open("wb") as err:
        proc = subprocess.Popen(
            cmd, env=env.env(**{PORT_ENV[stage]: str(port)}), cwd=logs, stdout=out, stderr=err
        )
    return Worker(stage, proc, port, logs, time.time())


@dataclass
class Watch:
    """What watching a fleet saw: when its first event was read, when it ended and why."""

    workers: list[Worker]
    first_read_at: float | None = None
    done_at: float | None = None
    failure: str | None = None
    read: float = 0.0
    written: float = 0.0
    samples: list[tuple[float, float, float]] = field(default_factory=list)

    def scrape(self) -> None:
        read = written = 0.0
        for w in self.workers:
            found = scrape(w.port, timeout=0.2)
            read += found.get(READ_METRIC, 0.0)
            written += found.get(SINK_ROWS_METRIC, 0.0)
        # a worker's counter vanishes when it exits: keep the highest total seen
        self.read, self.written = max(self.read, read), max(self.written, written)
        if self.first_read_at is None and self.read > 0:
            self.first_read_at = time.time()
        self.samples.append((time.time(), self.read, self.written))

    def broken(self) -> str | None:
        for w in self.workers:
            if w.reap() and w.exit_code != 0 and not w.killed:  # killed: by us, after the grace
                tail = w.output()[1][-1500:]
                return f"{w.stage} worker exited {w.exit_code}; its stderr ends:\n{tail}"
        return None


def watch(
    workers: list[Worker], done: Callable[[], bool], timeout: float, label: str,
    every: float = 0.2, report_every: float = 10.0,
) -> Watch:  # fmt: skip
    """Poll until ``done()``, a worker fails, or ``timeout``; leaves the workers running."""
    seen, deadline = Watch(workers), time.monotonic() + timeout
    began = last_report = time.monotonic()
    while True:
        seen.scrape()
        # a failed worker fails the phase even when the others finished its work
        seen.failure = seen.broken()
        if seen.failure is not None:
            return seen
        if done():
            seen.done_at = time.time()
            return seen
        now = time.monotonic()
        if now > deadline:
            seen.failure = f"{label}: not done after {timeout:.0f}s"
            return seen
        if now - last_report >= report_every:
            last_report = now
            say(
                f"{label}: {now - began:5.0f}s, processors read {seen.read:,.0f}, "
                f"sinks wrote {seen.written:,.0f} rows"
            )
        time.sleep(every)


def all_exited(workers: list[Worker]) -> Callable[[], bool]:
    return lambda: all(w.reap() for w in workers)


@contextmanager
def running(workers: list[Worker]) -> Iterator[list[Worker]]:
    """The workers, killed when the block ends however it ends (none outlives the bench)."""
    try:
        yield workers
    finally:
        for w in workers:
            w.kill()


def finish(workers: list[Worker], grace: float) -> None:
    """Give the workers ``grace`` seconds to exit by themselves, then kill the rest."""
    deadline = time.monotonic() + grace
    while not all(w.reap() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    for w in workers:
        w.kill()
