"""The command line flushes denormal floats to zero before any work, in every CPU thread; importing catdog_pl
changes nothing."""

import json
import os
import subprocess
import sys

import pytest

from .helpers import CONFIG

# In a fresh process: a multiplication whose results are denormal (1e-40), over enough elements that both intra-op
# threads take half, after (cli) a one-epoch fit through the command line's main, (import) importing the package
# only, or (late) a flush requested only after the intra-op threads had started. Counts the results not flushed.
PROBE = """
import json, os, torch
torch.set_num_threads(2)
mode, config, data_dir = os.environ["PROBE_ARGS"].split("|")  # sys.argv is the CLI's
if mode == "cli":
    from catdog_pl.cli import main
    main(["fit", "--config", config, "--data.data_dir", data_dir, "--trainer.max_epochs", "1",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
elif mode == "import":
    import catdog_pl, catdog_pl.cli, catdog_pl.inference.predictor
elif mode == "late":
    torch.ones(1 << 20).mul(2)  # parallel work: the intra-op threads start with the default mode
    torch.set_flush_denormal(True)
torch.set_num_threads(2)
tiny = torch.full((1 << 20,), 1e-30).mul(1e-10)
supported = torch.set_flush_denormal(False) if mode == "import" else torch.set_flush_denormal(True)
print(json.dumps({"denormal": int((tiny != 0).sum()), "of": tiny.numel(), "supported": supported}))
"""


def probe(mode: str, data_dir: str = "") -> dict:
    env = {**os.environ, "PROBE_ARGS": f"{mode}|{CONFIG}|{data_dir}"}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_main_flushes_denormals_in_every_thread_and_import_does_not(tiny_data):
    found = probe("cli", str(tiny_data))
    if not found["supported"]:
        pytest.skip("this CPU cannot flush denormals")
    assert probe("import")["denormal"] == 1 << 20  # importing the package leaves the process's float modes alone
    assert found["denormal"] == 0, f"{found['denormal']} of {found['of']} results stayed denormal after main"


def test_a_flush_after_the_threads_started_misses_them():
    # Why main flushes before any work: a thread already running keeps its mode (half the results here).
    found = probe("late")
    if not found["supported"]:
        pytest.skip("this CPU cannot flush denormals")
    assert 0 < found["denormal"] < found["of"]
