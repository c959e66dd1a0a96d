"""torch: whether this CPU runs bf16 natively. ``torch.cpu`` has no public probe for it (torch 2.14)."""

from __future__ import annotations

#: The private probes of ``torch.cpu``, any of which means native bf16 matrix work.
BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX on this CPU; ``False`` where torch has neither probe."""
    import torch

    return any(getattr(torch.cpu, name, lambda: False)() for name in BF16_PROBES)
