"""The 25-epoch run of configs/cnn.yaml written as a plain PyTorch loop, on the same data pipeline and model.

It shows what Lightning costs: the same CatDogDataModule cache and batch augmentation, SeedCNN in
channels_last, fused Adam with Keras's defaults, bf16 autocast where the hardware runs it, and the same epoch
metrics as CatDogClassifier computes (loss, accuracy, AUROC and F1 of the training and the validation images,
from each step's per-image losses and probabilities); no checkpoints, logs or pictures.

    python benchmarks/plain_pytorch.py --data_dir ../shared/data/cats_vs_dogs
    python benchmarks/plain_pytorch.py --keep_denormals  # Adam's steps slow down as its moments turn denormal
"""

from __future__ import annotations

import argparse
import time

import torch
from catdog_pl.process import prepare_process

from catdog_pl.cli import bf16_is_fast
from catdog_pl.data import CatDogDataModule
from catdog_pl.model import SeedCNN
from catdog_pl.module import stage_metrics


class PlainLoop:
    """The plain loop's network, fused Adam and epoch metrics on ``device``, and one epoch of it (training, then
    validation) over a set-up CatDogDataModule's loaders."""

    def __init__(self, device: torch.device, bf16: bool) -> None:
        self.device, self.bf16 = device, bf16
        self.net = SeedCNN().to(device, memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7, fused=True)
        self.loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
        self.metrics = {stage: stage_metrics(stage).to(device) for stage in ("train", "val")}  # the module's own

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.net(images.contiguous(memory_format=torch.channels_last)).float()

    def epoch_metrics(self, stage: str, outputs: list) -> dict[str, float]:
        losses, probs, targets = (torch.cat(parts) for parts in zip(*outputs, strict=True))
        metrics = self.metrics[stage]
        metrics.update(probs, targets)
        values = {f"{stage}/loss": losses.mean().item(), **{k: v.item() for k, v in metrics.compute().items()}}
        metrics.reset()
        return values

    def epoch(self, dm: CatDogDataModule) -> dict[str, float]:
        """Train on ``dm``'s training batches, then validate on its validation batches; the epoch's metrics."""
        self.net.train()
        outputs = []
        for batch in dm.train_dataloader():
            images, targets = dm.prepare_batch(batch, train=True)
            logits = self.logits(images)
            losses = self.loss_fn(logits, targets.float())
            self.optimizer.zero_grad(set_to_none=True)
            losses.mean().backward()
            self.optimizer.step()
            outputs.append((losses.detach(), torch.sigmoid(logits.detach()), targets))
        train = self.epoch_metrics("train", outputs)
        self.net.eval()
        outputs = []
        with torch.inference_mode():
            for batch in dm.val_dataloader():
                images, targets = dm.prepare_batch(batch, train=False)
                logits = self.logits(images)
                outputs.append((self.loss_fn(logits, targets.float()), torch.sigmoid(logits), targets))
        return {**train, **self.epoch_metrics("val", outputs)}


def run(data_dir: str, epochs: int = 25, seed: int = 42, bf16: bool | None = None) -> dict[str, float | list[float]]:
    start = time.perf_counter()
    torch.manual_seed(seed)
    bf16 = bf16_is_fast() if bf16 is None else bf16
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dm = CatDogDataModule(data_dir=data_dir)
    dm.setup("fit")
    dm.train_set, dm.val_set = dm.train_set.to(device), dm.val_set.to(device)
    loop = PlainLoop(device, bf16)
    epoch_seconds = []
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        metrics = loop.epoch(dm)
        epoch_seconds.append(time.perf_counter() - epoch_start)
    return {
        "seconds": time.perf_counter() - start,
        "train_loss": metrics["train/loss"],
        "val_acc": metrics["val/acc"],
        "epoch_seconds": epoch_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/cats_vs_dogs")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep_denormals", action="store_true", help="do not flush them, unlike the command line")
    args = parser.parse_args()
    prepare_process()  # as the command line's main does
    if args.keep_denormals:
        torch.set_flush_denormal(False)  # before any parallel work: every thread keeps them
    result = run(args.data_dir, args.epochs, args.seed)
    epochs, k = result["epoch_seconds"], min(5, len(result["epoch_seconds"]))
    print(
        f"plain PyTorch: {args.epochs} epochs in {result['seconds']:.1f} s, last val/acc {result['val_acc']:.3f}; "
        f"an epoch: {sum(epochs[:k]) / k:.2f} s over the first {k}, {sum(epochs[-k:]) / k:.2f} s over the last {k}"
    )


if __name__ == "__main__":
    main()
