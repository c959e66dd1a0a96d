import ctypes
import json
import os
import subprocess
import sys

import pytest
import torch

from catdog_pl import process

from .conftest import CONFIG

# In a fresh process: a multiplication whose results are denormal (1e-40), over enough elements that both intra-op
# threads take half, after (cli) a one-epoch fit through the command line's main, (late) a flush requested only
# after the intra-op threads had started, or (none) nothing. Counts the results that were not flushed to zero.
PROBE = """
import json, os, torch
torch.set_num_threads(2)
mode, config, data_dir = os.environ["PROBE_ARGS"].split("|")  # sys.argv is the CLI's
if mode == "cli":
    from catdog_pl.cli import main
    main(["fit", "--config", config, "--data.data_dir", data_dir, "--trainer.max_epochs", "1",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
elif mode == "late":
    from catdog_pl.process import flush_denormals
    torch.ones(1 << 20).mul(2)  # parallel work: the intra-op threads start with the default mode
    flush_denormals()
torch.set_num_threads(2)
tiny = torch.full((1 << 20,), 1e-30).mul(1e-10)
print(json.dumps({"denormal": int((tiny != 0).sum()), "of": tiny.numel(), "supported": torch.set_flush_denormal(True),
                  "nvml_check": os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")}))
"""


def probe(mode: str, data_dir: str = "") -> dict:
    env = {**os.environ, "PROBE_ARGS": f"{mode}|{CONFIG}|{data_dir}"}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cli_prepares_its_process(tiny_data):
    found = probe("cli", str(tiny_data))
    if found["supported"]:  # denormals flushed in every intra-op thread, not only the main one
        assert probe("none")["denormal"] == 1 << 20  # the probe makes denormals where nothing flushes them
        assert found["denormal"] == 0, f"{found['denormal']} of {found['of']} results stayed denormal after main"
    if torch.version.cuda and not torch.version.hip:
        assert found["nvml_check"] == ("1" if process.nvml_loads() else "0")


def test_a_flush_after_the_threads_started_misses_them():
    # Why main flushes before any work: a thread already running keeps its mode (half the results here).
    found = probe("late")
    if not found["supported"]:
        pytest.skip("this CPU cannot flush denormals")
    assert 0 < found["denormal"] < found["of"]


@pytest.fixture
def count_library_loads(monkeypatch):
    """Counts the libraries loaded through ctypes.CDLL (torch.cuda loads NVML so), after Lightning's setting."""
    monkeypatch.setenv(process.NVML_CHECK, "1")
    loads = []
    real_cdll = ctypes.CDLL

    def cdll(name, *args, **kwargs):
        loads.append(name)
        return real_cdll(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    return loads


def adam_step() -> None:
    weight = torch.nn.Parameter(torch.zeros(4))
    weight.grad = torch.ones(4)
    torch.optim.Adam([weight], fused=True).step()


@pytest.mark.skipif(torch.version.cuda is None or torch.cuda.is_initialized(), reason="needs a CUDA build, no GPU")
def test_optimizer_steps_stop_probing_a_missing_nvml(count_library_loads):
    if process.nvml_loads():
        pytest.skip("NVML loads here: Lightning's setting stays")
    adam_step()
    if process.NVML_LIBRARY not in count_library_loads:  # torch's check, as Lightning leaves it: a load a step
        pytest.skip("this torch no longer loads NVML on every step: skip_missing_nvml_probe has nothing to stop")
    assert process.skip_missing_nvml_probe() is True
    count_library_loads.clear()
    for _ in range(3):
        adam_step()
    assert count_library_loads == []
    assert os.environ[process.NVML_CHECK] == "0"
    assert torch.cuda.is_available() is False  # the same answer, from the fallback torch took anyway


def test_nvml_probe_stays_where_nvml_loads(monkeypatch):
    monkeypatch.setenv(process.NVML_CHECK, "1")  # Lightning's setting
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # a machine with an NVIDIA driver
    assert process.skip_missing_nvml_probe() is False
    assert os.environ[process.NVML_CHECK] == "1"
