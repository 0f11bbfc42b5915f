"""Benchmarks of Sluiceway's stages against the real local stack (``python -m benchmarks``).

Each benchmark is a module ``benchmarks/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> dict``; the dispatcher in ``__main__`` prints the result as a table and
writes it to ``benchmarks/results/``. Benchmarks never assert: they measure and report.
"""
