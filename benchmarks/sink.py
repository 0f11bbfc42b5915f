"""Sink throughput and memory, beside quixstreams' file sink on the same run topic.

One tenant is seeded, captured once, and a full run of its issues is announced (no workers
launched) and processed, so its run topic holds one issue-shaped event per issue. To keep
the bench short, the measured run is a second announced run whose topic holds those very
bytes ``--sink-copies`` times over (copies in sequence, so no row group repeats an issue),
then its end markers; ``--sink-copies 1`` measures the processed run itself. Then, each in
a fresh child process, on the same run topic, with default settings:

- ``sluiceway sink --run ID`` (run by this module's ``--sink-child`` entry, which logs
  when the first batch arrives and stamps log lines with epoch times), and
- ``benchmarks.sink_quix``: quixstreams' ``LocalFileSink`` with ``ParquetFormat``, fed
  the same decoded rows from a consumer group of its own.

For each: events/s over the whole process (spawn to exit) and over its processing window
(first message to completion), CPU seconds in that window (sampled from /proc every 50 ms)
for events/s per core, and peak RSS (the child's own ``VmHWM``, sampled from /proc too).
``--sink-profile PATH`` also profiles the sink with pyinstrument on a second, fresh run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from confluent_kafka import TopicPartition

from benchmarks.env import BenchEnv, bench_env, cli_command
from benchmarks.report import Metric, at_least, at_most, info, result
from sluiceway.common import kafka_io
from sluiceway.common.codec import MAGIC
from sluiceway.common.runs import END_MARKER, MARKER_HEADER, RunRecord
from sluiceway.common.settings import S3Settings
from sluiceway.common.spec import parse_spec
from sluiceway.control.runner import start_run

PER_CORE_TARGET = 100_000  # events/s per core
RATIO_TARGET = 5.0  # times quixstreams, issue 17 (was 3)
QUIX_REQUIREMENT = "quixstreams>=3.28,<4"
RSS_TARGET_MB = 300.0
TENANT = "tenant-001"
FIRST_BATCH = "SW-BENCH-FIRST-BATCH"
EPOCH_LOG_FORMAT = "%(created).6f %(levelname)s %(name)s %(message)s"
COMPLETE = re.compile(r"^(\d+\.\d+) INFO sluiceway\.sink run \S+ complete: (\d+) files, (\d+) rows")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]  # children run elsewhere but import benchmarks
QUIX_VENV = ROOT / "benchmarks" / ".quix-venv"


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--sink-issues", type=int, default=60_000, help="issues seeded: events the processor writes"
    )
    group.add_argument(
        "--sink-copies",
        type=int,
        default=5,
        help="the measured run topic holds the processed run's events this many times over "
        "(1: measure the processed run itself)",
    )
    group.add_argument(
        "--sink-profile", default=None, help="also profile the sink (pyinstrument) to this file"
    )


@dataclass
class Measured:
    """One child process: times are ``time.time()``; ``cpu`` samples are (time, CPU-s)."""

    started_at: float = 0.0
    exited_at: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    cpu: list[tuple[float, float]] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        return self.exited_at - self.started_at

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds used between two instants, from the samples nearest to them."""
        before = [c for t, c in self.cpu if t <= start] or [0.0]
        after = [c for t, c in self.cpu if t >= end] or [self.cpu_s]
        return max(after[0] - before[-1], 1e-9)


def _cpu_seconds(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (all threads)


def _peak_rss_mb(pid: int) -> float | None:
    """The process's own peak RSS so far (VmHWM), in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((x for x in text.splitlines() if x.startswith("VmHWM:")), None)
    return None if line is None else int(line.split()[1]) / 1024  # kB


def _sample(pid: int, m: Measured, stop: threading.Event) -> None:
    while not stop.is_set():
        cpu, hwm = _cpu_seconds(pid), _peak_rss_mb(pid)
        if cpu is not None:
            m.cpu.append((time.time(), cpu))
        if hwm is not None:
            m.peak_rss_mb = max(m.peak_rss_mb, hwm)
        stop.wait(0.05)


def measure(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 900) -> Measured:
    """Run ``cmd`` to its end; wall time, CPU samples, its own peak RSS (``wait4``)."""
    cwd.mkdir(parents=True, exist_ok=True)
    out, err = cwd / "child.out", cwd / "child.err"
    m, stop = Measured(), threading.Event()
    with out.open("wb") as fo, err.open("wb") as fe:
        m.started_at = time.time()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fo, stderr=fe)
        sampler = threading.Thread(target=_sample, args=(proc.pid, m, stop), daemon=True)
        sampler.start()
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        m.exited_at = time.time()
        killer.cancel()
        stop.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Not ru_maxrss: a child's ru_maxrss starts at its parent's peak RSS (Linux carries the
    # forked memory's high-water mark across exec), and this parent holds every copied
    # event, so it reported about the bench's own size whatever the sink used. VmHWM,
    # sampled every 50 ms, is the child's own high-water mark; ru_maxrss is the fallback.
    m.peak_rss_mb = m.peak_rss_mb or usage.ru_maxrss / 1024  # KiB on Linux
    m.cpu_s = usage.ru_utime + usage.ru_stime
    m.stdout, m.stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{m.stderr[-3000:]}")
    return m


def _seed(env: BenchEnv, issues: int) -> None:
    for args in (
        ("source", "seed", "--tenants", "1", "--issues-per-tenant", str(issues), "--json"),
        ("capture", "--snapshot-only", "--json"),
    ):
        subprocess.run(cli_command(*args), env=env.env(), check=True, capture_output=True)


def announce(env: BenchEnv, n: int) -> RunRecord:
    """Announce a full run of the tenant's issues, launching no workers."""
    lake = str(env.workdir / f"lake-{n}")
    spec = parse_spec({"tenants": [TENANT], "entities": ["issue"], "destination": lake})
    run, _ = start_run(spec, env.kafka, S3Settings(), launch=False)
    return run


def processed_run(env: BenchEnv, n: int) -> RunRecord:
    """Announce a run and process it: its run topic holds one event per live issue."""
    run = announce(env, n)
    subprocess.run(
        cli_command("process", "--run", run.etl_id, "--json"),
        env=env.env(), cwd=env.workdir, check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    return run


def read_events(env: BenchEnv, run: RunRecord) -> list[Any]:
    """Every event (not the end markers) of a processed run's topic, in offset order."""
    consumer = kafka_io.consumer(env.kafka, f"sw-bench-copy-{run.etl_id}")
    marks = kafka_io.watermarks(env.kafka, run.run_topic, range(run.run_partitions))
    wanted = sum(high - low for low, high in marks.values())
    consumer.assign([TopicPartition(run.run_topic, p, low) for p, (low, _) in marks.items()])
    events: list[Any] = []
    try:
        seen = 0
        while seen < wanted:
            batch = consumer.consume(10_000, timeout=1.0)
            if not batch:
                break  # transaction markers hold offsets but no message: the topic is read
            seen += len(batch)
            events += [m for m in batch if m.error() is None and (m.value() or b"")[:2] == MAGIC]
    finally:
        consumer.close()
    return events


def replicated_run(env: BenchEnv, events: list[Any], copies: int, n: int) -> RunRecord:
    """An announced run whose topic holds ``events`` ``copies`` times over, then end markers.

    The processor's own bytes, copied to the same partitions with the producer settings it
    uses; copies follow each other, so a row group never holds an issue twice.
    """
    run = announce(env, n)
    producer = kafka_io.producer(env.kafka)
    for _ in range(copies):
        for msg in events:
            producer.produce(run.run_topic, msg.value(), msg.key(), partition=msg.partition())
            producer.poll(0)
    for p in range(run.run_partitions):
        marker = json.dumps({"etl_id": run.etl_id, "partition": p, "dead_letters": 0})
        headers: list[tuple[str, str | bytes | None]] = [(MARKER_HEADER, END_MARKER)]
        producer.produce(run.run_topic, marker.encode(), partition=p, headers=headers)
    if producer.flush(60) != 0:
        raise RuntimeError(f"events copied to {run.run_topic} not acknowledged in 60s")
    return run


def prepare(env: BenchEnv, issues: int, copies: int, count: int) -> list[RunRecord]:
    """``count`` runs of the same data, each to be sunk once: processed or replicated."""
    _seed(env, issues)
    first = processed_run(env, 0)
    if copies <= 1:
        return [first, *(processed_run(env, n) for n in range(1, count))]
    events = read_events(env, first)
    return [replicated_run(env, events, copies, n) for n in range(1, count + 1)]


def _last_json(text: str) -> dict[str, Any]:
    lines = [x for x in text.splitlines() if x.startswith("{")]
    if not lines:
        raise RuntimeError(f"the child printed no JSON:\n{text[-2000:]}")
    found: dict[str, Any] = json.loads(lines[-1])
    return found


def _rates(rows: int, m: Measured, first: float, done: float) -> dict[str, float]:
    window_cpu = m.cpu_between(first, done)
    return {
        "rows": rows,
        "wall_s": m.wall_s,
        "startup_s": first - m.started_at,
        "window_s": done - first,
        "window_cpu_s": window_cpu,
        "cpu_s": m.cpu_s,
        "events_per_s_wall": rows / m.wall_s,
        "events_per_s_window": rows / (done - first),
        "events_per_cpu_s": rows / window_cpu,
        "cores_in_window": window_cpu / (done - first),
        "peak_rss_mb": m.peak_rss_mb,
    }


def time_sink(env: BenchEnv, run: RunRecord) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.sink", "--sink-child", run.etl_id]
    # quixstreams reads the same run topic next: the sink must not drop it after its manifest
    keep = {"SLUICEWAY_CLEANUP_RUN_RETENTION_S": "86400"}
    m = measure(cmd, env.env(PYTHONPATH=str(ROOT), **keep), env.workdir / f"sink-{run.etl_id}")
    rows = int(_last_json(m.stdout)["rows"])
    first = next(float(x.split()[1]) for x in m.stderr.splitlines() if x.startswith(FIRST_BATCH))
    done = next(float(g[1]) for x in m.stderr.splitlines() if (g := COMPLETE.match(x)))
    return _rates(rows, m, first, done)


def quix_python() -> str:
    """A venv of its own for quixstreams: it pins older confluent-kafka and pydantic than
    Sluiceway uses, so installing it beside Sluiceway would change what is measured."""
    python = QUIX_VENV / "bin" / "python"
    stamp = QUIX_VENV / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, QUIX_REQUIREMENT, "-e", str(ROOT)], check=True)
        stamp.touch()
    return str(python)


def time_quix(env: BenchEnv, run: RunRecord) -> dict[str, float]:
    cwd = env.workdir / f"quix-{run.etl_id}"
    cmd = [quix_python(), "-m", "benchmarks.sink_quix", "--run", run.etl_id, "--directory", "lake"]
    m = measure(cmd, env.env(PYTHONPATH=str(ROOT)), cwd)
    stats = _last_json(m.stdout)
    written = sum(pq.read_metadata(p).num_rows for p in (cwd / "lake").rglob("*.parquet"))
    if written != stats["rows"]:
        raise RuntimeError(f"quixstreams consumed {stats['rows']} rows but wrote {written}")
    return _rates(written, m, float(stats["first_at"]), float(stats["done_at"]))


def profile_sink(env: BenchEnv, run: RunRecord, out: str) -> None:
    """Profile ``sluiceway sink`` with pyinstrument: a call tree to ``out``, flat beside it."""
    session = str(env.workdir / "sink.pyisession")
    pyi = [sys.executable, "-m", "pyinstrument"]
    sink = ["-m", "sluiceway.cli", "sink", "--run", run.etl_id]
    for cmd in (
        [*pyi, "-r", "pyisession", "-o", session, *sink],
        [*pyi, "--load", session, "-r", "text", "-o", out],
        [*pyi, "--load", session, "-r", "text", "-p", "flat=true", "-o", f"{out}.flat"],
    ):
        subprocess.run(cmd, env=env.env(), cwd=env.workdir, check=True, capture_output=True)


def delete_groups(env: BenchEnv) -> None:
    """Best effort: the consumer groups left by the runs announced in ``env``."""
    etl_ids = [k.decode() for k in kafka_io.read_control(env.kafka, "runs")]
    client = kafka_io.admin(env.kafka)
    listed = client.list_consumer_groups(request_timeout=10).result(15)
    ours = [g.group_id for g in listed.valid if any(e in g.group_id for e in etl_ids)]
    if ours:
        for fut in client.delete_consumer_groups(ours, request_timeout=10).values():
            fut.result(15)


def _metrics(sink: dict[str, float], quix: dict[str, float]) -> list[Metric]:
    ratio = sink["events_per_s_window"] / quix["events_per_s_window"]
    wall_ratio = sink["events_per_s_wall"] / quix["events_per_s_wall"]
    return [
        info("events in the run (issue-shaped)", int(sink["rows"]), "events"),
        info("sink: events/s, spawn to exit", sink["events_per_s_wall"], "events/s"),
        info("sink: events/s, first batch to complete", sink["events_per_s_window"], "events/s"),
        info("sink: cores used in that window", sink["cores_in_window"], "cores"),
        at_least("sink: events/s per core", sink["events_per_cpu_s"], PER_CORE_TARGET, "ev/CPU-s"),
        info("sink: start-up before the first batch", sink["startup_s"], "s"),
        at_most("sink: peak RSS", sink["peak_rss_mb"], RSS_TARGET_MB, "MB"),
        info("quixstreams: events/s, spawn to exit", quix["events_per_s_wall"], "events/s"),
        info("quixstreams: events/s, first msg to done", quix["events_per_s_window"], "events/s"),
        info("quixstreams: events/s per core", quix["events_per_cpu_s"], "ev/CPU-s"),
        info("quixstreams: peak RSS", quix["peak_rss_mb"], "MB"),
        at_least("sink / quixstreams, events/s in window", ratio, RATIO_TARGET, "x"),
        info("sink / quixstreams, spawn to exit", wall_ratio, "x"),
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_env("sink") as env:
        began = time.monotonic()
        runs = prepare(env, args.sink_issues, args.sink_copies, 2 if args.sink_profile else 1)
        prepared = time.monotonic() - began
        try:
            sink = time_sink(env, runs[0])
            quix = time_quix(env, runs[0])
            if args.sink_profile:
                profile_sink(env, runs[1], args.sink_profile)
        finally:
            delete_groups(env)
    params = {
        "tenants": 1, "issues": args.sink_issues, "copies": args.sink_copies,
        "entities": ["issue"], "caps": "default",
    }  # fmt: skip
    metrics = [info("prepare: seed, capture, process, copy", prepared, "s"), *_metrics(sink, quix)]
    return result("sink", params, metrics, sink=sink, quixstreams=quix, prepare_s=prepared)


def sink_child(etl_id: str) -> None:
    """``sluiceway sink --run ETL_ID`` in this process, logging when its first batch arrives."""
    level = os.environ.get("SLUICEWAY_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level, format=EPOCH_LOG_FORMAT, stream=sys.stderr)
    from sluiceway.sinks import consume

    original = consume.handle_batch

    def first_batch(reader: consume.RunReader, messages: list[Any]) -> int:
        if messages:
            sys.stderr.write(f"{FIRST_BATCH} {time.time():.6f}\n")
            consume.handle_batch = original  # from here on the sink runs untouched
        return original(reader, messages)

    consume.handle_batch = first_batch
    from sluiceway.cli import main

    sys.argv = ["sluiceway", "sink", "--run", etl_id]
    main()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sink-child":
        sink_child(sys.argv[2])
    else:
        sys.exit("usage: python -m benchmarks.sink --sink-child ETL_ID")
