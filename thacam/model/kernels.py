"""The GPU form of the networks: fewer, fuller kernels, the same maths.

:func:`kernelized` returns a twin of a module that shares its parameters and buffers (no copy of
the weights) with these swaps:

* every ``InstanceNorm2d`` and the activation after it become one :class:`NormAct`; a
  ResnetBlock's second norm also takes the block's residual add (:class:`KernelResnetBlock`).
  On CUDA with Triton installed that is model/triton_norm.py's kernels (one or two launches
  instead of PyTorch's two statistics/apply kernels, two weight copies and an activation pass);
  elsewhere it is PyTorch's own ops, so CPU tests cover the rewiring exactly.
* every depthwise 4x4 stride-2 transposed convolution (the separable up blocks) becomes
  :class:`DepthwiseUp`: a grouped 3x3 convolution with four outputs per channel (one per output
  pixel parity) followed by a pixel shuffle. cuDNN runs the fp16 transposed form through a slow
  grouped dgrad path (~50 us each on an H200); the forward depthwise kernel is the common one.

The twin equals the original to float rounding (tests: <= 1e-4 in float32). Must not import cv2,
mediapipe or triton at module level (Triton is optional and only loaded for CUDA tensors).
"""

from __future__ import annotations

import copy
import importlib
import itertools
import logging
import os

import torch.nn.functional as F
from torch import Tensor, nn

from .networks import ResnetBlock

__all__ = ["NormAct", "DepthwiseUp", "KernelResnetBlock", "kernelized", "triton_available",
           "triton_function", "run_triton", "interpreting", "depthwise_up_weight"]

log = logging.getLogger(__name__)

_triton_fns: dict[str, object] = {}


def interpreting() -> bool:
    """Triton's CPU interpreter is on (tests): its kernels then take CPU tensors."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_function(path: str):
    """``"package.module:function"`` of a Triton module, or None where Triton cannot be
    imported or the function failed before (warned once per function).

    Triton is optional: the caller keeps its PyTorch path for None.
    """
    if path not in _triton_fns:
        module, name = path.split(":")
        try:
            _triton_fns[path] = getattr(importlib.import_module(module), name)
        except Exception as exc:  # noqa: BLE001 - no Triton, or one that does not match torch
            log.warning("Triton kernels unavailable (%s: %s); using PyTorch's ops",
                        type(exc).__name__, exc)
            _triton_fns[path] = None
    return _triton_fns[path]


def run_triton(path: str, *args):
    """``path``'s Triton function applied to ``args``, or None where it cannot run: Triton is
    missing, or the function raised (a card or driver it cannot compile for: said once, then
    PyTorch from now on). The caller computes the same with PyTorch for None."""
    fn = triton_function(path)
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any failure: fall back, said once
        log.warning("Triton kernel %s failed (%s: %s); using PyTorch's ops from now on", path,
                    type(exc).__name__, exc)
        _triton_fns[path] = None
        return None


_NORM_ACT = "thacam.model.triton_norm:norm_act"


def triton_available() -> bool:
    return triton_function(_NORM_ACT) is not None


class NormAct(nn.Module):
    """InstanceNorm2d(affine) -> activation (slope None = none, 0 = ReLU) [+ residual].

    Keeps the original norm as ``norm`` so its weights stay shared and named as before.
    """

    def __init__(self, norm: nn.InstanceNorm2d, slope: float | None, use_triton: bool = True):
        super().__init__()
        if not norm.affine or norm.track_running_stats:
            raise ValueError("NormAct fuses affine instance norms without running statistics")
        self.norm = norm
        self.slope = slope
        self.use_triton = use_triton

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if self.use_triton and (x.is_cuda or interpreting()):
            y = run_triton(_NORM_ACT, x, self.norm.weight, self.norm.bias, self.norm.eps,
                           self.slope, residual)
            if y is not None:
                return y
        y = self.norm(x)
        if self.slope is not None:
            y = F.relu(y) if self.slope == 0 else F.leaky_relu(y, self.slope)
        return y if residual is None else y + residual


def depthwise_up_weight(weight: Tensor) -> Tensor:
    """(C,1,4,4) transposed-conv weight (stride 2, padding 1) -> (4C,1,3,3) conv weight.

    Output row 2m reads input rows m-1, m with taps 3, 1; row 2m+1 reads m, m+1 with taps 2, 0
    (same for columns). As a 3-tap correlation over rows m-1, m, m+1 that is [3, 1, -] for the
    even phase and [-, 2, 0] for the odd one; output channel 4c + 2*py + px is channel c's
    (py, px) phase, the order pixel_shuffle expects.
    """
    taps = {0: (3, 1, None), 1: (None, 2, 0)}
    c = weight.shape[0]
    out = weight.new_zeros(c, 4, 3, 3)
    for py, px in itertools.product((0, 1), (0, 1)):
        for (a, ky), (b, kx) in itertools.product(enumerate(taps[py]), enumerate(taps[px])):
            if ky is not None and kx is not None:
                out[:, 2 * py + px, a, b] = weight[:, 0, ky, kx]
    return out.reshape(4 * c, 1, 3, 3)


def _is_depthwise_up(m: nn.Module) -> bool:
    return (isinstance(m, nn.ConvTranspose2d) and m.groups == m.in_channels == m.out_channels
            and m.kernel_size == (4, 4) and m.stride == (2, 2) and m.padding == (1, 1)
            and m.output_padding == (0, 0) and m.dilation == (1, 1) and m.bias is None)


class DepthwiseUp(nn.Module):
    """A depthwise ConvTranspose2d(C, C, 4, stride 2, padding 1) as conv + pixel shuffle."""

    def __init__(self, conv: nn.ConvTranspose2d):
        super().__init__()
        if not _is_depthwise_up(conv):
            raise ValueError("DepthwiseUp replaces depthwise 4x4 stride-2 transposed convs only")
        self.channels = conv.in_channels
        # A buffer, not a parameter: derived from the shared weight once, follows .to().
        self.register_buffer("weight", depthwise_up_weight(conv.weight.detach()), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.weight, None, 1, 1, 1, self.channels), 2)


class KernelResnetBlock(nn.Module):
    """ResnetBlock with the residual add done by its last NormAct."""

    def __init__(self, path: nn.Sequential):
        super().__init__()
        if not isinstance(path[-1], NormAct):
            raise ValueError("KernelResnetBlock wants a path ending in a NormAct")
        self.resnet_path = path

    def forward(self, x: Tensor) -> Tensor:
        *body, last = self.resnet_path
        y = x
        for m in body:
            y = m(y)
        return last(y, residual=x)


def _slope(m: nn.Module) -> float | None:
    if isinstance(m, nn.ReLU):
        return 0.0
    if isinstance(m, nn.LeakyReLU):
        return float(m.negative_slope)
    return None


def _rewrite_sequential(seq: nn.Sequential, use_triton: bool, depthwise_up: bool) -> nn.Sequential:
    items = list(seq)
    out: list[nn.Module] = []
    i = 0
    while i < len(items):
        m = items[i]
        if isinstance(m, nn.InstanceNorm2d):
            nxt = items[i + 1] if i + 1 < len(items) else None
            slope = _slope(nxt) if nxt is not None else None
            out.append(NormAct(m, slope, use_triton))
            i += 2 if slope is not None else 1
            continue
        out.append(DepthwiseUp(m) if depthwise_up and _is_depthwise_up(m) else m)
        i += 1
    return nn.Sequential(*out)


def _rewrite(module: nn.Module, use_triton: bool, depthwise_up: bool) -> nn.Module:
    # Sequentials first, so that a norm and the activation after it merge before the leaves
    # are visited one by one.
    if isinstance(module, nn.Sequential):
        module = _rewrite_sequential(module, use_triton, depthwise_up)
    for name, child in list(module.named_children()):
        if not isinstance(child, (NormAct, DepthwiseUp)):
            setattr(module, name, _rewrite(child, use_triton, depthwise_up))
    if isinstance(module, ResnetBlock):
        return KernelResnetBlock(module.resnet_path)
    if isinstance(module, nn.InstanceNorm2d):
        return NormAct(module, None, use_triton)
    if depthwise_up and _is_depthwise_up(module):
        return DepthwiseUp(module)
    return module


def kernelized(module: nn.Module, *, use_triton: bool = True, depthwise_up: bool = True
               ) -> nn.Module:
    """A twin of ``module`` in the GPU form above, sharing its parameters and buffers.

    ``use_triton=False`` keeps PyTorch's norm ops inside NormAct (the rewiring alone);
    ``depthwise_up=False`` keeps the transposed convs. The original module is not changed.
    """
    shared = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    twin = copy.deepcopy(module, memo=shared)
    return _rewrite(twin, use_triton, depthwise_up)
