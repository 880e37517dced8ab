#!/usr/bin/env python3
"""Exploration: a separable conv (depthwise 3x3 then pointwise 1x1) as ONE Triton kernel.

Not part of thacam: a candidate for the GPU form (thacam/model/kernels.py), measured before it
earns a place there. THA3's separable blocks run a depthwise 3x3 and a pointwise 1x1 as two cuDNN
kernels with the depthwise result written to and read back from memory between them (on an H200
the 1x1 convs are ~10 % and the depthwise ~8 % of a frame's GPU time, gpu-profile.md). Here each
program computes the depthwise result for a tile of pixels and a slice of input channels in
registers, rounds it to the input dtype (as cuDNN's separate kernel stores it) and multiplies it
into the pointwise weights with tl.dot, accumulating over input-channel slices.

    TRITON_INTERPRET=1 .venv/bin/python scripts/benchmarks/sepconv_triton.py --check   # CPU
    python scripts/benchmarks/sepconv_triton.py                 # GPU: us per call vs cuDNN

scripts/gpu_check.py runs it in its "sepconv" section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # thacam, from a checkout

# (N, Cin, Cout, H, W) of the separable 3x3 blocks THA3 runs per frame (editor top level,
# rotator, face morpher, bottlenecks).
SHAPES = [(1, 32, 32, 512, 512), (1, 64, 64, 256, 256), (1, 64, 64, 192, 192),
          (1, 128, 128, 128, 128), (1, 256, 256, 64, 64), (1, 512, 512, 32, 32),
          (1, 512, 512, 16, 16)]


@triton.jit
def _sepconv_kernel(x_ptr, wd_ptr, wp_ptr, y_ptr, CIN, COUT, H, W,
                    BLOCK_P: tl.constexpr, BLOCK_CI: tl.constexpr, BLOCK_CO: tl.constexpr):
    n = tl.program_id(0)
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    co = tl.program_id(2) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    hw = H * W
    pm = p < hw
    y = p // W
    x = p % W
    acc = tl.zeros((BLOCK_P, BLOCK_CO), dtype=tl.float32)
    base = x_ptr + n.to(tl.int64) * CIN * hw
    for ci0 in range(0, CIN, BLOCK_CI):
        ci = ci0 + tl.arange(0, BLOCK_CI)
        cm = ci < CIN
        dw = tl.zeros((BLOCK_P, BLOCK_CI), dtype=tl.float32)
        for k in tl.static_range(9):
            yy = y + (k // 3 - 1)
            xx = x + (k % 3 - 1)
            ok = pm & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            v = tl.load(base + ci[None, :] * hw + (yy * W + xx)[:, None],
                        mask=ok[:, None] & cm[None, :], other=0.0).to(tl.float32)
            wk = tl.load(wd_ptr + ci * 9 + k, mask=cm, other=0.0).to(tl.float32)
            dw += v * wk[None, :]
        wp = tl.load(wp_ptr + co[None, :] * CIN + ci[:, None],
                     mask=cm[:, None] & (co[None, :] < COUT), other=0.0)
        acc += tl.dot(dw.to(wp.dtype), wp)
    out = y_ptr + n.to(tl.int64) * COUT * hw + co[None, :] * hw + p[:, None]
    tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=pm[:, None] & (co[None, :] < COUT))


def sepconv(x: torch.Tensor, wd: torch.Tensor, wp: torch.Tensor, block_p: int = 64,
            block_ci: int = 32, block_co: int = 32, num_warps: int = 4) -> torch.Tensor:
    """x (N,Cin,H,W); wd (Cin,1,3,3) depthwise; wp (Cout,Cin,1,1) pointwise; no biases."""
    x = x.contiguous()
    n, cin, h, w = x.shape
    cout = wp.shape[0]
    y = torch.empty((n, cout, h, w), device=x.device, dtype=x.dtype)
    grid = (n, triton.cdiv(h * w, block_p), triton.cdiv(cout, block_co))
    _sepconv_kernel[grid](x, wd.contiguous(), wp.contiguous(), y, cin, cout, h, w,
                          BLOCK_P=block_p, BLOCK_CI=block_ci, BLOCK_CO=block_co,
                          num_warps=num_warps)
    return y


def reference(x, wd, wp):
    return F.conv2d(F.conv2d(x, wd, padding=1, groups=x.shape[1]), wp)


def check() -> float:
    """Against cuDNN's/PyTorch's two convs on small shapes (runs in the interpreter on a CPU)."""
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    worst = 0.0
    for n, cin, cout, h, w in [(1, 16, 16, 8, 8), (2, 10, 32, 7, 9), (1, 48, 40, 5, 13)]:
        x = torch.randn(n, cin, h, w, device=dev)
        wd = torch.randn(cin, 1, 3, 3, device=dev) * 0.3
        wp = torch.randn(cout, cin, 1, 1, device=dev) * 0.2
        got = sepconv(x, wd, wp, 16, 16, 16)
        worst = max(worst, (got - reference(x, wd, wp)).abs().max().item())
    return worst


CONFIGS = [(64, 32, 32, 4), (128, 32, 32, 4), (64, 32, 64, 4), (128, 32, 64, 8), (256, 16, 32, 8)]


def bench(log=print, reps: int = 100) -> None:
    from thacam.bench import cuda_us_per_call

    def timed(fn):
        return cuda_us_per_call(fn, reps)

    log(f"max |diff| vs two convs (float32, small shapes): {check():.2e}")
    log("separable 3x3 conv, half, us per call: cuDNN dw + pw | Triton fused, best of "
        f"{len(CONFIGS)} tile configs (BLOCK_P, BLOCK_CI, BLOCK_CO, warps)")
    for n, cin, cout, h, w in SHAPES:
        x = torch.randn(n, cin, h, w, device="cuda", dtype=torch.float16)
        wd = (torch.randn(cin, 1, 3, 3, device="cuda") * 0.3).half()
        wp = (torch.randn(cout, cin, 1, 1, device="cuda") * 0.1).half()
        base = timed(lambda: reference(x, wd, wp))
        best, how = float("inf"), None
        for cfg in CONFIGS:
            try:
                t = timed(lambda: sepconv(x, wd, wp, *cfg))
            except Exception as exc:  # noqa: BLE001 - a config too big for the card: skip it
                log(f"  {cfg}: {type(exc).__name__}")
                continue
            if t < best:
                best, how = t, cfg
        err = (sepconv(x, wd, wp, *how).float() - reference(x, wd, wp).float()).abs().max().item()
        log(f"  {str((n, cin, cout, h, w)):26s} cuDNN {base:8.1f} | fused {best:8.1f} {how} "
            f"-> {base / best:4.2f} x, max |diff| {err:.1e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="correctness only (CPU: interpreter)")
    args = ap.parse_args()
    if args.check or not torch.cuda.is_available():
        worst = check()
        print(f"max |diff| vs two convs: {worst:.2e}")
        return 0 if worst < 1e-3 else 1
    bench()
    return 0


if __name__ == "__main__":
    sys.exit(main())
