"""The 25-epoch run of configs/cnn.yaml written as a plain PyTorch loop, on the same data pipeline and model.

It shows what Lightning costs: the same CatDogDataModule cache and batch augmentation, SeedCNN in
channels_last, fused Adam with Keras's defaults, bf16 autocast where the hardware runs it, validation (accuracy)
every epoch; no checkpoints, logs or pictures.

    python benchmarks/plain_pytorch.py --data_dir ../shared/data/cats_vs_dogs
"""

from __future__ import annotations

import argparse
import time

import torch
from torchmetrics.classification import BinaryAccuracy

from catdog_pl.cli import bf16_is_fast
from catdog_pl.data import CatDogDataModule
from catdog_pl.model import SeedCNN


def run(data_dir: str, epochs: int = 25, seed: int = 42, bf16: bool | None = None) -> dict[str, float]:
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
    loss_fn = torch.nn.BCEWithLogitsLoss()
    accuracy = BinaryAccuracy().to(device)
    for _ in range(epochs):
        net.train()
        for batch in dm.train_dataloader():
            images, targets = dm.prepare_batch(batch, train=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = net(images.contiguous(memory_format=torch.channels_last))
            loss = loss_fn(logits.float(), targets.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        accuracy.reset()
        with torch.inference_mode():
            for batch in dm.val_dataloader():
                images, targets = dm.prepare_batch(batch, train=False)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = net(images.contiguous(memory_format=torch.channels_last))
                accuracy.update(torch.sigmoid(logits.float()), targets)
    return {"seconds": time.perf_counter() - start, "val_acc": accuracy.compute().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/cats_vs_dogs")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    result = run(args.data_dir, args.epochs, args.seed)
    print(f"plain PyTorch: {args.epochs} epochs in {result['seconds']:.1f} s, last val/acc {result['val_acc']:.3f}")


if __name__ == "__main__":
    main()
