"""The control plane: export, runner, registry, worker pool, replay, claims, cleanup.

Launches the stages; no stage imports it (tests/unit/test_layers.py).
"""
