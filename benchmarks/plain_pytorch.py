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

from catdog_pl.cli import bf16_is_fast
from catdog_pl.data import CatDogDataModule
from catdog_pl.model import SeedCNN
from catdog_pl.module import stage_metrics
from catdog_pl.process import prepare_process


def run(data_dir: str, epochs: int = 25, seed: int = 42, bf16: bool | None = None) -> dict[str, float | list[float]]:
    start = time.perf_counter()
    torch.manual_seed(seed)
    bf16 = bf16_is_fast() if bf16 is None else bf16
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dm = CatDogDataModule(data_dir=data_dir)
    dm.setup("fit")
    train_set, val_set = dm.train_set.to(device), dm.val_set.to(device)
    dm.train_set, dm.val_set = train_set, val_set
    net = SeedCNN().to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7, fused=True)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    metrics = {stage: stage_metrics(stage).to(device) for stage in ("train", "val")}  # the module's own

    def epoch_metrics(stage: str, outputs: list) -> dict[str, float]:
        losses, probs, targets = (torch.cat(parts) for parts in zip(*outputs, strict=True))
        metrics[stage].update(probs, targets)
        values = {f"{stage}/loss": losses.mean().item(), **{k: v.item() for k, v in metrics[stage].compute().items()}}
        metrics[stage].reset()
        return values

    epoch_seconds = []
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        net.train()
        outputs = []
        for batch in dm.train_dataloader():
            images, targets = dm.prepare_batch(batch, train=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = net(images.contiguous(memory_format=torch.channels_last)).float()
            losses = loss_fn(logits, targets.float())
            optimizer.zero_grad(set_to_none=True)
            losses.mean().backward()
            optimizer.step()
            outputs.append((losses.detach(), torch.sigmoid(logits.detach()), targets))
        train = epoch_metrics("train", outputs)
        net.eval()
        outputs = []
        with torch.inference_mode():
            for batch in dm.val_dataloader():
                images, targets = dm.prepare_batch(batch, train=False)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = net(images.contiguous(memory_format=torch.channels_last)).float()
                outputs.append((loss_fn(logits, targets.float()), torch.sigmoid(logits), targets))
        val = epoch_metrics("val", outputs)
        epoch_seconds.append(time.perf_counter() - epoch_start)
    return {
        "seconds": time.perf_counter() - start,
        "train_loss": train["train/loss"],
        "val_acc": val["val/acc"],
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
