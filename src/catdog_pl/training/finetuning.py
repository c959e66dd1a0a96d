"""Fine-tuning a pretrained body: the learning-rate schedule per phase, frozen epochs through Lightning's
``BaseFinetuning``, and the linear probe fitted on features computed once.

The recipe of ``configs/finetune.yaml`` is LP-FT (Kumar et al., ICLR 2022): the new head is fitted to convergence
on the frozen body's features (:func:`fit_linear_probe`, before the first epoch), then the whole network is
fine-tuned from that head at a low rate with its own warm-up and decay. A frozen body in eval mode gives the same
features for the same input every epoch, so they are computed once per view instead of once per epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from tqdm.auto import tqdm

from catdog_pl.evaluation.calibration import logit_loss
from catdog_pl.models.backbones import body_modules, head_parameters

#: L2 penalties on the head's weights tried by the linear probe (added to the mean loss); the best on validation wins.
PROBE_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2)


def phase_factors(phase_steps: Sequence[int], warmup_fraction: float) -> Callable[[int], float]:
    """The learning-rate factor of each step for phases of ``phase_steps`` steps: each phase warms up linearly from
    0.01 over ``warmup_fraction`` of its steps, then decays to zero along a cosine, so every phase starts its own
    schedule at the rate the config names (fastai's ``fine_tune`` restarts its one-cycle the same way)."""
    bounds = [0]
    for steps in phase_steps:
        bounds.append(bounds[-1] + max(1, int(steps)))

    def factor(step: int) -> float:
        phase = next((i for i in range(len(phase_steps)) if step < bounds[i + 1]), len(phase_steps) - 1)
        length = bounds[phase + 1] - bounds[phase]
        local = min(step - bounds[phase], length - 1)
        warmup = max(1, int(length * warmup_fraction))
        if local < warmup:
            return 0.01 + 0.99 * local / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (local - warmup) / max(1, length - warmup)))

    return factor


class FreezeBody(BaseFinetuning):
    """The body frozen (no gradients, BatchNorm statistics kept, eval mode) for the first ``freeze_epochs``,
    then trainable; the module's schedule gives each phase its own warm-up and decay.

    Under DDP the body's parameters would be left out of the gradient sync at wrap time, so frozen epochs are
    refused there; the linear probe (``--model.linear_probe true``) freezes nothing in the loop and runs under DDP.
    """

    def __init__(self, freeze_epochs: int, train_bn: bool) -> None:
        super().__init__()
        self.freeze_epochs = freeze_epochs
        self.train_bn = train_bn

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.world_size > 1:
            raise ValueError(
                "--model.freeze_epochs does not run under DDP (the frozen parameters would miss the gradient sync "
                "once unfrozen): use --model.linear_probe true, which fits the head before the first epoch"
            )
        if stage == "fit":
            super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        self.freeze(body_modules(pl_module.net), train_bn=False)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        # >=, not ==: a run resumed after the boundary unfreezes at its first epoch. The body's parameters are in
        # the optimizer from the start (their rate is zero while frozen), so no parameter group is added.
        if epoch >= self.freeze_epochs:
            self.make_trainable(body_modules(pl_module.net))

    def frozen(self, epoch: int) -> bool:
        return epoch < self.freeze_epochs


def _move(batch: Sequence, device: torch.device) -> tuple:
    return tuple(part.to(device, non_blocking=True) if isinstance(part, torch.Tensor) else part for part in batch)


@torch.no_grad()  # not inference_mode: the head is fitted on these tensors with autograd
def compute_features(
    module: LightningModule, trainer: Trainer, loader, train: bool, views: int, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N * views, F)`` features of the frozen body and their class indices, the batches finished as fit finishes
    them (augmented when ``train``) and the forward pass in the trainer's precision."""
    datamodule = trainer.datamodule
    features, targets = [], []
    bar = tqdm(total=views * len(loader), desc=f"linear probe: {what} features", disable=not trainer.is_global_zero)
    with trainer.precision_plugin.forward_context():
        for _ in range(views):
            for batch in loader:
                images, labels, *_ = datamodule.prepare_batch(_move(batch, module.device), train=train)
                if images.numel():
                    features.append(module.net.features(module.network_input(images)).float())
                    targets.append(labels.long())
                bar.update()
    bar.close()
    return torch.cat(features), torch.cat(targets)


def fit_head(
    features: torch.Tensor,
    targets: torch.Tensor,
    num_outputs: int,
    decay: float,
    class_weights: torch.Tensor | None = None,
    steps: int = 200,
) -> nn.Linear:
    """A linear head fitted to convergence on fixed features (L-BFGS, full batch): softmax regression, or logistic
    regression for one output, with an L2 penalty of ``decay`` on the weights."""
    features, targets = features.detach().float(), targets.detach().long()
    head = nn.Linear(features.shape[1], num_outputs).to(features.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")
    weights = None if class_weights is None else class_weights.to(features.device)[targets]

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = head(features).squeeze(1) if num_outputs == 1 else head(features)
        if weights is None:
            loss = logit_loss(logits, targets)
        else:
            losses = (
                nn.functional.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none")
                if num_outputs == 1
                else nn.functional.cross_entropy(logits, targets, reduction="none")
            )
            loss = (losses * weights).sum() / weights.sum()
        loss = loss + decay * head.weight.pow(2).sum() / 2
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return head


def _accuracy(head: nn.Linear, features: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.no_grad():
        logits = head(features)
        predicted = (logits.squeeze(1) >= 0).long() if logits.shape[1] == 1 else logits.argmax(1)
        return float((predicted == targets).float().mean()) if len(targets) else 0.0


def fit_linear_probe(module: LightningModule, trainer: Trainer, views: int) -> dict[str, float]:
    """Fit the new head of ``module.net`` on its frozen body's features: ``views`` augmented passes over the
    training photos, the weight decay chosen on the validation photos among :data:`PROBE_DECAYS`. The fitted
    weights replace the head's in place (the optimizer keeps them). Under DDP every process computes the same
    features and rank 0's head is broadcast."""
    start = time.perf_counter()
    head = head_parameters(module.net)
    linear = module.net.head()
    if not isinstance(linear, nn.Linear) or len(head) != 2:
        raise ValueError(f"--model.linear_probe needs a single linear head, {module.hparams.backbone} has {linear}")
    was_training = module.training
    module.eval()  # the frozen body: BatchNorm's statistics and no dropout
    datamodule = trainer.datamodule
    train = compute_features(module, trainer, datamodule.train_dataloader(), True, views, "training")
    val = compute_features(module, trainer, datamodule.val_dataloader(), False, 1, "validation")
    weights = module.class_weights if module.hparams.balance else None
    outputs = linear.out_features
    best = None
    for decay in PROBE_DECAYS:
        fitted = fit_head(*train, outputs, decay, weights)
        accuracy, loss = _accuracy(fitted, *val), _val_loss(fitted, *val)
        if best is None or (accuracy, -loss) > (best[1], -best[2]):
            best = (fitted, accuracy, loss, decay)
    fitted, accuracy, loss, decay = best
    state = trainer.strategy.broadcast({k: v.cpu() for k, v in fitted.state_dict().items()}, src=0)
    with torch.no_grad():
        linear.weight.copy_(state["weight"].to(linear.weight))
        linear.bias.copy_(state["bias"].to(linear.bias))
    module.train(was_training)
    figures = {"probe/val_acc": accuracy, "probe/val_loss": loss, "probe/decay": decay}
    figures["probe/seconds"] = time.perf_counter() - start
    rank_zero_info(
        f"linear probe: head fitted on {len(train[1]):,} features ({views} view(s) of the training photos) in "
        f"{figures['probe/seconds']:.0f} s; validation accuracy {accuracy:.4f} (weight decay {decay:g})"
    )
    return figures


def _val_loss(head: nn.Linear, features: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.no_grad():
        logits = head(features)
        return float(logit_loss(logits.squeeze(1) if logits.shape[1] == 1 else logits, targets))
