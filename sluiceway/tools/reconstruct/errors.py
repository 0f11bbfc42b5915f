"""What reconstruct refuses, each as one line naming the bad value and what was expected."""

from __future__ import annotations

from sluiceway.common.errors import ConfigError, TerminalError, TransientError


class BrokenChainError(TerminalError):
    """The lake cannot prove full + deltas are complete: a gap, a missing run or file,
    or a manifest that disagrees with its files. Retrying will not mend it."""


class TargetError(ConfigError):
    """``--out`` is malformed, or names a table whose columns differ from the result's."""


class TargetWriteError(TransientError):
    """Writing the result failed midway (disk full, connection lost); nothing was committed
    and the temporary is gone, so running the command again is safe."""
