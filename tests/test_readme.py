"""Every command the README shows runs as printed, on tiny generated photos with the epochs cut: a README line
that stops working fails here. DDP lines run with 2 CPU processes, ``serve`` as a real server on a free port."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from catdog_pl.cli import main
from catdog_pl.data.inputs import expand_inputs

from .helpers import ROOT, make_classes, make_dataset, read_csv, run_subprocess, write_image
from .serving import Server

README = ROOT / "README.md"
#: Commands the README shows that this test does not run, by a piece of their text, and why.
NOT_RUN = {
    "pip install": "installing is what .ci/run does before the tests",
    "python -m pytest": "the tests themselves",
    "bash .ci/run": "CI itself",
    "tensorboard --logdir": "a viewer that runs until stopped; the fit tests check its event files",
    "prepare --out": "downloads the 800 MB archive; tests/test_prepare.py runs it against a local server",
    "--trainer.devices 4": "needs 4 GPUs",
    "torchrun": "needs several machines",
}


def readme_commands() -> list[str]:
    """The shell commands of the README's ``bash`` blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.extend(part.strip() for part in line.split("&&"))
    return commands


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    make_dataset(root / "data", n_train=8, n_test=4)
    rng = np.random.default_rng(5)
    for i in range(7):  # an odd count: under DDP the sampler repeats one photo to even out the shards
        write_image(root / "photos" / f"p{i}.jpg", rng, bright=i % 2 == 0)
    write_image(root / "photo.jpg", rng, bright=True)
    # the other layouts the README shows, tiny: train/ + validation/ + test/, a folder of classes, a labels CSV
    make_classes(root / "clothing", ["hat", "shirt", "shoes"], {"train": 6, "validation": 3, "test": 3})
    make_classes(root / "flowers", ["daisy", "rose", "tulip"], {"train": 8}, layout="folder")
    make_classes(root, ["fox", "owl"], {"train": 6, "val": 3}, layout="csv")  # root/labels.csv
    write_image(root / "other.png", rng, bright=False)
    return root


def as_tiny(command: str, root: Path) -> list[str]:
    """The command's arguments with the data made tiny and the epochs cut; every flag otherwise as printed."""
    text = command.replace("../shared/data/cats_vs_dogs", str(root / "data")).replace("version_N", "version_0")
    text = text.replace("../shared/data/clothing", str(root / "clothing"))
    text = text.replace("configs/", f"{ROOT / 'configs'}/")  # the README runs from the repository's root
    args = shlex.split(text.replace("photos/", str(root / "photos")))
    args = args[3:] if args[:3] == ["python", "-m", "catdog_pl"] else args
    if args[0] == "fit":  # one epoch, or one more when resuming
        args += ["--trainer.max_epochs", "2" if "--ckpt_path" in args else "1"]
    if args[0] in ("fit", "lr_find"):  # small inputs for the pretrained backbone
        args += ["--model.image_size", "64"] if "finetune" in text else []
    if args[0] in ("fit", "test", "predict", "validate"):
        args += ["--trainer.enable_progress_bar", "false"]
    return args


def newest(root: Path, pattern: str) -> Path:
    return max(root.glob(pattern), key=lambda path: path.stat().st_mtime)


def run_in_process(args: list[str], root: Path, capsys) -> str:
    try:
        main(args)
    except SystemExit as exit_:  # --help
        assert exit_.code == 0, f"{shlex.join(args)} exited {exit_.code}"
    return capsys.readouterr().out


def check(args: list[str], output: str, root: Path, started: float) -> None:
    """What the command must have produced, beyond exiting 0."""
    if args[0] == "fit":
        last = newest(root, "lightning_logs/version_*/checkpoints/last.ckpt")
        assert last.stat().st_mtime >= started
        assert torch.load(last, weights_only=True)["epoch"] == int(args[args.index("--trainer.max_epochs") + 1]) - 1
    elif args[0] == "test":
        assert re.search(r"test accuracy \d\.\d{3} \(\d\.\d{3}-\d\.\d{3}, n=8\)", output)
    elif args[0] == "predict":
        csv_path = newest(root, "lightning_logs/version_*/predictions.csv")
        assert csv_path.stat().st_mtime >= started  # in the run folder, as the README says
        rows = read_csv(csv_path)
        assert [row["path"] for row in rows] == expand_inputs(root / "photos")  # each input once, in order
        assert list(rows[0]) == ["path", "label", "probability", "p_cat", "p_dog", "error"]
    elif args[0] == "report":
        assert (root / "reports" / Path(args[1]).name / "index.md").is_file()
    elif args[0] == "export":
        assert (root / args[args.index("--output") + 1]).stat().st_mtime >= started
    elif args[0] == "lr_find":
        assert re.search(r"lr_find: suggested --model.lr (\d\.\d\de-\d\d|none)", output)
        assert newest(root, "lightning_logs/version_*/lr_find.png").stat().st_mtime >= started


def test_every_readme_command_runs_as_printed(workdir, capsys, monkeypatch):
    monkeypatch.chdir(workdir)
    commands = readme_commands()
    assert any("configs/ddp.yaml" in c for c in commands) and any(c.startswith("curl") for c in commands)
    server, ran, skipped = None, [], []
    with contextlib.ExitStack() as servers:
        for command in commands:
            reason = next((why for text, why in NOT_RUN.items() if text in command), None)
            if reason:
                skipped.append(command)
                continue
            started = time.time() - 1
            if command.startswith("curl"):
                assert server is not None, "the README's curl line needs the serve line before it"
                url = command.replace("http://127.0.0.1:8000", server.url)
                answer = subprocess.run(shlex.split(url), cwd=workdir, capture_output=True, text=True, timeout=60)
                assert json.loads(answer.stdout)["label"] in ("cat", "dog"), answer.stdout + answer.stderr
            elif " serve " in f" {command} ":
                server = servers.enter_context(Server(*as_tiny(command, workdir)[1:], log=workdir / "serve.log"))
            else:
                args = as_tiny(command, workdir)
                distributed = "ddp" in command
                output = run_subprocess(args, workdir).stdout if distributed else run_in_process(args, workdir, capsys)
                check(args, output, workdir, started)
            ran.append(command)
    kinds = {shlex.split(command)[3] if command.startswith("python -m") else command.split()[0] for command in ran}
    assert kinds >= {"fit", "test", "predict", "report", "export", "serve", "curl"}, kinds
    assert any("ddp" in command for command in ran) and len(ran) + len(skipped) == len(commands)
    stale = [text for text in NOT_RUN if not any(text in command for command in skipped)]
    assert stale == [], f"NOT_RUN names commands the README no longer shows: {stale}"


def test_every_readme_python_example_runs(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    if not (workdir / "model.onnx").is_file() or not list(workdir.glob("lightning_logs/version_0/checkpoints/*")):
        pytest.skip("needs the files of test_every_readme_command_runs_as_printed (run the whole module)")
    for code in python_blocks():
        result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{code}\n{result.stderr[-3000:]}"
        assert re.search(r"\b(cat|dog)\b", result.stdout), result.stdout
