"""The checkout the tests run from: tests read its files (README, deploy/, docs/) directly."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
