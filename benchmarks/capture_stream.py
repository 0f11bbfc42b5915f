"""The streaming half of the capture benchmark: `sluiceway capture` as a process, churn
processes writing to the source, and a sampler reading the slot's lag every second."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.env import BenchEnv, WalProbe, cli_command, free_port, scrape, topic_events

EVENTS = "sluiceway_capture_events_total"
LAG_SECONDS = "sluiceway_capture_replication_lag_seconds"


@dataclass(frozen=True)
class StreamPlan:
    tenants: Sequence[str]
    rate: float
    seconds: float
    processes: int
    heartbeat_s: float
    catch_up_timeout_s: float
    profile: Path | None = None


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since churn started
    wal: int
    confirmed: int | None
    lag_s: float | None  # the capture's own lag metric
    events: float | None  # the capture's events counter

    @property
    def lag_bytes(self) -> int | None:
        return None if self.confirmed is None else max(0, self.wal - self.confirmed)


class Sampler(threading.Thread):
    """Every ``every`` seconds: WAL end vs confirmed position, and the capture's metrics."""

    def __init__(self, probe: WalProbe, port: int, start: float, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.probe, self.port, self.start_at, self.every = probe, port, start, every
        self.samples: list[Sample] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            wal, confirmed, _active = self.probe.read()
            metrics = scrape(self.port)
            t = time.monotonic() - self.start_at
            self.samples.append(
                Sample(t, wal, confirmed, metrics.get(LAG_SECONDS), metrics.get(EVENTS))
            )
            self.done.wait(self.every)

    def stop(self) -> list[Sample]:
        self.done.set()
        self.join(10)
        return self.samples


@dataclass
class StreamResult:
    churn: list[dict[str, Any]]
    churn_seconds: float
    catch_up_s: float | None
    captured_changes: int
    topic_events: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def committed(self) -> int:
        return sum(int(s["changes"]) for s in self.churn)

    @property
    def deletes(self) -> int:
        return sum(ops["d"] for s in self.churn for ops in s["counts"].values())


def start_capture(env: BenchEnv, plan: StreamPlan, port: int) -> subprocess.Popen[bytes]:
    args = ["capture", "--metrics-port", str(port)]
    command = cli_command(*args)
    if plan.profile is not None:
        out = plan.profile / "profile-stream.txt"
        command = [
            command[0],
            "-m",
            "pyinstrument",
            "-r",
            "text",
            "-o",
            str(out),
            "-m",
            "sluiceway.cli",
            *args,
        ]
    log = (env.workdir / "capture.log").open("ab")
    extra = {"SLUICEWAY_CAPTURE_HEARTBEAT_S": str(plan.heartbeat_s)}
    return subprocess.Popen(
        command,
        env=env.env(**extra),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _check_alive(env: BenchEnv, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        tail = (env.workdir / "capture.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"sluiceway capture exited {proc.returncode}:\n{tail}")


def wait_ready(env: BenchEnv, proc: subprocess.Popen[bytes], probe: WalProbe, port: int) -> None:
    """Until the capture streams from the slot and serves metrics."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        _check_alive(env, proc)
        if probe.read()[2] and scrape(port):
            return
        time.sleep(0.2)
    raise RuntimeError("sluiceway capture did not start streaming within 120 s")


def start_churn(env: BenchEnv, plan: StreamPlan) -> list[subprocess.Popen[str]]:
    """``plan.processes`` churn processes on disjoint tenants, sharing the rate evenly."""
    n = max(1, min(plan.processes, len(plan.tenants)))
    procs = []
    for i in range(n):
        args = [
            "source",
            "churn",
            "--rate",
            f"{plan.rate / n:g}",
            "--seconds",
            f"{plan.seconds:g}",
            "--seed",
            str(100 + i),
            "--ledger",
            str(env.workdir / f"ledger-{i}.jsonl"),
            "--tenants",
            ",".join(plan.tenants[i::n]),
            "--json",
        ]
        procs.append(
            subprocess.Popen(
                cli_command(*args),
                env=env.env(),
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    return procs


def finish_churn(procs: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, Any]]:
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"sluiceway source churn failed ({proc.returncode}):\n{err[-2000:]}")
        summaries.append(json.loads(out))
    return summaries


def wait_caught_up(
    env: BenchEnv, proc: subprocess.Popen[bytes], probe: WalProbe, target: int, timeout: float
) -> float | None:
    """Seconds until the slot's confirmed position passes ``target``; None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        _check_alive(env, proc)
        confirmed = probe.read()[1]
        if confirmed is not None and confirmed >= target:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def measure_streaming(env: BenchEnv, plan: StreamPlan) -> StreamResult:
    port, probe = free_port(), WalProbe(env.pg, env.slot)
    capture = start_capture(env, plan, port)
    try:
        wait_ready(env, capture, probe, port)
        before_events, before_topics = scrape(port).get(EVENTS, 0.0), topic_events(env.kafka)
        sampler = Sampler(probe=WalProbe(env.pg, env.slot), port=port, start=time.monotonic())
        sampler.start()
        churn = finish_churn(start_churn(env, plan), timeout=plan.seconds + 300)
        end_wal = probe.read()[0]
        catch_up = wait_caught_up(env, capture, probe, end_wal, plan.catch_up_timeout_s)
        samples = sampler.stop()
        sampler.probe.close()
        captured = int(scrape(port).get(EVENTS, 0.0) - before_events)
        events = topic_events(env.kafka) - before_topics
    finally:
        stop(capture)
        probe.close()
    churn_s = max(float(s["seconds"]) for s in churn)
    return StreamResult(churn, churn_s, catch_up, captured, events, samples)


def wal_time_lags(samples: Sequence[Sample]) -> list[float]:
    """Per sample: seconds until the slot confirmed the WAL end seen at that sample."""
    lags = []
    for i, s in enumerate(samples):
        later = (t for t in samples[i:] if t.confirmed is not None and t.confirmed >= s.wal)
        first = next(later, None)
        if first is not None:
            lags.append(first.t - s.t)
    return lags


def active_rate(samples: Sequence[Sample]) -> float:
    """Captured changes/s between the first and the last sample taken mid-stream (after
    changes began arriving, before the last one arrived)."""
    seen = [(s.t, s.events) for s in samples if s.events is not None]
    if len(seen) < 2:
        return 0.0
    base, final = seen[0][1], seen[-1][1]
    inner = [(t, n) for t, n in seen if base < n < final]
    if len(inner) < 2 or inner[-1][0] <= inner[0][0]:
        return 0.0
    return (inner[-1][1] - inner[0][1]) / (inner[-1][0] - inner[0][0])
