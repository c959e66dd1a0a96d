import json
import os
import subprocess
import sys

import pytest

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
    from catdog_pl.denormals import flush_denormals
    torch.ones(1 << 20).mul(2)  # parallel work: the intra-op threads start with the default mode
    flush_denormals()
torch.set_num_threads(2)
tiny = torch.full((1 << 20,), 1e-30).mul(1e-10)
print(json.dumps({"denormal": int((tiny != 0).sum()), "of": tiny.numel(), "supported": torch.set_flush_denormal(True)}))
"""


def probe(mode: str, data_dir: str = "") -> dict:
    env = {**os.environ, "PROBE_ARGS": f"{mode}|{CONFIG}|{data_dir}"}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    if not found["supported"]:
        pytest.skip("this CPU cannot flush denormals")
    return found


def test_cli_flushes_denormals_in_every_intra_op_thread(tiny_data):
    assert probe("none")["denormal"] == 1 << 20  # the probe makes denormals where nothing flushes them
    found = probe("cli", str(tiny_data))
    assert found["denormal"] == 0, f"{found['denormal']} of {found['of']} results stayed denormal after main"


def test_a_flush_after_the_threads_started_misses_them():
    # Why main flushes before any work: a thread already running keeps its mode (half the results here).
    found = probe("late")
    assert 0 < found["denormal"] < found["of"]
