"""Instance normalisation fused with its activation (and residual add), as Triton kernels.

PyTorch runs each InstanceNorm2d of THA3 as a batch norm over a (1, N*C, H, W) view: one kernel
collects the statistics with one thread block per plane (a 512x512 plane with 32 channels
keeps 32 of an H100's 132 SMs busy), a second applies them, two device copies repeat the
affine weight and bias per sample, and the activation or the ResnetBlock's residual add is a
third pass over memory. Measured on an H200 that is ~40 % of a frame's GPU time
(../shared/notes/gpu-profile.md). Here each norm is:

* small planes (H*W <= SMALL_PLANE): ONE kernel, one program per plane, the plane in registers:
  statistics, affine, activation, residual, store;
* large planes: two kernels, both spread over (plane, chunk) programs: per-chunk mean and
  centred sum of squares, then every chunk combines its plane's partials (Chan's formula, so
  no E[x^2]-E[x]^2 cancellation) and applies norm, affine, activation and residual.

Statistics are float32 whatever the input dtype (as PyTorch's half norm does); results are stored
in the input's dtype. Only imported where Triton is installed (model/kernels.py decides); with
TRITON_INTERPRET=1 set before the import the same kernels run on CPU tensors, which is how the
tests check them on machines without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["norm_act", "SMALL_PLANE", "CHUNK"]

SMALL_PLANE = 4096   # the bottlenecks (16x16 .. 64x64) go through the one-kernel path
CHUNK = 4096         # elements per program on the two-kernel path (512x512 -> 64 chunks)


@triton.jit
def _finish(y, c, w_ptr, b_ptr, r_ptr, offs, mask, slope,
            HAS_ACT: tl.constexpr, HAS_RES: tl.constexpr):
    y = y * tl.load(w_ptr + c).to(tl.float32) + tl.load(b_ptr + c).to(tl.float32)
    if HAS_ACT:
        y = tl.where(y >= 0, y, y * slope)
    if HAS_RES:
        y = y + tl.load(r_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    return y


@triton.jit
def _plane_kernel(x_ptr, w_ptr, b_ptr, r_ptr, y_ptr, C, HW, eps, slope,
                  HAS_ACT: tl.constexpr, HAS_RES: tl.constexpr, BLOCK: tl.constexpr):
    plane = tl.program_id(0)
    c = plane % C
    idx = tl.arange(0, BLOCK)
    mask = idx < HW
    offs = plane.to(tl.int64) * HW + idx
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / HW
    d = tl.where(mask, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=0) / HW + eps)
    y = _finish(d * rstd, c, w_ptr, b_ptr, r_ptr, offs, mask, slope, HAS_ACT, HAS_RES)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _stats_kernel(x_ptr, mean_ptr, m2_ptr, HW, CHUNKS, BLOCK: tl.constexpr):
    plane = tl.program_id(0)
    chunk = tl.program_id(1)
    idx = chunk * BLOCK + tl.arange(0, BLOCK)
    mask = idx < HW
    x = tl.load(x_ptr + plane.to(tl.int64) * HW + idx, mask=mask, other=0.0).to(tl.float32)
    count = tl.minimum(HW - chunk * BLOCK, BLOCK).to(tl.float32)
    mean = tl.sum(x, axis=0) / count
    d = tl.where(mask, x - mean, 0.0)
    tl.store(mean_ptr + plane * CHUNKS + chunk, mean)
    tl.store(m2_ptr + plane * CHUNKS + chunk, tl.sum(d * d, axis=0))


@triton.jit
def _apply_kernel(x_ptr, mean_ptr, m2_ptr, w_ptr, b_ptr, r_ptr, y_ptr, C, HW, CHUNKS, eps,
                  slope, HAS_ACT: tl.constexpr, HAS_RES: tl.constexpr, BLOCK: tl.constexpr,
                  CHUNKS_P2: tl.constexpr):
    plane = tl.program_id(0)
    chunk = tl.program_id(1)
    # Every program combines its plane's partials: CHUNKS is small (<= 64 for 512x512), so the
    # repeat costs less than a third launch would.
    j = tl.arange(0, CHUNKS_P2)
    jm = j < CHUNKS
    means = tl.load(mean_ptr + plane * CHUNKS + j, mask=jm, other=0.0)
    m2s = tl.load(m2_ptr + plane * CHUNKS + j, mask=jm, other=0.0)
    counts = tl.where(jm, tl.minimum(HW - j * BLOCK, BLOCK), 0).to(tl.float32)
    mean = tl.sum(means * counts, axis=0) / HW
    dm = means - mean
    var = tl.sum(m2s + counts * dm * dm, axis=0) / HW
    rstd = 1.0 / tl.sqrt(var + eps)

    idx = chunk * BLOCK + tl.arange(0, BLOCK)
    mask = idx < HW
    offs = plane.to(tl.int64) * HW + idx
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = _finish((x - mean) * rstd, plane % C, w_ptr, b_ptr, r_ptr, offs, mask, slope,
                HAS_ACT, HAS_RES)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def norm_act(x: Tensor, weight: Tensor, bias: Tensor, eps: float, slope: float | None,
             residual: Tensor | None = None) -> Tensor:
    """act(instance_norm(x) * weight + bias) [+ residual] for a contiguous (N,C,H,W) ``x``.

    ``slope``: None = no activation, 0.0 = ReLU, else LeakyReLU's negative slope.
    """
    x = x.contiguous()
    n, c, h, w = x.shape
    hw, planes = h * w, n * c
    y = torch.empty_like(x)
    res = residual.contiguous() if residual is not None else x  # never read without HAS_RES
    flags = dict(HAS_ACT=slope is not None, HAS_RES=residual is not None)
    s = 0.0 if slope is None else float(slope)
    if hw <= SMALL_PLANE:
        block = max(16, triton.next_power_of_2(hw))
        _plane_kernel[(planes,)](x, weight, bias, res, y, c, hw, eps, s, BLOCK=block,
                                 num_warps=4 if block <= 1024 else 8, **flags)
        return y
    chunks = triton.cdiv(hw, CHUNK)
    mean = torch.empty((planes, chunks), device=x.device, dtype=torch.float32)
    m2 = torch.empty_like(mean)
    _stats_kernel[(planes, chunks)](x, mean, m2, hw, chunks, BLOCK=CHUNK, num_warps=8)
    _apply_kernel[(planes, chunks)](x, mean, m2, weight, bias, res, y, c, hw, chunks, eps, s,
                                    BLOCK=CHUNK, CHUNKS_P2=max(2, triton.next_power_of_2(chunks)),
                                    num_warps=8, **flags)
    return y
