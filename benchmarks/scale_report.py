"""The scale bench's figures: its metrics for the console table and JSON, one progress line
per run, and the block of docs/performance.md (rendered by benchmarks/perf_doc.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.report import Metric, info
from benchmarks.scale_plan import SECONDS_TARGET, SHARE_TARGET, meets_targets

BEGIN = "<!-- scale-results:begin (written by `python -m benchmarks scale`; edits are lost) -->"
END = "<!-- scale-results:end -->"
PLACEHOLDER = (
    "Not yet measured on an idle machine: run `python -m benchmarks scale --scale-full` "
    "(about 10,000 tenants and 2M issues) on a quiet one."
)
NOT_REPORTED = "-"  # the processor does not say which read path it took


def _pct(value: float | None) -> str:
    if value is None:
        return "-"
    # a small tenant's share is a few thousandths of a percent: "0.00%" would hide it
    return f"{100 * value:.2f}%" if value >= 0.001 else f"{100 * value:.4f}%"


def _num(value: float | int | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def correct_mark(run: Mapping[str, Any]) -> str:
    return {True: "yes", False: "**NO**", None: "not checked"}[run.get("correct")]


def one_line(run: Mapping[str, Any]) -> str:
    if not run.get("ok"):
        reason = str(run.get("failure") or "failed").splitlines()[0]
        return f"{run['role']} {run['tenant']} {run['run']}: FAILED ({reason})"
    return (
        f"{run['role']} {run['tenant']} {run['run']}: {_num(run['tenant_rows'])} tenant rows, "
        f"read {_num(run['events_read'])} of {_num(run['topic_events'])} events "
        f"({_pct(run['share'])}) in {_num(run['seconds'], 1)} s; lake = source: "
        f"{correct_mark(run)}"
    )


def verdicts(runs: Sequence[Mapping[str, Any]]) -> list[Metric]:
    """One metric per run of the smallest tenant: ok only when share, seconds and the
    lake's rows all pass (see scale_plan.meets_targets)."""
    out = []
    for run in (r for r in runs if r["role"] == "smallest"):
        said = f"share {_pct(run.get('share'))}, {_num(run.get('seconds'), 1)} s, " + (
            f"lake = source: {correct_mark(run)}"
        )
        target = f"< {100 * SHARE_TARGET:g}%, < {SECONDS_TARGET:g} s, right"
        out.append(Metric(f"target, smallest tenant {run['run']}", said, "", target,
                          meets_targets(run)))  # fmt: skip
    return out


def metrics(details: Mapping[str, Any]) -> list[Metric]:
    out: list[Metric] = []
    for run in details["runs"]:
        name = f"{run['role']} {run['run']}"
        out.append(info(f"{name}: tenant rows (source)", run["tenant_rows"], "rows"))
        out.append(info(f"{name}: events read", _or_dash(run["events_read"]), "events"))
        out.append(info(f"{name}: change-topic events", run["topic_events"], "events"))
        share = run.get("share")
        out.append(info(f"{name}: share read", "-" if share is None else 100 * share, "%"))
        out.append(info(f"{name}: seconds", _or_dash(run.get("seconds")), "s"))
        out.append(info(f"{name}: lake = source", correct_mark(run)))
    return [*out, *verdicts(details["runs"])]


def _or_dash(value: float | int | None) -> float | int | str:
    return "-" if value is None else value


def table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| tenant | size | run | tenant rows (source) | events read | change-topic events "
        "| share read | seconds | read path | lake = source |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        if not r.get("ok"):
            reason = str(r.get("failure") or "failed").splitlines()[0]
            lines.append(f"| {r['tenant']} | {r['role']} | {r['run']} | "
                         f"{_num(r['tenant_rows'])} | failed: {reason} | | | | | |")  # fmt: skip
            continue
        lines.append(
            f"| {r['tenant']} | {r['role']} | {r['run']} | {_num(r['tenant_rows'])} "
            f"| {_num(r['events_read'])} | {_num(r['topic_events'])} | {_pct(r['share'])} "
            f"| {_num(r['seconds'], 1)} | {r.get('path') or NOT_REPORTED} | {correct_mark(r)} |"
        )
    return lines


def target_lines(res: Mapping[str, Any]) -> list[str]:
    """The issue's targets, judged on the smallest tenant's runs; said to be indicative
    only when the source was smaller than the issue's 10,000 tenants."""
    p = res["params"]
    scope = ""
    if p["tenants"] < 10_000:
        scope = f" (indicative only: {p['tenants']:,} tenants here, the target is set for 10,000)"
    out = []
    for m in verdicts(res["details"]["runs"]):
        verdict = "PASS" if m.ok else "FAIL"
        out.append(
            f"- {m.metric}: reads < {100 * SHARE_TARGET:g}% of the change topics' events and "
            f"finishes in < {SECONDS_TARGET:g} s: **{verdict}** ({m.value}){scope}."
        )
    return out


def render_block(res: Mapping[str, Any] | None) -> str:
    """The doc's scale block: the placeholder until a published result exists."""
    if res is None:
        return "\n".join([BEGIN, PLACEHOLDER, END])
    p, d, m = res["params"], res["details"], res["machine"]
    counts = ", ".join(f"{v:,} {k}s" for k, v in d["source"]["counts"].items())
    sizes = ", ".join(f"{c['tenant']} {role} ({c['issues']:,} issues)"
                      for role, c in d["chosen"].items())  # fmt: skip
    lines = [
        BEGIN,
        f"Latest run: {res['finished']}, {p['tenants']:,} tenants with Zipf-distributed sizes "
        f"(exponent {p['zipf_exponent']:g}, seed {p['seed']}): {counts}. Exported: {sizes}.",
        "",
        f"Machine: {m['cpus']} CPUs, {m['memory_gib']} GiB, Python {m['python']}; 1-minute "
        f"load {res.get('load', {}).get('load_at_start', '?')} at start, "
        f"{m['loadavg_1m']} at the end.",
        "",
        f"Seeding took {d['source']['seed_s']:.0f} s and the capture snapshot "
        f"{d['source']['capture_snapshot_s']:.0f} s; between the full and the delta runs "
        f"{d['churn']['changes']:,} changes were committed on {len(d['churn']['tenants'])} "
        "tenants (the three exported among them).",
        "",
        *table(d["runs"]),
        "",
        "Read path: the verdict in the run record (`read_path`, decided with the cut): `index` "
        "reads the tenant's offsets through the tenant offset index, `scan` reads the "
        "tenant's partitions whole (a delta's short range costs fewer records scanned than "
        "sought); `-` for a run whose record has none.",
        "",
        *target_lines(res),
        END,
    ]
    return "\n".join(lines)
