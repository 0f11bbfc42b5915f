"""The import layers hold: stages import only the kernel (`sluiceway.common`) and the lake
(`sluiceway.lake`), never each other, the control plane or the shell; the kernel imports nothing
above it; the lake imports only the kernel.

Every module of the `sluiceway` package is read with `ast` (imports inside functions and under
`TYPE_CHECKING` count too: a lazy import is still an arrow)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from tests.repo import ROOT

STAGES = ("producers", "processors", "sinks")
COMMON = "common"
LAKE = "lake"

# What each lower layer may import, besides itself and the standard/third-party libraries.
ALLOWED: dict[str, set[str]] = {
    COMMON: {COMMON},
    LAKE: {COMMON, LAKE},
    **{stage: {COMMON, LAKE, stage} for stage in STAGES},
}


def layer_of(module: str) -> str | None:
    """`sluiceway.<layer>....` -> layer; the shell and the top package -> "shell"."""
    parts = module.split(".")
    if parts[0] != "sluiceway":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in (*ALLOWED, "control", "tools") else "shell"


def modules() -> list[tuple[str, Path]]:
    found = []
    # followlinks: the stage folders are symlinked into the package (sluiceway/producers ...)
    for folder, _, files in os.walk(ROOT / "sluiceway", followlinks=True):
        for file in sorted(f for f in files if f.endswith(".py")):
            path = Path(folder) / file
            rel = path.relative_to(ROOT).with_suffix("")
            found.append((".".join(rel.parts).removesuffix(".__init__"), path))
    return sorted(found)


def imports(path: Path) -> list[tuple[int, str]]:
    arrows = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            arrows += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "sluiceway":  # `from sluiceway import x` names a submodule
                arrows += [(node.lineno, f"sluiceway.{alias.name}") for alias in node.names]
            else:
                arrows.append((node.lineno, node.module))
    return arrows


def violations() -> list[str]:
    found = []
    for name, path in modules():
        layer = layer_of(name)
        if layer not in ALLOWED:
            continue
        for line, target in imports(path):
            target_layer = layer_of(target)
            if target_layer is not None and target_layer not in ALLOWED[layer]:
                found.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {target}")
    return found


def test_every_stage_folder_is_seen() -> None:
    names = {name for name, _ in modules()}
    for stage in STAGES:
        assert f"sluiceway.{stage}.main" in names, f"sluiceway/{stage} is not walked"


def test_layers_import_only_downwards() -> None:
    assert violations() == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from sluiceway.control import registry\nfrom sluiceway import cli\n")
    assert [target for _, target in imports(module)] == [
        "sluiceway.control", "sluiceway.cli",
    ]  # fmt: skip
    assert layer_of("sluiceway.control.registry") not in ALLOWED["sinks"]
    assert layer_of("sluiceway.cli") not in ALLOWED["common"]
    assert layer_of("sluiceway.processors.spec") not in ALLOWED["sinks"]
