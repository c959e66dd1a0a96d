import json
import subprocess
import sys

import pytest

from catdog_pl import allocator

pytestmark = pytest.mark.skipif(not allocator.is_glibc(), reason="glibc's thresholds; other C libraries are left alone")

# After the command line's main: (1) a fresh process's first 24 MB block comes from the heap and stays there once
# freed (glibc's defaults map it and unmap it on free: deterministic, whatever the heap's history); (2) train steps
# of the network in fp32 at batch 32 (a 15.7 MB first activation) fault in almost no new pages.
PROBE = """
import ctypes, json, resource, torch
from catdog_pl.cli import main
from catdog_pl.model import SeedCNN
try:
    main(["fit", "--help"])
except SystemExit:
    pass

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS.split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = libc.mallinfo2().hblks
block = libc.malloc(24 * 2**20)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
kept_mb = libc.mallinfo2().keepcost / 2**20

torch.manual_seed(0)
net = SeedCNN().to(memory_format=torch.channels_last)
optimizer = torch.optim.Adam(net.parameters(), fused=True)
def step():
    x = torch.rand(32, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    loss = net(x).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
for _ in range(5):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 20
print(json.dumps({"mapped": mapped, "kept_mb": kept_mb, "faults_per_step": faults}))
"""


@pytest.mark.skipif(not hasattr(allocator.ctypes.CDLL(None), "mallinfo2"), reason="mallinfo2 needs glibc >= 2.33")
def test_cli_main_keeps_large_blocks_in_the_heap():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["mapped"] == 0, "a 24 MB block was mmapped: the mmap threshold is not pinned"
    assert probe["kept_mb"] >= 24, "a freed 24 MB block went back to the system: the trim threshold is not pinned"
    # Unpinned, this loop faulted 800-10,900 pages a step on the 2-core VM, or ~1 when the heap happened to start
    # well; pinned, ~1 every time.
    assert probe["faults_per_step"] < 500


def test_users_own_malloc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert allocator.pin_malloc_thresholds() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    assert allocator.pin_malloc_thresholds() is False


def test_other_c_libraries_are_left_alone(monkeypatch):
    def no_glibc(name):
        raise ValueError(name)

    monkeypatch.setattr(allocator.os, "confstr", no_glibc)
    assert allocator.is_glibc() is False
    assert allocator.pin_malloc_thresholds() is False


def test_falls_back_to_32_mb_where_glibc_caps_the_mmap_threshold(monkeypatch):
    calls = []

    class OldGlibc:  # refuses an mmap threshold above 32 MB, as glibc's HEAP_MAX_SIZE / 2 check does
        def mallopt(self, option, value):
            calls.append((option, value))
            return int(option != -3 or value <= 32 * 2**20)

    for name in allocator._USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: OldGlibc())
    assert allocator.pin_malloc_thresholds() is True
    assert calls == [(-3, 256 * 2**20), (-3, 32 * 2**20), (-1, 256 * 2**20)]
