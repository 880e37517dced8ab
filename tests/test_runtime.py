"""thacam.runtime: the allocator setting really removes the per-frame page faults.

Each case runs in a fresh interpreter, because the setting is process-wide and cannot be undone.
A conv step with 64 MiB activations (one 64-channel 512x512 map) runs repeatedly: with glibc's
defaults every round maps fresh pages (~82 000 faults of 4 KiB); tuned, the freed blocks are
reused. Also from a worker thread, as the live pipeline renders there.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")

SCRIPT = """
import statistics, sys, threading, torch
import torch.nn.functional as F
from thacam.runtime import tune_allocator, page_faults
tuned = tune_allocator() if sys.argv[1] == "tune" else False
torch.set_num_threads(2)
x = torch.randn(1, 16, 512, 512)
w1, w2 = torch.randn(64, 16, 3, 3), torch.randn(16, 64, 1, 1)
def work(out):
    rounds = []
    for _ in range(8):  # a conv step with 64 MiB activations, as in the editor
        f0 = page_faults()
        F.conv2d(torch.relu(F.conv2d(x, w1, padding=1)) * 2, w2).sum()
        rounds.append(page_faults() - f0)
    out.append(int(statistics.median(rounds[1:])))  # the first round grows the heap
out = []
if sys.argv[2] == "thread":
    t = threading.Thread(target=work, args=(out,)); t.start(); t.join()
else:
    work(out)
print(tuned, out[0])
"""


def _faults(mode: str, where: str) -> tuple[bool, int]:
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode, where], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    tuned, faults = r.stdout.split()
    return tuned == "True", int(faults)


@pytest.mark.parametrize("where", ["main", "thread"])
def test_tuned_allocator_reuses_big_blocks(where):
    tuned, faults = _faults("tune", where)
    assert tuned
    assert faults < 1000, f"{faults} page faults per round (median)"


def test_default_allocator_faults_every_round():
    # The control: without the setting the same work faults every page again (so the test
    # above measures the setting, not something torch does anyway).
    tuned, faults = _faults("default", "main")
    assert not tuned
    assert faults > 3 * 16384  # at least three 64 MiB maps faulted in again
