"""Sluiceway: a self-hosted streaming extraction pipeline."""

__version__ = "0.1.0"
