"""Source-impact bench: does exporting slow the source's other users down?

A fixed query mix (point lookups of an issue by key, a 20-row range scan of a tenant's
issues, a per-tenant aggregate over its issues) is sent to the source one query at a time,
at a steady pace, the same seeded sequence in every window. The windows are interleaved, so
a machine that drifts over the minutes of the bench drifts under every kind alike; each
cycle (``--source-impact-cycles``, 3 by default) holds three:

1. **idle**: capture streaming (its snapshot done), nothing else running;
2. **loaded**: while a round of 10 per-tenant full exports (one per tenant, started with
   ``sluiceway export start --wait`` as a user would) runs; only queries sent while an
   export of the round runs count;
3. **control**: while a plain CPU-bound process spins on the pipeline's core(s): what any
   busy neighbour costs the source on this machine, whatever it does (a floor for the
   loaded figure, as the exports need CPU on that core too).

Target (issue 18): the mix's p99 while loaded within 5% of its p99 idle. The JSON keeps each
window's figures and a bootstrap interval of the ratio (its spread between resamples of the
same queries). Exports read only the change topics, never the source
(docs/architecture.md), so what the source feels is capture's stream and heartbeats, and
whatever the machine shares. The source is a private PostgreSQL pinned, with this process
(the query client), to one core, and the pipeline to the other (benchmarks/pinned.py says
why); ``--source-impact-no-pin`` measures unpinned (and without the control window).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from rich.console import Console

from benchmarks.env import BenchEnv, cli_command, delete_topics, ensure_stack
from benchmarks.pinned import Cores, on_cores, private_postgres, split_cores, stack_on
from benchmarks.report import result
from benchmarks.source_impact_stats import (
    KINDS,
    by_kind,
    control_metrics,
    metrics,
    ratio_interval,
    verdict,
)
from sluiceway.common.codec import Codec
from sluiceway.devstack.seed import SeedPlan, seed
from sluiceway.producers.source import source_tables

Sample = tuple[str, float]  # (query kind, seconds)
WARM_UP = 200  # queries sent first and not counted: caches and plans settle
MIX = {  # {issues}: the issue table's name, from our own schema
    "point": "SELECT * FROM {issues} WHERE tenant_id = %s AND id = %s",
    "range": "SELECT id, key, status, updated FROM {issues} WHERE tenant_id = %s "
    "AND id >= %s ORDER BY id LIMIT 20",
    "aggregate": "SELECT status, count(*), max(updated) FROM {issues} WHERE tenant_id = %s "
    "GROUP BY status",
}


def add_arguments(group: Any) -> None:
    group.add_argument("--source-impact-tenants", type=int, default=10,
                       help="tenants seeded, one export each per round (default 10)")  # fmt: skip
    group.add_argument("--source-impact-issues-per-tenant", type=int, default=2000,
                       help="issues per tenant (about 5 rows each in all)")  # fmt: skip
    group.add_argument("--source-impact-queries", type=int, default=3000,
                       help="queries per idle and control window (a loaded window lasts "
                            "its round of exports)")  # fmt: skip
    group.add_argument("--source-impact-cycles", type=int, default=3,
                       help="cycles of idle, loaded, control windows (default 3)")  # fmt: skip
    group.add_argument("--source-impact-interval-ms", type=float, default=10.0,
                       help="a query is sent every this many ms, in every window")  # fmt: skip
    group.add_argument("--source-impact-timeout", type=float, default=600,
                       help="seconds any phase (capture, a round of exports) may take")  # fmt: skip
    group.add_argument("--source-impact-no-pin", action="store_true",
                       help="do not pin PostgreSQL and the pipeline to separate cores")  # fmt: skip


class QueryMix:
    """The measured client: one connection, the kinds in turn, a seeded choice of keys."""

    def __init__(self, dsn: str, tenants: list[str], interval_s: float, seed_value: int = 18):
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True
        self.tenants, self.seed_value = tenants, seed_value
        self.interval_s, self.next_at = interval_s, time.monotonic()
        self.issues = source_tables()["issue"]  # a name from our own schema
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT tenant_id, min(id), max(id) FROM {self.issues} GROUP BY 1")
            self.ids = {t: (int(lo), int(hi)) for t, lo, hi in cur.fetchall()}

    def statements(self, n: int) -> Iterator[tuple[str, str, tuple[Any, ...]]]:
        """The same ``n`` statements every time: (kind, SQL, parameters)."""
        rng = random.Random(self.seed_value)
        for i in range(n):
            tenant = rng.choice(self.tenants)
            kind = KINDS[i % len(KINDS)]
            params: tuple[Any, ...] = (tenant,)
            if kind != "aggregate":
                params = (tenant, rng.randint(*self.ids[tenant]))
            yield kind, MIX[kind].format(issues=self.issues), params

    def time_one(self, sql: str, params: tuple[Any, ...]) -> float:
        """One query's latency, sent on the next tick: a steady pace, the same in every phase,
        so the loaded phase spans the exports' whole life instead of their first second."""
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_at = max(self.next_at, time.monotonic() - self.interval_s) + self.interval_s
        with self.conn.cursor() as cur:
            began = time.perf_counter()
            cur.execute(sql, params)
            cur.fetchall()
            return time.perf_counter() - began

    def run(self, n: int) -> list[Sample]:
        return [(kind, self.time_one(q, p)) for kind, q, p in self.statements(n)]

    def settle(self) -> None:
        """VACUUM ANALYZE the freshly seeded tables, as a long-lived database's would be: else
        autovacuum picks them up in the middle of some phase and measures itself."""
        with self.conn.cursor() as cur:
            for table in source_tables().values():
                cur.execute(f"VACUUM ANALYZE {table}")

    def close(self) -> None:
        self.conn.close()


@dataclass
class Rounds:
    """Rounds of one export per tenant, kept going while the loaded phase measures."""

    env: BenchEnv
    tenants: list[str]
    cores: Cores
    timeout: float
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    round_began: float = 0.0

    def start_round(self) -> None:
        self.round_began, n = time.monotonic(), self.started // len(self.tenants)
        self.procs = []
        for tenant in self.tenants:
            dest = self.env.workdir / f"lake-{n}-{tenant}"
            cmd = cli_command("export", "start", "--tenant", tenant, "--dest", str(dest),
                              "--wait", "--timeout", str(self.timeout), "--json")  # fmt: skip
            log = (self.env.workdir / f"export-{n}-{tenant}.log").open("wb")
            self.procs.append(subprocess.Popen(
                cmd, env=self.env.env(), cwd=self.env.workdir, stdout=log, stderr=log,
                preexec_fn=on_cores(self.cores.pipeline),
            ))  # fmt: skip
        self.started += len(self.tenants)

    def running(self) -> bool:
        """True while an export of the current round runs; notes how a finished round went."""
        if any(p.poll() is None for p in self.procs):
            if time.monotonic() - self.round_began > self.timeout:
                self.stop()
                self.failed.append(f"a round was not done after {self.timeout:.0f}s")
            return any(p.poll() is None for p in self.procs)
        if self.procs:
            self.seconds.append(time.monotonic() - self.round_began)
            self.failed += [f"export exited {p.returncode}" for p in self.procs if p.returncode]
            self.procs = []
        return False

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def loaded_window(mix: QueryMix, rounds: Rounds, n: int) -> list[Sample]:
    """Queries sent while an export runs, until there are at least ``n`` and the round in
    progress has ended (a new round starts whenever one ends before that), so the samples
    cover whole rounds and every started export is accounted for."""
    samples: list[Sample] = []
    deadline = time.monotonic() + rounds.timeout * 4
    rounds.start_round()
    while time.monotonic() < deadline and not rounds.failed:
        for kind, sql, params in mix.statements(n):
            if not rounds.running():
                break
            samples.append((kind, mix.time_one(sql, params)))
        if len(samples) >= n and not rounds.running():
            return samples
        if not rounds.running():
            rounds.start_round()
    rounds.stop()
    return samples


@contextmanager
def capture_running(env: BenchEnv, cores: Cores, timeout: float) -> Iterator[float]:
    """``sluiceway capture`` on the pipeline core(s), streaming once its snapshot is on the
    topics (``source status --wait``); yields the seconds that took."""
    log = (env.workdir / "capture.log").open("wb")
    proc = subprocess.Popen(
        cli_command("capture"),
        env=env.env(),
        cwd=env.workdir,
        stdout=log,
        stderr=log,
        preexec_fn=on_cores(cores.pipeline),
    )
    began = time.monotonic()
    try:
        wait = cli_command("source", "status", "--wait", "--timeout", str(timeout), "--json")
        subprocess.run(wait, env=env.env(), check=True, capture_output=True, timeout=timeout + 30)
        yield time.monotonic() - began
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def spinning(cores: Cores) -> Iterator[None]:
    """One CPU-bound process per pipeline core, pinned there, for the control window."""
    spin = [sys.executable, "-c", "while True: pass"]
    procs = [subprocess.Popen(spin, preexec_fn=on_cores(frozenset({c}))) for c in cores.pipeline]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def cycles(
    mix: QueryMix, rounds: Rounds, cores: Cores, n: int, count: int
) -> dict[str, list[list[Sample]]]:
    """``count`` cycles of an idle, a loaded and (pinned only) a control window."""
    console = Console(stderr=True)
    windows: dict[str, list[list[Sample]]] = {"idle": [], "loaded": [], "control": []}
    for cycle in range(1, count + 1):
        console.print(f"cycle {cycle}/{count}: {n:,} queries idle, then a round of exports")
        windows["idle"].append(mix.run(n))
        windows["loaded"].append(loaded_window(mix, rounds, n))
        if rounds.failed:
            break
        if cores.pinned:
            with spinning(cores):
                windows["control"].append(mix.run(n))
    return windows


def _measure(
    env: BenchEnv, args: argparse.Namespace, cores: Cores, tenants: list[str]
) -> dict[str, Any]:
    console, n = Console(stderr=True), args.source_impact_queries
    with capture_running(env, cores, args.source_impact_timeout) as capture_s:
        mix = QueryMix(env.pg.dsn(), tenants, args.source_impact_interval_ms / 1000)
        try:
            mix.settle()
            mix.run(WARM_UP)
            console.print(f"capture streaming after {capture_s:.1f}s")
            rounds = Rounds(env, tenants, cores, args.source_impact_timeout)
            windows = cycles(mix, rounds, cores, n, args.source_impact_cycles)
        finally:
            mix.close()
    return {"capture_s": capture_s, "windows": windows, "rounds": rounds}


def run(args: argparse.Namespace) -> dict[str, Any]:
    cores = split_cores(not args.source_impact_no_pin)
    kafka, _ = ensure_stack()
    unique = uuid.uuid4().hex[:8]
    kafka = kafka.model_copy(update={"topic_prefix": f"bench{unique}.sw."})
    plan = SeedPlan(args.source_impact_tenants, args.source_impact_issues_per_tenant, 7)
    Console(stderr=True).print(f"cores: {cores.describe()}")
    with private_postgres(cores) as pg, _workdir() as workdir:
        env = BenchEnv(kafka, pg, f"sw_bench_impact_{unique}", workdir)
        seeded = seed(pg, plan, Codec())
        try:
            with stack_on(cores):
                seen = _measure(env, args, cores, plan.tenant_ids())
        finally:
            delete_topics(kafka)
    return _result(args, cores, seeded, seen)


@contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sw-bench-impact-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _result(args: argparse.Namespace, cores: Cores, seeded: dict[str, int],
            seen: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    rounds: Rounds = seen["rounds"]
    windows: dict[str, list[list[Sample]]] = seen["windows"]
    pooled = {name: [s for w in ws for s in w] for name, ws in windows.items()}
    idle, loaded = by_kind(pooled["idle"]), by_kind(pooled["loaded"])
    control = by_kind(pooled["control"]) if pooled["control"] else None
    table = metrics(idle, loaded, rounds.started, len(rounds.seconds) + bool(rounds.procs))
    table += control_metrics(idle, control)
    params = {k: v for k, v in vars(args).items() if k.startswith("source_impact_")}
    v = verdict(idle["all"], loaded["all"])
    spread = ratio_interval([x for _, x in pooled["idle"]], [x for _, x in pooled["loaded"]])
    return result(
        "source_impact", {**params, "max_load": args.max_load}, table,
        cores=cores.describe(), pinned=cores.pinned, seeded=seeded,
        capture_s=round(seen["capture_s"], 2), export_failures=rounds.failed,
        round_seconds=[round(s, 1) for s in rounds.seconds],
        windows={name: [vars(by_kind(w)["all"]) for w in ws] for name, ws in windows.items()},
        verdict={"ratio": round(v.ratio, 4), "interval_90": [round(x, 4) for x in spread],
                 "ok": v.ok and not rounds.failed},
    )  # fmt: skip


def after_publish(res: dict[str, Any]) -> None:
    """Re-render docs/performance.md's results block, now holding this run as the latest
    (left alone while the end-to-end bench has no result to render the block around)."""
    from benchmarks.perf_doc import other_results, update_doc
    from benchmarks.report import RESULTS

    latest = RESULTS / "latest-e2e.json"
    if latest.exists():
        e2e = json.loads(latest.read_text(encoding="utf-8"))
        update_doc(Path(__file__).resolve().parents[1] / "docs" / "performance.md", e2e,
                   other_results(RESULTS))  # fmt: skip
