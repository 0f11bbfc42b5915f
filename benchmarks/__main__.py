"""``python -m benchmarks [NAME|all] [--json]``: run benchmarks, print and save results.

Each bench first waits for a quiet machine (``--max-load``, ``--quiet-wait``); figures taken
on a busy one are printed but not published, and the exit code is then 75. Published
figures that miss a target exit 1; every target met, 0.

A benchmark is a module ``benchmarks/<name>.py`` listed in BENCHMARKS, with
``add_arguments(parser)`` (its own options), ``run(args) -> dict`` (see report.result) and
optionally ``after_publish(result)``, called once a published result is the latest.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from types import ModuleType
from typing import Any

from rich.console import Console

from benchmarks import quiet
from benchmarks.report import RESULTS, print_table, write_json

BENCHMARKS: tuple[str, ...] = ("capture", "processor", "sink", "source_impact", "e2e", "scale")
EXIT_BUSY = 75  # EX_TEMPFAIL: the machine was busy, the figures were not published
EXIT_MISSED = 1  # published figures missed a target: a regression, not a busy machine


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("name", nargs="?", default="all", choices=[*BENCHMARKS, "all"])
    p.add_argument("--json", action="store_true", help="print the results as JSON only")
    quiet.add_arguments(p)
    for name in BENCHMARKS:
        adder = getattr(_module(name), "add_arguments", None)
        if adder is not None:
            adder(p.add_argument_group(name))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = BENCHMARKS if args.name == "all" else (args.name,)
    # progress goes to stderr so that --json leaves stdout to the results
    console = Console(stderr=args.json)
    results: list[dict[str, Any]] = []
    for name in names:
        gate = quiet.wait_for_quiet(args.max_load, args.quiet_wait)
        console.print(gate.line(), highlight=False)
        speed = quiet.host_speed()
        console.print(
            f"host speed: fresh memory {speed['fresh_memory_gb_s']:g} GB/s, "
            f"2M floats sorted in {speed['sort_2m_floats_ms']:g} ms",
            highlight=False,
        )
        args.publish = gate.quiet  # benches that render docs do so only when published
        res = quiet.with_load(_module(name).run(args), gate, speed)
        path = write_json(res)
        results.append(res)
        after = getattr(_module(name), "after_publish", None)
        if after is not None and res["published"]:
            after(res)  # e.g. docs/performance.md rendered from the latest results
        if not args.json:
            print_table(res, console, quiet.previous(RESULTS, name, path))
            console.print(f"saved {path}", highlight=False)
    if args.json:
        json.dump(results if len(results) > 1 else results[0], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    return exit_code(results)


def exit_code(results: list[dict[str, Any]]) -> int:
    """75 if a bench could not publish (a scheduler retrying later gets figures it can),
    else 1 if a published metric missed its target, else 0."""
    if not all(r["published"] for r in results):
        return EXIT_BUSY
    missed = any(m.get("ok") is False for r in results for m in r["metrics"])
    return EXIT_MISSED if missed else 0


if __name__ == "__main__":
    sys.exit(main())
