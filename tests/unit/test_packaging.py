"""pyproject.toml ships every package and the data an installed Sluiceway reads, and bounds
every dependency; nothing looks for a checkout around the installed code."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from setuptools import find_packages

from sluiceway.common.codec import default_schema_dir
from sluiceway.common.resources import stack_files
from tests.catalogs import ENTITIES
from tests.repo import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_every_package_is_listed() -> None:
    # The stage folders are reached through sluiceway/{producers,processors,sinks} symlinks, so
    # the wheel installs them as sluiceway.* and nothing generic at the top of site-packages.
    found = set(find_packages(str(ROOT), include=["sluiceway*"]))
    listed = set(SETUPTOOLS["packages"])
    assert {"sluiceway.producers", "sluiceway.processors", "sluiceway.sinks"} <= found
    assert not listed & {"producers", "processors", "sinks"}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    assert listed - found <= set(SETUPTOOLS["package-dir"]) | set(SETUPTOOLS["package-data"])


def test_schemas_and_stack_files_come_from_the_package() -> None:
    for entity in ENTITIES:
        assert (default_schema_dir() / f"sluiceway.event.{entity.capitalize()}Event.avsc").is_file()
    for server in ("kafka", "s3proxy"):
        for name in SETUPTOOLS["package-data"][f"sluiceway._stack_files.{server}"]:
            assert (stack_files(server) / name).is_file(), name


def test_every_dependency_has_an_upper_bound() -> None:
    project = PYPROJECT["project"]
    requirements = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
        *PYPROJECT["build-system"]["requires"],
    ]
    unbounded = [
        r for r in requirements
        if not any(spec.operator in ("<", "<=", "==", "~=") for spec in Requirement(r).specifier)
    ]  # fmt: skip
    assert not unbounded


def test_no_code_walks_up_to_a_checkout() -> None:
    pattern = re.compile(r"__file__\)?\.(resolve\(\)\.)?parents?\b")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("sluiceway", "producers", "processors", "sinks")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert not offenders


def test_license_matches_pyproject() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
