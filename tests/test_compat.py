"""Each private part of a library that ``catdog_pl.compat`` leans on, checked against the installed version: an
upgrade that moves one fails here, by name, instead of somewhere downstream."""

from __future__ import annotations

import inspect

import pytest
import torch


def test_torch_still_has_the_cpu_bf16_probes():
    from catdog_pl.compat.torch import BF16_PROBES, cpu_has_native_bf16

    for name in BF16_PROBES:
        assert callable(getattr(torch.cpu, name, None)), f"torch.cpu.{name} is gone"
        assert isinstance(getattr(torch.cpu, name)(), bool)
    assert cpu_has_native_bf16() == any(getattr(torch.cpu, name)() for name in BF16_PROBES)


def test_lightning_cli_still_reads_the_checkpoint_in_the_hook_we_override():
    from lightning.pytorch.cli import LightningCLI

    from catdog_pl.compat.lightning import PARSE_CKPT_PATH, CheckpointBeforeLightning

    assert callable(getattr(LightningCLI, PARSE_CKPT_PATH, None)), f"LightningCLI.{PARSE_CKPT_PATH} is gone"
    assert f"self.{PARSE_CKPT_PATH}()" in inspect.getsource(LightningCLI.__init__), "LightningCLI no longer calls it"
    assert PARSE_CKPT_PATH in CheckpointBeforeLightning.__dict__

    calls = []

    class Base:
        def _parse_ckpt_path(self) -> None:
            calls.append("lightning")

    class Hooked(CheckpointBeforeLightning, Base):
        def check_ckpt_path(self) -> None:
            calls.append("check")

        def after_ckpt_path(self) -> None:
            calls.append("after")

    Hooked()._parse_ckpt_path()
    assert calls == ["check", "lightning", "after"]


def test_lightnings_ddp_launcher_still_has_what_the_watchdog_uses():
    from lightning.pytorch import Trainer
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    from catdog_pl.compat.lightning import own_launcher

    for name in ("procs", "kill", "cluster_environment"):
        assert name in inspect.getsource(_SubprocessScriptLauncher), f"_SubprocessScriptLauncher.{name} is gone"
    assert own_launcher(Trainer(accelerator="cpu", devices=1, logger=False).strategy) is None
    ddp = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False).strategy
    assert isinstance(own_launcher(ddp), _SubprocessScriptLauncher) and own_launcher(ddp).procs == []


def test_litserve_still_has_the_queues_and_hooks_the_server_replaces():
    ls = pytest.importorskip("litserve", reason="the [serve] extra is not installed")
    from litserve.transport.process_transport import MPQueueTransport

    from catdog_pl.compat.litserve import SERVER_ATTRIBUTES, SERVER_HOOKS

    for name in SERVER_HOOKS:
        assert callable(getattr(ls.LitServer, name, None)), f"LitServer.{name} is gone"
    source = inspect.getsource(ls.LitServer)
    for name in SERVER_ATTRIBUTES:
        assert f"self.{name}" in source, f"LitServer no longer uses self.{name}"
    assert list(inspect.signature(MPQueueTransport).parameters)[:2] == ["manager", "queues"]
