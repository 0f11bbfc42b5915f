"""Benchmark results: metrics with targets, a rich table, and JSON files under results/."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.quiet import prune

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Metric:
    """One measured value; ``ok`` is None when the metric has no target."""

    metric: str
    value: float | int | str
    unit: str = ""
    target: str = ""
    ok: bool | None = None


def at_least(name: str, value: float, target: float, unit: str) -> Metric:
    return Metric(name, round(value, 1), unit, f">= {target:,.0f}", value >= target)


def at_most(name: str, value: float | None, target: float, unit: str) -> Metric:
    if value is None:
        return Metric(name, "not reached", unit, f"< {target:g}", False)
    return Metric(name, round(value, 3), unit, f"< {target:g}", value < target)


def info(name: str, value: float | int | str, unit: str = "") -> Metric:
    return Metric(name, round(value, 3) if isinstance(value, float) else value, unit)


def machine() -> dict[str, Any]:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        # other work on the machine skews the numbers; this says how busy it was
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def result(
    name: str, params: dict[str, Any], metrics: list[Metric], **details: Any
) -> dict[str, Any]:
    """The dict a benchmark's ``run`` returns."""
    return {
        "benchmark": name,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": params,
        "metrics": [asdict(m) for m in metrics],
        "details": details,
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_table(
    res: dict[str, Any], console: Console | None = None, before: dict[str, Any] | None = None
) -> None:
    """The metrics as a table; with ``before`` (the previous kept run) beside each value."""
    title = f"benchmark: {res['benchmark']}"
    if before is not None:
        title += f" (previous run {before.get('finished', '?')})"
    table = Table("metric", "value", "previous", "unit", "target", "ok?", title=title)
    marks = {True: "[green]yes[/green]", False: "[red]NO[/red]", None: ""}
    earlier = {m["metric"]: m["value"] for m in (before or {}).get("metrics", [])}
    for m in res["metrics"]:
        was = _cell(earlier[m["metric"]]) if m["metric"] in earlier else ""
        table.add_row(m["metric"], _cell(m["value"]), was, m["unit"], m["target"], marks[m["ok"]])
    (console or Console()).print(table)


def write_json(res: dict[str, Any], results: Path = RESULTS) -> Path:
    """Save a result; returns its timestamped file.

    A published result (taken on a quiet machine, see benchmarks/quiet.py) becomes
    results/<name>-<UTC timestamp>.json and results/latest-<name>.json, and only the newest
    few timestamped ones are kept; an unpublished one goes to results/busy/ alone.
    """
    name = res["benchmark"]
    published = res.get("published", True)
    folder = results if published else results / "busy"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(res, indent=2, default=str) + "\n"
    path = folder / f"{name}-{stamp}.json"
    path.write_text(text, encoding="utf-8")
    if published:
        (results / f"latest-{name}.json").write_text(text, encoding="utf-8")
        prune(results, name)
    return path
