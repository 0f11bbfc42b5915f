"""End to end: a full export of every tenant and entity of a 1M-issue source, timed.

A source of ``--e2e-tenants`` tenants and ``--e2e-issues`` issues in all (with the comments,
worklogs, users and projects sluiceway/devstack/seed.py makes for them) is seeded and captured once.
Then, for each worker count N in ``--e2e-workers``:

- end to end, ``--e2e-repeat`` times (2 by default; the counts' attempts interleaved, the
  fastest judged, every attempt kept in the JSON): a full run of everything is announced,
  N ``sluiceway process --run`` and N ``sluiceway sink --run`` workers start together, and
  the run is timed from its start to its manifest (and from the first event a processor
  read, seen on its metrics, to the manifest); every attempt's manifest must hold the
  source's ``issues`` count of issue rows;
- per stage: on a fresh run, N processors alone until they exit after their end markers,
  then N sinks alone on that filled run topic until the manifest.

Every phase has a timeout; a phase that fails or times out is reported as such and the
bench goes on. The chart (docs/performance.png) and the results block of
docs/performance.md are rewritten from the results unless ``--e2e-no-doc``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

import psycopg2
from confluent_kafka import KafkaException

from benchmarks import e2e_report, perf_doc
from benchmarks.env import BenchEnv, bench_env, cli_command, settle_source
from benchmarks.fleet import Watch, Worker, all_exited, finish, running, say, spawn, watch
from benchmarks.report import RESULTS, result
from benchmarks.sink import delete_groups
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import S3Settings
from sluiceway.common.spec import parse_spec
from sluiceway.control.runner import start_run
from sluiceway.devstack.seed import tenant_id
from sluiceway.lake import reader
from sluiceway.lake.manifest import RunManifest
from sluiceway.lake.storage import Lake, open_lake
from sluiceway.producers.source import source_tables

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GRACE_S = 30.0  # how long workers may take to exit once their run is complete


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return ""
    return next(
        (x.split(":", 1)[1].strip() for x in text.splitlines() if x.startswith("model name")), ""
    )


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--e2e-issues", type=int, default=1_000_000, help="issues in the source, all tenants"
    )
    group.add_argument("--e2e-tenants", type=int, default=4, help="tenants sharing those issues")
    group.add_argument(
        "--e2e-workers", default="1,2", help="worker counts per stage, comma-separated"
    )
    group.add_argument(
        "--e2e-timeout", type=float, default=1200.0, help="seconds any one phase may take"
    )
    group.add_argument(
        "--e2e-repeat", type=int, default=2,
        help="end-to-end attempts of each worker count, interleaved; the fastest is judged "
        "and every attempt is kept in the JSON (a busy host slows single attempts)",
    )  # fmt: skip
    group.add_argument(
        "--e2e-keep-earlier",
        action="store_true",
        help="also report the latest saved result's worker counts this run does not measure "
        "(same issues and tenants; each says when it was measured)",
    )
    group.add_argument(
        "--e2e-no-doc", action="store_true", help="leave docs/performance.md and its chart alone"
    )
    group.add_argument(
        "--e2e-partitions", type=int, default=4,
        help="partitions of the bench's change and run topics (kafka.partitions)",
    )  # fmt: skip
    group.add_argument(
        "--e2e-spread", type=int, default=4,
        help="partitions each tenant spreads over (kafka.spread): with the default 1, four "
        "tenants on three partitions leave a second worker a third of the work at most",
    )  # fmt: skip


@contextmanager
def topic_layout(partitions: int, spread: int) -> Iterator[None]:
    """The bench's topics laid out so that every worker count measured has work for each
    worker: the bench process and every worker it starts read these from the environment."""
    if not 1 <= spread <= partitions:
        raise SystemExit(f"--e2e-spread {spread}: expected 1 to --e2e-partitions ({partitions})")
    names = {"SLUICEWAY_KAFKA_PARTITIONS": str(partitions), "SLUICEWAY_KAFKA_SPREAD": str(spread)}
    with patch.dict(os.environ, names):
        yield


def worker_counts(text: str) -> tuple[int, ...]:
    """``"1,2"`` -> (1, 2); one-line errors name the bad value."""
    try:
        counts = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise SystemExit(f"--e2e-workers {text!r}: expected positive integers, e.g. 1,2") from None
    if not counts or min(counts) < 1:
        raise SystemExit(f"--e2e-workers {text!r}: expected positive integers, e.g. 1,2")
    return counts


def issues_per_tenant(issues: int, tenants: int) -> int:
    if tenants < 1 or issues < tenants or issues % tenants:
        raise SystemExit(
            f"--e2e-issues {issues} and --e2e-tenants {tenants}: expected tenants >= 1 and "
            "issues a positive multiple of tenants"
        )
    return issues // tenants


def _cli(env: BenchEnv, timeout: float, *args: str) -> float:
    """Run a ``sluiceway`` command to its end, saying every 10 s that it still runs."""
    began = time.monotonic()
    logs = env.workdir / f"{args[0]}.log"
    with logs.open("wb") as log:
        proc = subprocess.Popen(cli_command(*args), env=env.env(), stdout=log, stderr=log)
        while proc.poll() is None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - began
                if elapsed > timeout:
                    proc.kill()
                    proc.wait()
                    late = f"sluiceway {' '.join(args)}: not done after {timeout:.0f}s"
                    raise RuntimeError(late) from None
                say(f"sluiceway {' '.join(args[:2])}: still running, {elapsed:.0f}s")
    if proc.returncode != 0:
        tail = logs.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"sluiceway {' '.join(args)} exited {proc.returncode}:\n{tail}")
    return time.monotonic() - began


def prepare(env: BenchEnv, tenants: int, per_tenant: int, timeout: float) -> dict[str, Any]:
    """Seed and capture the source once; its row counts come from PostgreSQL itself."""
    say(f"seeding {tenants} tenants x {per_tenant:,} issues")
    seed = ("source", "seed", "--tenants", str(tenants), "--issues-per-tenant", str(per_tenant))
    seed_s = _cli(env, timeout, *seed, "--json")
    counts = source_counts(env)
    settle_source(env.pg, list(source_tables().values()))
    say(f"seeded in {seed_s:.0f}s: {counts}; vacuumed; capturing a snapshot")
    capture_s = _cli(env, timeout, "capture", "--snapshot-only", "--json")
    say(f"captured in {capture_s:.0f}s")
    return {"counts": counts, "seed_s": seed_s, "capture_s": capture_s}


def source_counts(env: BenchEnv) -> dict[str, int]:
    with closing(psycopg2.connect(env.pg.dsn())) as conn, conn.cursor() as cur:
        out: dict[str, int] = {}
        for entity, table in source_tables().items():
            cur.execute(f"SELECT count(*) FROM {table}")  # names from our own schema
            row = cur.fetchone()
            out[entity] = int(row[0]) if row else 0
    return out


def announce(env: BenchEnv, tenants: int, name: str) -> tuple[RunRecord, Lake]:
    """A full run of every tenant and entity, announced without launching workers."""
    lake_dir = env.workdir / f"lake-{name}"
    lake_dir.mkdir(parents=True)
    ids = [tenant_id(i) for i in range(1, tenants + 1)]
    spec = parse_spec({"tenants": ids, "destination": str(lake_dir)})
    run, _ = start_run(spec, env.kafka, S3Settings(), launch=False)
    return run, open_lake(run.destination, S3Settings())


def _manifest(lake: Lake, run: RunRecord) -> RunManifest | None:
    return reader.run_manifest(lake, run.etl_id)


def _manifest_facts(manifest: RunManifest | None, source_issues: int) -> dict[str, Any]:
    if manifest is None:
        return {"rows_written": None, "issue_rows": None, "rows_match": False}
    issue_rows = manifest.rows().get("issue", 0)
    return {
        "rows_written": manifest.totals.rows,
        "issue_rows": issue_rows,
        "rows_match": issue_rows == source_issues,
    }


def _workers(workers: list[Worker]) -> dict[str, Any]:
    stats = [w.stats() for w in workers if w.stage == "process"]
    return {
        "events_read": sum(int(s.get("read", 0)) for s in stats),
        "processing_s": max((float(s.get("processing_s", 0.0)) for s in stats), default=0.0),
        "workers": [w.summary() for w in workers],
    }


def end_to_end(
    env: BenchEnv, n: int, tenants: int, issues: int, timeout: float, attempt: int = 1
) -> dict[str, Any]:
    """Announce, start n processors and n sinks together, time until the manifest."""
    say(f"{n} worker(s) per stage: end to end")
    began = time.time()
    # a destination of its own: the registry keeps the last attempt's run on the former
    run, lake = announce(env, tenants, f"e2e-{n}-{attempt}")
    announced = time.time()
    roles = [("process", i) for i in range(n)] + [("sink", i) for i in range(n)]
    with running([spawn(env, s, run.etl_id, i) for s, i in roles]) as fleet:
        seen = watch(fleet, lambda: _manifest(lake, run) is not None, timeout, f"e2e x{n}")
        finish(fleet, GRACE_S if seen.failure is None else 0.0)
    out = _phase(seen, run, began) | _manifest_facts(_manifest(lake, run), issues)
    out["announce_s"] = announced - began
    if seen.done_at is not None and seen.first_read_at is not None:
        out["first_read_to_manifest_s"] = seen.done_at - seen.first_read_at
    shutil.rmtree(lake.dest.root, ignore_errors=True)
    return out


def _phase(seen: Watch, run: RunRecord, began: float) -> dict[str, Any]:
    wall = None if seen.done_at is None else seen.done_at - began
    # one that failed while the others were finishing (not one killed after the grace)
    failure = seen.failure or seen.broken()
    return {
        "etl_id": run.etl_id, "ok": failure is None, "failure": failure,
        "wall_s": wall, **_workers(seen.workers),
        # how busy the shared machine was: other work lowers the wall-clock rates
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def stages(env: BenchEnv, n: int, tenants: int, issues: int, timeout: float) -> dict[str, Any]:
    """n processors alone until they exit, then n sinks alone until the manifest."""
    say(f"{n} worker(s) per stage: processors alone")
    run, lake = announce(env, tenants, f"stages-{n}")
    began = time.time()
    with running([spawn(env, "process", run.etl_id, i) for i in range(n)]) as procs:
        seen = watch(procs, all_exited(procs), timeout, f"process x{n}")
    process = _phase(seen, run, began)
    if not process["ok"]:
        return {"process": process, "sink": {"ok": False, "failure": "processors failed"}}
    say(f"{n} worker(s) per stage: sinks alone on the filled run topic")
    began = time.time()
    with running([spawn(env, "sink", run.etl_id, i) for i in range(n)]) as sinks:
        seen = watch(sinks, lambda: _manifest(lake, run) is not None, timeout, f"sink x{n}")
        finish(sinks, GRACE_S if seen.failure is None else 0.0)
    sink = _phase(seen, run, began) | _manifest_facts(_manifest(lake, run), issues)
    shutil.rmtree(lake.dest.root, ignore_errors=True)
    return {"process": process, "sink": sink}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def attempts(
    env: BenchEnv, args: argparse.Namespace, counts: tuple[int, ...], issues: int
) -> dict[int, list[dict[str, Any]]]:
    """``--e2e-repeat`` end-to-end attempts of every worker count, interleaved (1, 2, 1,
    2...): a host that slows down for a minute slows one attempt of each count, not every
    attempt of one (the guest's load average cannot see a busy host)."""
    out: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    for attempt in range(1, args.e2e_repeat + 1):
        for n in counts:
            say(f"end to end, attempt {attempt} of {args.e2e_repeat}")
            tried = end_to_end(env, n, args.e2e_tenants, issues, args.e2e_timeout, attempt)
            out[n].append(tried)
    return out


def measure(env: BenchEnv, args: argparse.Namespace, counts: tuple[int, ...]) -> dict[str, Any]:
    prepared = prepare(env, args.e2e_tenants, args.e2e_per_tenant, args.e2e_timeout)
    issues = prepared["counts"]["issue"]
    runs: dict[str, Any] = {}
    try:
        tries = attempts(env, args, counts, issues)
        for n in counts:
            phases = stages(env, n, args.e2e_tenants, issues, args.e2e_timeout)
            e2e = e2e_report.best_attempt(tries[n])
            runs[str(n)] = {"e2e": e2e, "e2e_attempts": tries[n], **phases, "measured_at": _now()}
            say(f"{n} worker(s): {e2e_report.one_line(runs[str(n)])}")
    finally:
        try:
            delete_groups(env)
        except KafkaException as exc:  # leftovers only cost broker memory: say so, go on
            say(f"could not delete the runs' consumer groups: {exc}")
    return {"source": prepared, "runs": runs}


def earlier_result(args: argparse.Namespace) -> dict[str, Any] | None:
    """The saved result ``--e2e-keep-earlier`` builds on, checked before anything runs."""
    if not args.e2e_keep_earlier:
        return None
    path = RESULTS / "latest-e2e.json"
    if not path.exists():
        raise SystemExit(f"--e2e-keep-earlier: {path} does not exist; run the bench without it")
    previous: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    p = previous["params"]
    if (p["issues"], p["tenants"]) != (args.e2e_issues, args.e2e_tenants):
        raise SystemExit(
            f"--e2e-keep-earlier: {path} has {p['issues']} issues in {p['tenants']} tenants; "
            f"expected {args.e2e_issues} in {args.e2e_tenants}"
        )
    return previous


def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = worker_counts(args.e2e_workers)
    if args.e2e_repeat < 1:
        raise SystemExit(f"--e2e-repeat {args.e2e_repeat}: expected a positive integer")
    args.e2e_per_tenant = issues_per_tenant(args.e2e_issues, args.e2e_tenants)
    previous = earlier_result(args)
    with topic_layout(args.e2e_partitions, args.e2e_spread), bench_env("e2e") as env:
        details = measure(env, args, counts)
    details["cpu_model"] = cpu_model()
    if previous is not None:
        details["runs"] = e2e_report.keep_earlier(details["runs"], details["source"], previous)
    params = {
        "issues": args.e2e_issues, "tenants": args.e2e_tenants,
        "workers": [int(n) for n in details["runs"]], "repeat": args.e2e_repeat,
        "partitions": args.e2e_partitions, "spread": args.e2e_spread,
        "entities": sorted(source_tables()), "target_s": e2e_report.TARGET_S,
    }  # fmt: skip
    res = result("e2e", params, e2e_report.metrics(details), **details)
    if args.e2e_no_doc or not getattr(args, "publish", True):
        say(f"chart: {e2e_report.write_chart(res, RESULTS / 'e2e.png')}")
    else:
        perf_doc.publish(res, RESULTS, DOCS)
        say(f"updated {DOCS / 'performance.md'} and its chart")
    return res
