"""Files Sluiceway ships inside its package, found the same way in a checkout and a wheel.

The checkout keeps them in ``schemas/``, ``examples/`` and ``deploy/``; pyproject.toml installs
those folders as ``sluiceway._schemas``, ``sluiceway._examples`` and ``sluiceway._stack_files``,
so an installed Sluiceway never looks for a checkout around it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def schema_dir() -> Path:
    """The folder of the ``.avsc`` schemas Sluiceway ships."""
    return Path(str(files("sluiceway._schemas")))


def example_catalog(name: str) -> Path:
    """The catalog file of one shipped example (``jira``)."""
    return Path(str(files("sluiceway._examples"))) / name / "catalog.yaml"


def stack_files(name: str) -> Path:
    """The shipped build files of one local-stack server (``kafka`` or ``s3proxy``)."""
    return Path(str(files("sluiceway._stack_files"))) / name
