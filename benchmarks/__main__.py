"""``python -m benchmarks [NAME|all] [--json]``: run benchmarks, print and save results.

A benchmark is a module ``benchmarks/<name>.py`` listed in BENCHMARKS, with
``add_arguments(parser)`` (its own options) and ``run(args) -> dict`` (see report.result).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from types import ModuleType
from typing import Any

from rich.console import Console

from benchmarks.report import print_table, write_json

BENCHMARKS: tuple[str, ...] = ("capture", "processor", "sink", "e2e")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("name", nargs="?", default="all", choices=[*BENCHMARKS, "all"])
    p.add_argument("--json", action="store_true", help="print the results as JSON only")
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
        res = _module(name).run(args)
        path = write_json(res)
        results.append(res)
        if not args.json:
            print_table(res, console)
            console.print(f"saved {path}", highlight=False)
    if args.json:
        json.dump(results if len(results) > 1 else results[0], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
