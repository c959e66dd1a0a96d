"""Lightning 2.6: the hook where a ``LightningCLI`` reads a checkpoint's hyper-parameters, and the processes its
own DDP launcher starts. Neither has a public interface."""

from __future__ import annotations

import signal
from typing import Any

#: ``LightningCLI.__init__`` calls this method after parsing and before instantiating the classes; there the
#: checkpoint's hyper-parameters replace the configuration's.
PARSE_CKPT_PATH = "_parse_ckpt_path"


class CheckpointBeforeLightning:
    """Mix into a ``LightningCLI``: :meth:`check_ckpt_path` runs before Lightning reads the checkpoint, and
    :meth:`after_ckpt_path` once it has."""

    def check_ckpt_path(self) -> None:
        """Refuse a checkpoint before Lightning unpickles it."""

    def after_ckpt_path(self) -> None:
        """Adjust the configuration after the checkpoint's hyper-parameters went into it."""

    def _parse_ckpt_path(self) -> None:
        self.check_ckpt_path()
        super()._parse_ckpt_path()  # type: ignore[misc]
        self.after_ckpt_path()


def own_launcher(strategy: Any) -> Any | None:
    """The launcher of a DDP run whose processes Lightning itself starts (``--trainer.devices 2`` without torchrun
    or SLURM, which watch their processes themselves), or ``None``. Its ``procs`` are the other ranks' processes
    in the first process, empty in the others."""
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    launcher = getattr(strategy, "launcher", None)
    if not isinstance(launcher, _SubprocessScriptLauncher):
        return None
    return launcher if type(launcher.cluster_environment) is LightningEnvironment else None


def kill_launched_children(strategy: Any) -> None:
    """SIGKILL to the children of Lightning's launcher that are still alive; nothing in a child process."""
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    launcher = getattr(strategy, "launcher", None)
    if isinstance(launcher, _SubprocessScriptLauncher):
        launcher.kill(signal.SIGKILL)
