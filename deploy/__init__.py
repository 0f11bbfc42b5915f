"""Deployment files; the local stack's Maven poms and log config ship in the wheel.

A package only so that an installed Sluiceway finds ``kafka/`` and ``s3proxy/`` as
``sluiceway._stack_files`` with importlib.resources (see pyproject.toml's package-dir).
"""
