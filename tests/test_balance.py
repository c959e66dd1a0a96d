"""Class balancing for imbalanced data: a weighted sampler (``--data.balanced_sampling``) and a class-weighted loss
(``--model.balance``), alone or together, in a fit that logs its hyper-parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import WeightedRandomSampler

from .helpers import CONFIG, NO_FILES, make_classes, run


def imbalanced(root):
    """3 classes with 3, 12 and 12 training photos."""
    data = make_classes(root, 3, {"train": 12, "val": 2})
    for path in sorted((data / "train" / "c00").glob("*.jpg"))[3:]:
        path.unlink()
    return data


def test_both_balancings_fit_with_a_logger_and_weight_the_rare_class(tmp_path):
    data = imbalanced(tmp_path / "d")
    # Both options at once, with TensorBoard logging the module's and the data's hyper-parameters together (one
    # name for both once made Lightning refuse the fit).
    cli = run("fit", "--config", CONFIG, "--data.data_dir", data, "--trainer.max_epochs", "1", "--data.batch_size",
              "8", "--trainer.logger.init_args.save_dir", tmp_path, "--model.balance", "true",
              "--data.balanced_sampling", "true")  # fmt: skip
    assert cli.datamodule.class_counts == [3, 12, 12]
    assert cli.model.class_weights.tolist() == [3.0, 0.75, 0.75]  # 27 photos / (3 classes x count)
    logits, targets = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    expected = F.cross_entropy(logits, targets, label_smoothing=cli.model.hparams.label_smoothing, reduction="none")
    assert torch.allclose(cli.model.image_losses(logits, targets), expected * torch.tensor([3.0, 0.75, 0.75] * 2))

    sampler = cli.datamodule.train_dataloader().sampler
    assert isinstance(sampler, WeightedRandomSampler) and sampler.replacement and sampler.num_samples == 27
    shares = torch.zeros(3, dtype=torch.float64).index_add_(
        0, torch.tensor(cli.datamodule.train_targets), sampler.weights
    )
    assert torch.allclose(shares / shares.sum(), torch.full((3,), 1 / 3, dtype=torch.float64))  # each class alike
    assert list(sampler) == list(cli.datamodule.train_dataloader().sampler)  # seeded: the same draws each time


def test_without_balancing_the_loss_is_plain_and_the_sampler_unweighted(tmp_path):
    data = imbalanced(tmp_path / "d")
    cli = run("fit", "--config", CONFIG, "--data.data_dir", data, "--trainer.max_epochs", "1", "--data.batch_size",
              "8", *NO_FILES)  # fmt: skip
    logits, targets = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    expected = F.cross_entropy(logits, targets, label_smoothing=cli.model.hparams.label_smoothing, reduction="none")
    assert torch.allclose(cli.model.image_losses(logits, targets), expected)
    assert not isinstance(cli.datamodule.train_dataloader().sampler, WeightedRandomSampler)
