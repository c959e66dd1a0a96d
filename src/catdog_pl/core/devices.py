"""Where tensors run: the default precision for a device, and host-to-device copies that do not wait."""

from __future__ import annotations

import torch

from catdog_pl.compat.torch import cpu_has_native_bf16


def bf16_is_fast(accelerator: str | object = "auto") -> bool:
    """Whether bf16 autocast runs natively here: a bf16 GPU, or a CPU with AVX512-BF16 or AMX."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if accelerator in ("auto", "cpu"):
        return cpu_has_native_bf16()
    return False


def default_precision(accelerator: str | object = "auto") -> str:
    """``bf16-mixed`` where the hardware runs it natively, else ``32-true``; ``--trainer.precision`` overrides."""
    return "bf16-mixed" if bf16_is_fast(accelerator) else "32-true"


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on ``device`` without making the host wait: a pageable host-to-GPU copy waits for the
    GPU to finish its queue, a copy from pinned memory does not. On the CPU, ``tensor`` itself."""
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
