"""The results block of docs/performance.md, rendered from the latest bench results.

The doc's prose is written by hand; only the text between BEGIN and END is rewritten, so
the doc always reports the latest end-to-end run and the other benches' latest figures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks import scale_report
from benchmarks.e2e_report import STAGES, TARGET_S, attempts_of, figures

BEGIN = "<!-- e2e-results:begin (written by `python -m benchmarks e2e`; edits are lost) -->"
END = "<!-- e2e-results:end -->"
OTHERS = ("capture", "processor", "sink", "source_impact")
# Jira Data Center's Data pipeline: 1M issues in about 15 minutes on one c5.9xlarge node
ATLASSIAN = {"issues": 1_000_000, "seconds": 15 * 60, "vcpus": 36}


def _num(value: float | int | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _machine(res: dict[str, Any]) -> str:
    m = res["machine"]
    cpu = res["details"].get("cpu_model") or "unknown CPU"
    return (
        f"{m['cpus']} CPUs ({cpu}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"{m['platform']}; 1-minute load average {m['loadavg_1m']} when the bench ended"
    )


def target_line(res: dict[str, Any]) -> str:
    """The verdict on "1M-issue full export under TARGET_S end to end", said plainly."""
    issues = res["params"]["issues"]
    runs = res["details"]["runs"]
    walls = {n: figures(p.get("e2e", {}), "e2e")["wall_s"] for n, p in runs.items()}
    said = ", ".join(
        f"{n} worker(s): {'failed' if w is None else f'{w:.1f} s'}" for n, w in walls.items()
    )
    if issues < 1_000_000:
        return (
            f"Target (1M issues < {TARGET_S:.0f} s) not judged: this run had only "
            f"{issues:,} issues ({said})."
        )
    # the target is one worker per stage's (issue 17); more workers are judged against it
    one = next((w for n, w in walls.items() if str(n) == "1"), None)
    verdict = "PASS" if one is not None and one < TARGET_S else "FAIL"
    line = (
        f"Target: 1M-issue full export < {TARGET_S:.0f} s end to end with one worker per "
        f"stage: **{verdict}** ({said})."
    )
    return " ".join([line, *_scaling(res)])


def _scaling(res: dict[str, Any]) -> list[str]:
    """The bench's verdicts on two workers per stage against one, when it made them."""
    return [
        f"Two workers per stage against one, {m['metric'].removeprefix('x2 / x1 ')}: "
        f"{m['value']}x (target {m['target']}): **{'PASS' if m['ok'] else 'FAIL'}**."
        for m in res.get("metrics", [])
        if str(m.get("metric", "")).startswith("x2 / x1 ")
    ]


def comparison(res: dict[str, Any]) -> list[str]:
    """Issues per second and per vCPU-second, beside Atlassian's published figure."""
    a = ATLASSIAN
    lines = [
        f"- Atlassian Data pipeline: {a['issues']:,} issues in ~{a['seconds']:,} s on "
        f"{a['vcpus']} vCPUs = {a['issues'] / a['seconds']:,.0f} issues/s, "
        f"{a['issues'] / a['seconds'] / a['vcpus']:,.0f} issues per vCPU-second."
    ]
    src, cpus = res["details"]["source"], res["machine"]["cpus"]
    issues = src["counts"]["issue"]
    for n, phases in res["details"]["runs"].items():
        f = figures(phases.get("e2e", {}), "e2e")
        if not f["ok"]:
            continue
        for what, secs in (
            ("export", f["wall_s"]),
            ("capture snapshot + export", f["wall_s"] + src["capture_s"]),
        ):
            lines.append(
                f"- Sluiceway, {n} worker(s) per stage, {what}: {issues:,} issues in {secs:,.0f} s "
                f"on {cpus} vCPUs = {issues / secs:,.0f} issues/s, "
                f"{issues / secs / cpus:,.0f} issues per vCPU-second."
            )
    return lines


def results_table(res: dict[str, Any]) -> list[str]:
    lines = [
        "| workers per stage | stage | seconds | events | events/s | CPU-s per worker "
        "| events per CPU-s | issue rows = source | load at end |",
        "|---|---|---:|---:|---:|---|---:|---|---:|",
    ]
    for n, phases in res["details"]["runs"].items():
        for stage, name in STAGES:
            f = figures(phases.get(stage, {}), stage)
            if not f["ok"]:
                reason = str(f["failure"] or "no events").splitlines()[0]
                lines.append(f"| {n} | {name} | failed: {reason} | | | | | | |")
                continue
            cpu = " + ".join(f"{c:.1f}" for c in f["cpu_s_per_worker"])
            match = "" if "rows_match" not in f else ("yes" if f["rows_match"] else "**NO**")
            lines.append(
                f"| {n} | {name} | {_num(f['wall_s'], 1)} | {_num(f['events'])} "
                f"| {_num(f['events_per_s'])} | {cpu} | {_num(f['events_per_cpu_s'])} | {match} "
                f"| {_num(f['loadavg_1m'], 2)} |"
            )
    return lines


def _measured(res: dict[str, Any]) -> list[str]:
    """When each worker count was measured; says so when one comes from an earlier run."""
    out = []
    for n, phases in res["details"]["runs"].items():
        when = phases.get("measured_at", res["finished"])
        earlier = phases.get("earlier_result")
        source = (
            f" (kept from the bench's earlier result of {earlier}, on a source seeded the same way)"
            if earlier
            else ""
        )
        out.append(f"- {n} worker(s) per stage: measured {when}{source}.")
        tries = attempts_of(phases)
        if len(tries) > 1:
            walls = ", ".join(
                "failed" if (w := figures(t, "e2e")["wall_s"]) is None else f"{w:.1f} s"
                for t in tries
            )
            out.append(
                f"- {n} worker(s), end to end: {len(tries)} attempts, interleaved with the "
                f"other counts' ({walls}); the fastest is the one in the table and judged."
            )
        for stage, name in STAGES:
            killed = [w for w in phases.get(stage, {}).get("workers", []) if w.get("killed")]
            if killed:
                out.append(
                    f"- {n} worker(s), {name}: {len(killed)} worker(s) still running at the "
                    "phase's end (after the grace period, or at a failure) were killed."
                )
    return out


def _first_read(res: dict[str, Any]) -> list[str]:
    out = []
    for n, phases in res["details"]["runs"].items():
        f = figures(phases.get("e2e", {}), "e2e")
        if f["ok"] and f.get("first_read_to_manifest_s") is not None:
            out.append(
                f"- {n} worker(s): {f['first_read_to_manifest_s']:.1f} s from the first event a "
                f"processor read to the manifest (of {f['wall_s']:.1f} s from the run's start)."
            )
    return out


def other_table(name: str, res: dict[str, Any] | None) -> list[str]:
    """One of the per-stage benches' latest results, as a small table."""
    if res is None:
        return [f"`{name}`: no results here yet; run `python -m benchmarks {name}`.", ""]
    # some benches save every option given, the other benches' too: keep only their own
    theirs = tuple(f"{o}_" for o in (*OTHERS, "e2e", "scale") if o != name)
    params = ", ".join(f"{k} {v}" for k, v in res["params"].items() if not k.startswith(theirs))
    lines = [
        f"`{name}` ({res['finished']}, {params}; load {res['machine']['loadavg_1m']}):",
        "",
        "| metric | value | unit | target | ok? |",
        "|---|---:|---|---|---|",
    ]
    marks = {True: "yes", False: "**no**", None: ""}
    for m in res["metrics"]:
        value = m["value"]
        shown = _num(value, 0 if abs(value) >= 100 else 2) if isinstance(value, float) else value
        if isinstance(value, int) and not isinstance(value, bool):
            shown = f"{value:,}"
        lines.append(
            f"| {m['metric']} | {shown} | {m['unit']} | {m['target']} | {marks[m['ok']]} |"
        )
    return [*lines, ""]


def render_block(res: dict[str, Any], others: dict[str, dict[str, Any] | None]) -> str:
    src = res["details"]["source"]
    counts = ", ".join(f"{v:,} {k}s" for k, v in src["counts"].items())
    lines = [
        BEGIN,
        f"Latest run: {res['finished']}, {res['params']['issues']:,} issues in "
        f"{res['params']['tenants']} tenants ({counts}).",
        "",
        f"Machine: {_machine(res)}.",
        "",
        target_line(res),
        "",
        f"Seeding took {src['seed_s']:.0f} s and the capture snapshot {src['capture_s']:.0f} s "
        "(done once, not part of the timed export).",
        "",
        *results_table(res),
        "",
        *_measured(res),
        *_first_read(res),
        "",
        "![events/s per stage and end-to-end seconds](performance.png)",
        "",
        "Beside Atlassian's published figure (the comparison section above says what differs):",
        "",
        *comparison(res),
        "",
        "### Latest figures of the per-stage benches",
        "",
    ]
    for name in OTHERS:
        lines += other_table(name, others.get(name))
    return "\n".join([*lines, END])


def replace_block(text: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with the part between ``begin`` and ``end`` (inclusive) replaced by ``block``."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"the doc has no results block: expected {begin!r} ... {end!r}")
    return text[:start] + block + text[stop + len(end) :]


def other_results(results: Path) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {}
    for name in OTHERS:
        path = results / f"latest-{name}.json"
        out[name] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    return out


def update_doc(path: Path, res: dict[str, Any], others: dict[str, dict[str, Any] | None]) -> None:
    path.write_text(replace_block(path.read_text(encoding="utf-8"), render_block(res, others)))


def publish(res: dict[str, Any], results: Path, docs: Path) -> Path:
    """The chart (results/e2e.png, copied to docs/performance.png) and the doc's block."""
    from benchmarks.e2e_report import write_chart

    chart = write_chart(res, results / "e2e.png")
    shutil.copyfile(chart, docs / "performance.png")
    update_doc(docs / "performance.md", res, other_results(results))
    return chart


def publish_scale(res: dict[str, Any] | None, docs: Path) -> None:
    """The scale bench's block of performance.md (its placeholder when ``res`` is None)."""
    path = docs / "performance.md"
    block = scale_report.render_block(res)
    text = path.read_text(encoding="utf-8")
    path.write_text(replace_block(text, block, scale_report.BEGIN, scale_report.END))


def main() -> None:
    """Re-render the doc's blocks and the chart from the saved latest results (no bench run)."""
    from benchmarks.report import RESULTS

    docs = Path(__file__).resolve().parents[1] / "docs"
    scale = RESULTS / "latest-scale.json"
    publish_scale(json.loads(scale.read_text(encoding="utf-8")) if scale.exists() else None, docs)
    latest = RESULTS / "latest-e2e.json"
    if not latest.exists():
        raise SystemExit(f"{latest} does not exist; run `python -m benchmarks e2e` first")
    res = json.loads(latest.read_text(encoding="utf-8"))
    publish(res, RESULTS, docs)


if __name__ == "__main__":
    main()
