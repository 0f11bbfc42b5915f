"""At scale: exporting one tenant among many, against what that tenant holds (issue 18, item 4).

A source of ``--scale-tenants`` tenants whose issue counts follow a Zipf law (fixed seed,
every tenant at least one issue; each with the users, projects, comments and worklogs
sluiceway/devstack/seed.py makes for that many issues) is seeded, and ``sluiceway capture``
snapshots it into the change topics and keeps streaming. The smallest, the median and the
largest tenant are each exported as a full run; then a bounded churn touches them and other
tenants, and once capture has confirmed every change each is exported again as a delta.

Per run: the tenant's own rows in the source, the events the processor read from the change
topics (its ``--json`` RunStats ``read``: every record consumed, other tenants' included),
the events in the run's entities' change topics (high minus low watermark, every partition),
the share read, and the seconds from just before the run is created to its manifest. Each
run's lake is then reconstructed and compared with the tenant's source rows, so a fast
wrong run is reported as wrong. The default size runs in a few minutes; ``--scale-full`` (or
SLUICEWAY_BENCH_SCALE=full) is the issue's 10,000 tenants and 2M issues.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from benchmarks import perf_doc, scale_report
from benchmarks.capture_stream import StreamPlan, start_capture, stop, wait_caught_up
from benchmarks.env import BenchEnv, WalProbe, bench_env, free_port
from benchmarks.fleet import finish, running, spawn, watch
from benchmarks.report import result
from benchmarks.scale_check import compare_tenant, run_range_events, tenant_row_counts, topic_events
from benchmarks.scale_plan import (
    ROLES,
    SIZES,
    churned,
    picks,
    share,
    size_name,
    zipf_sizes,
)
from benchmarks.sink import delete_groups
from sluiceway.common.codec import Codec
from sluiceway.common.settings import S3Settings
from sluiceway.common.spec import parse_spec
from sluiceway.control.runner import start_run
from sluiceway.devstack.churn import churn
from sluiceway.devstack.churn_run import ChurnSettings
from sluiceway.devstack.seed import SeedPlan, seed, tenant_id
from sluiceway.lake import reader
from sluiceway.lake.storage import open_lake
from sluiceway.producers import checkpoint

DOCS = Path(__file__).resolve().parents[1] / "docs"
GRACE_S = 30.0  # how long workers may take to exit once their run is complete
CHURN_RATE = 1_000.0  # changes/s: the churn is bounded by count, the rate only paces it
CHURN_OTHERS = 7  # tenants churned besides the three exported


def say(message: str) -> None:
    sys.stderr.write(f"[scale {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--scale-full", action="store_true",
        help="the full size: 10,000 tenants, 2,000,000 issues (also SLUICEWAY_BENCH_SCALE=full)",
    )  # fmt: skip
    group.add_argument("--scale-tenants", type=int, help="tenants (default: by the size)")
    group.add_argument("--scale-issues", type=int, help="issues, all tenants (default: by size)")
    group.add_argument("--scale-churn", type=int, help="changes between full and delta runs")
    group.add_argument("--scale-zipf", type=float, default=1.0, help="Zipf exponent of sizes")
    group.add_argument("--scale-seed", type=int, default=18, help="seed of sizes and churn")
    group.add_argument(
        "--scale-timeout", type=float, default=1800.0, help="seconds any one phase may take"
    )
    group.add_argument(
        "--scale-no-doc", action="store_true", help="leave docs/performance.md alone"
    )


def params_of(args: argparse.Namespace) -> dict[str, Any]:
    size = SIZES[size_name(args.scale_full)]
    return {
        "size": size_name(args.scale_full),
        "tenants": args.scale_tenants or size.tenants,
        "issues": args.scale_issues or size.issues,
        "churn_changes": args.scale_churn if args.scale_churn is not None else size.churn,
        "zipf_exponent": args.scale_zipf, "seed": args.scale_seed,
    }  # fmt: skip


def seed_source(env: BenchEnv, p: dict[str, Any], sizes: tuple[int, ...]) -> dict[str, Any]:
    say(f"seeding {p['tenants']:,} tenants, {p['issues']:,} issues (Zipf {p['zipf_exponent']})")
    began, done = time.monotonic(), [0]

    def progress(n: int) -> None:
        done[0] += n
        if done[0] % 1000 == 0:
            say(f"seeded {done[0]:,} tenants")

    plan = SeedPlan(p["tenants"], 0, p["seed"], sizes)
    counts = seed(env.pg, plan, Codec(), progress)
    return {"counts": counts, "seed_s": round(time.monotonic() - began, 1)}


def snapshot(env: BenchEnv, capture: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until capture's checkpoint says its initial snapshot is in the topics."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if capture.poll() is not None:
            tail = (env.workdir / "capture.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"sluiceway capture exited {capture.returncode}:\n{tail}")
        state = checkpoint.load(env.kafka, env.slot)
        if state is not None and state.snapshot_done:
            return round(time.monotonic() - began, 1)
        time.sleep(0.5)
    raise RuntimeError(f"the capture snapshot was not done after {timeout:.0f} s")


def export(env: BenchEnv, tenant: str, kind: str, timeout: float) -> dict[str, Any]:
    """One run of ``tenant``, timed from just before its creation to its manifest."""
    rows = tenant_row_counts(env.pg, tenant)
    dest = env.workdir / f"lake-{tenant}"
    spec = parse_spec({"tenants": [tenant], "type": kind, "destination": str(dest)})
    in_topics = topic_events(env.kafka, spec.entities)
    began = time.time()
    run, _ = start_run(spec, env.kafka, S3Settings(), launch=False)
    lake = open_lake(run.destination, S3Settings())
    workers = [spawn(env, "process", run.etl_id, 0), spawn(env, "sink", run.etl_id, 0)]
    with running(workers) as fleet:
        done = lambda: reader.run_manifest(lake, run.etl_id) is not None  # noqa: E731
        seen = watch(fleet, done, timeout, f"{kind} {tenant}")
        finish(fleet, GRACE_S if seen.failure is None else 0.0)
    stats = [w.stats() for w in workers if w.stage == "process"]
    read = sum(int(s["read"]) for s in stats) if stats and all("read" in s for s in stats) else None
    manifest = reader.run_manifest(lake, run.etl_id)
    return {
        "tenant": tenant, "run": kind, "etl_id": run.etl_id,
        "ok": seen.failure is None, "failure": seen.failure,
        "tenant_rows": sum(rows.values()), "tenant_rows_by_entity": rows,
        "events_read": read, "topic_events": in_topics, "share": share(read, in_topics),
        "run_range_events": run_range_events(run),
        "seconds": run_seconds(began, seen.done_at, manifest),
        "rows_written": None if manifest is None else manifest.totals.rows,
        "path": (run.read_path or {}).get("path"), "read_path": run.read_path,
        "processor_stats": stats,
    }  # fmt: skip


def run_seconds(began: float, seen_at: float | None, manifest: Any) -> float | None:
    """Creation to the manifest's own completion time: the watch loop scrapes each worker's
    metrics between its looks, so when it sees the manifest can be most of a second late."""
    if seen_at is None:
        return None
    if manifest is not None:
        completed = datetime.fromisoformat(manifest.completed_at).timestamp()
        return round(max(0.0, min(seen_at, completed) - began), 3)
    return round(seen_at - began, 3)


def checked(env: BenchEnv, measured: dict[str, Any]) -> dict[str, Any]:
    """The run with its lake compared to the tenant's source rows (not timed)."""
    if not measured["ok"]:
        return {**measured, "correct": None, "check": None}
    found = compare_tenant(str(env.workdir / f"lake-{measured['tenant']}"), env.pg,
                           measured["tenant"])  # fmt: skip
    return {**measured, "correct": found["equal"], "check": found}


def churn_between(env: BenchEnv, p: dict[str, Any], chosen: list[int]) -> dict[str, Any]:
    """A bounded churn on the chosen tenants and others; returns what was committed."""
    tenants = churned(chosen, p["tenants"], CHURN_OTHERS, p["seed"])
    seconds = max(1.0, p["churn_changes"] / CHURN_RATE)
    rate = p["churn_changes"] / seconds
    settings = ChurnSettings(rate, seconds, p["seed"], env.workdir / "ledger.jsonl",
                             tuple(tenant_id(n) for n in tenants))  # fmt: skip
    say(f"churning {p['churn_changes']:,} changes over {len(tenants)} tenants")
    summary = churn(env.pg, settings, Codec())
    return {"tenants": [tenant_id(n) for n in tenants], "changes": summary.changes,
            "seconds": round(summary.seconds, 1)}  # fmt: skip


def caught_up(
    env: BenchEnv, capture: subprocess.Popen[bytes], probe: WalProbe, timeout: float
) -> float:
    """Seconds until capture confirmed every change committed so far: a delta started
    earlier would miss some of the churn, and its lake would rightly differ from the source."""
    seconds = wait_caught_up(env, capture, probe, probe.read()[0], timeout)
    if seconds is None:
        raise RuntimeError(f"capture did not confirm the churn within {timeout:.0f} s")
    return round(seconds, 1)


def exports(env: BenchEnv, p: dict[str, Any], chosen: dict[str, int], kind: str) -> list[Any]:
    out = []
    for role in ROLES:
        tenant = tenant_id(chosen[role])
        say(f"{kind} run of the {role} tenant, {tenant}")
        measured = checked(env, export(env, tenant, kind, p["timeout"]))
        say(scale_report.one_line({**measured, "role": role}))
        out.append({"role": role, **measured})
    return out


def measure(env: BenchEnv, p: dict[str, Any]) -> dict[str, Any]:
    sizes = zipf_sizes(p["tenants"], p["issues"], p["zipf_exponent"], p["seed"])
    chosen = picks(sizes)
    source = seed_source(env, p, sizes)
    port, probe = free_port(), WalProbe(env.pg, env.slot)
    plan = StreamPlan((), 0.0, 0.0, 0, heartbeat_s=0.5, catch_up_timeout_s=p["timeout"])
    capture = start_capture(env, plan, port)
    try:
        source["capture_snapshot_s"] = snapshot(env, capture, p["timeout"])
        say(f"snapshot in the change topics after {source['capture_snapshot_s']} s")
        runs = exports(env, p, chosen, "full")
        churned_ = churn_between(env, p, list(chosen.values()))
        churned_["catch_up_s"] = caught_up(env, capture, probe, p["timeout"])
        runs += exports(env, p, chosen, "delta")
    finally:
        stop(capture)
        probe.close()
        try:
            delete_groups(env)
        except KafkaException as exc:  # leftovers only cost broker memory: say so, go on
            say(f"could not delete the runs' consumer groups: {exc}")
    sized = {role: {"tenant": tenant_id(n), "issues": sizes[n - 1]} for role, n in chosen.items()}
    return {"source": source, "chosen": sized, "churn": churned_, "runs": runs}


def run(args: argparse.Namespace) -> dict[str, Any]:
    params = params_of(args)
    with bench_env("scale") as env:
        details = measure(env, {**params, "timeout": args.scale_timeout})
    res = result("scale", params, scale_report.metrics(details), **details)
    if not args.scale_no_doc and getattr(args, "publish", True):
        perf_doc.publish_scale(res, DOCS)
        say(f"updated {DOCS / 'performance.md'}")
    return res
