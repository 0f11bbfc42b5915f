"""The kernel every layer may import: settings, errors, codec, Kafka helpers, the run contract.

Imports nothing above it (tests/unit/test_layers.py).
"""
