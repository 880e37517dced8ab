"""The model's output -> 8-bit sRGB RGBA, channels last, as ONE Triton kernel.

engine.to_rgba8_async's PyTorch form is about fifteen elementwise kernels over the 512x512 frame
(half -> float, shift, scale, clamp, the sRGB curve's two branches, concatenation, scaling,
rounding, uint8, the NCHW -> NHWC copy), each launched from the host. Here each program reads a
block of pixels of all four planes once and writes the interleaved bytes once. Same maths:
clamp((x + 1) / 2, 0, 1); the sRGB curve on RGB only (alpha stays straight); round half to
even like torch.round. The curve's power is exp2(log2(v) / 2.4), within an ulp or two of
powf, so a value that sits on a rounding boundary may land one level away (tests: <= 1 level).

Only imported where Triton is installed (engine.py decides, through model/kernels.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["to_rgba8"]

BLOCK = 1024


@triton.jit
def _round_half_even(x):
    r = tl.floor(x + 0.5)
    tie = (r - x) == 0.5
    odd = (r - 2.0 * tl.floor(r * 0.5)) == 1.0
    return tl.where(tie & odd, r - 1.0, r)


@triton.jit
def _rgba8_kernel(x_ptr, y_ptr, HW, BLOCK: tl.constexpr):
    n = tl.program_id(0)
    p = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = p < HW
    src = n.to(tl.int64) * 4 * HW
    dst = n.to(tl.int64) * 4 * HW + p * 4
    for ch in tl.static_range(4):
        v = tl.load(x_ptr + src + ch * HW + p, mask=mask, other=-1.0).to(tl.float32)
        v = tl.minimum(tl.maximum((v + 1.0) * 0.5, 0.0), 1.0)
        if ch < 3:
            curve = 1.055 * tl.exp2(tl.log2(tl.maximum(v, 1e-12)) * (1.0 / 2.4)) - 0.055
            v = tl.where(v <= 0.0031308, v * 12.92, curve)
        q = _round_half_even(v * 255.0)
        tl.store(y_ptr + dst + ch, q.to(tl.uint8), mask=mask)


def to_rgba8(out: Tensor) -> Tensor:
    """(N,4,H,W) in [-1,1], any float dtype -> (N,H,W,4) uint8 on the same device."""
    out = out.contiguous()
    n, c, h, w = out.shape
    if c != 4:
        raise ValueError(f"expected 4 channels (RGBA), got {c}")
    frames = torch.empty((n, h, w, 4), dtype=torch.uint8, device=out.device)
    _rgba8_kernel[(n, triton.cdiv(h * w, BLOCK))](out, frames, h * w, BLOCK=BLOCK, num_warps=4)
    return frames
