"""The package's shape: the import contracts of pyproject.toml hold (and can fail), the ONNX path stays free of
torch, the paths of the previous release still resolve, and importing the package leaves the process's global state
alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from .helpers import ROOT

PACKAGE = ROOT / "src" / "catdog_pl"
#: A module longer than this is worth a second look (a soft warning, not a rule: the layers are the rule).
LONG_MODULE = 300
#: import-linter's command, run by this Python (as .ci/run runs it: no console script on PATH needed).
LINT_IMPORTS = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
]


def lint_imports(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LINT_IMPORTS, "--config", str(config), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def contracts_config(tmp_path: Path) -> Path:
    """pyproject.toml's import-linter section alone, as a file that lint-imports reads."""
    config = tmp_path / "importlinter.toml"
    text = (ROOT / "pyproject.toml").read_text()
    config.write_text(text[text.index("[tool.importlinter]") :])
    return config


def test_the_import_contracts_hold(tmp_path):
    pytest.importorskip("importlinter", reason="pip install -e '.[dev]' brings import-linter")
    result = lint_imports(contracts_config(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_a_serving_module_that_imports_training_breaks_the_contracts(tmp_path):
    """The contracts can fail: a copy of the package whose serving imports the LightningModule is refused."""
    pytest.importorskip("importlinter", reason="pip install -e '.[dev]' brings import-linter")
    copy = tmp_path / "src" / "catdog_pl"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    uploads = copy / "serving" / "uploads.py"
    uploads.write_text(uploads.read_text() + "\nfrom catdog_pl.training.module import CatDogModule  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(copy.parent)}
    result = subprocess.run(
        [*LINT_IMPORTS, "--config", str(contracts_config(tmp_path)), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode != 0
    assert "catdog_pl.serving.uploads -> catdog_pl.training.module" in result.stdout
    assert "ONNX path" in result.stdout and "BROKEN" in result.stdout


def test_the_onnx_server_imports_neither_torch_nor_lightning():
    probe = (
        "import sys, catdog_pl, catdog_pl.cli, catdog_pl.serving.server, catdog_pl.inference.runtime; "
        "print(sorted(m for m in ('torch', 'lightning', 'torchvision', 'timm') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_long_modules_are_listed_not_refused(capsys):
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > LONG_MODULE
    }
    if long:
        warnings.warn(f"modules over {LONG_MODULE} lines, worth a look: {long}", stacklevel=1)
    assert all(n < 3 * LONG_MODULE for n in long.values()), long


def test_old_module_paths_still_resolve_for_one_release():
    from catdog_pl.inference.predictor import Predictor
    from catdog_pl.training.visualize import RunVisualizer

    with pytest.warns(FutureWarning, match="catdog_pl.training.visualize.RunVisualizer"):
        from catdog_pl.visualize import RunVisualizer as old_visualizer
    with pytest.warns(FutureWarning, match="catdog_pl.inference.predictor.Predictor"):
        from catdog_pl.prediction import Predictor as old_predictor
    assert old_visualizer is RunVisualizer and old_predictor is Predictor
    import catdog_pl
    from catdog_pl.data import CatDogDataModule  # the class path of data in configs, without a warning

    assert catdog_pl.Predictor is Predictor and CatDogDataModule.__module__ == "catdog_pl.data.datamodule"
    with pytest.raises(ImportError):
        from catdog_pl.prediction import NoSuchName  # noqa: F401


def test_a_saved_config_of_the_previous_release_still_runs(tiny_data, tmp_path):
    """A ``config.yaml`` saved by 0.2 names the callback by its old class path; fit still takes it."""
    import yaml

    from catdog_pl.cli import main

    from .helpers import CONFIG

    config = yaml.safe_load(CONFIG.read_text())
    callbacks = yaml.safe_load((CONFIG.parent / config["trainer"]["callbacks"]).read_text())
    for callback in callbacks:
        callback["class_path"] = callback["class_path"].replace("catdog_pl.training.visualize", "catdog_pl.visualize")
    config["trainer"].update(callbacks=callbacks, logger=False, fast_dev_run=1)
    callbacks[:] = [cb for cb in callbacks if "LearningRateMonitor" not in cb["class_path"]]  # needs a logger
    assert "catdog_pl.visualize.RunVisualizer" in yaml.safe_dump(config)
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(config))
    with pytest.warns(FutureWarning, match="catdog_pl.visualize.RunVisualizer is now"):
        cli = main(["fit", "--config", str(tmp_path / "old.yaml"), "--data.data_dir", str(tiny_data)])
    assert any(type(cb).__name__ == "RunVisualizer" for cb in cli.trainer.callbacks)


def test_importing_the_package_changes_no_process_setting():
    probe = (
        "import json, os, torch; before = (dict(os.environ), torch.get_num_threads()); "
        "import catdog_pl, catdog_pl.cli, catdog_pl.lightning_cli, catdog_pl.inference.predictor; "
        "import catdog_pl.reporting.report, catdog_pl.serving.server; "
        "after = (dict(os.environ), torch.get_num_threads()); "
        "changed = sorted(k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k)); "
        "print(json.dumps({'env': changed, 'threads': [before[1], after[1]]}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    # Lightning itself sets PYTORCH_NVML_BASED_CUDA_CHECK when imported; nothing else may change.
    assert set(found["env"]) <= {"PYTORCH_NVML_BASED_CUDA_CHECK"}, found["env"]
    assert found["threads"][0] == found["threads"][1]
