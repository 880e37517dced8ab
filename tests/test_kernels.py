"""The GPU form of the networks (model/kernels.py, model/triton_norm.py), checked on the CPU.

* DepthwiseUp against ConvTranspose2d, in float64 (the rewrite is exact, so ~1e-15).
* The kernelized twin shares the weights and leaves the original untouched.
* The whole four-stage path in the GPU form (PyTorch's ops inside NormAct) against the plain
  stages, on random-init networks, including the whole-frame function and the cache.
* The Triton kernels themselves through Triton's interpreter (TRITON_INTERPRET=1, CPU tensors),
  in a subprocess because the variable must be set before Triton is imported; skipped where
  Triton is not installed. Both kernel paths (plane in registers; chunked statistics), every
  activation, the residual add, float32 and float16 storage.

Timing is not asserted here: the figures come from the GPU script (scripts/gpu_check.py).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from thacam import pose as P
from thacam.bench import random_poses
from thacam.character import to_model_input
from thacam.model import Poser
from thacam.model.fast import CudaGraphRunner, StagedPoser
from thacam.model.kernels import (DepthwiseUp, KernelResnetBlock, NormAct, depthwise_up_weight,
                                  kernelized)
from thacam.model.networks import ResnetBlock
from thacam.model.stages import STAGE_NAMES, StageModules, character_inputs

REPO = Path(__file__).resolve().parent.parent
TOL = 1e-4


@pytest.fixture(scope="module")
def poser() -> Poser:
    from tests.test_render import _character
    torch.manual_seed(0)
    poser = Poser("separable").eval().requires_grad_(False)
    for name, m in poser.named_modules():
        if name.endswith(("_grid_change", ".grid_change_creator")):
            for p in m.parameters():
                p.mul_(0.01)   # trained-like warps (see test_render.poser)
    poser.set_character(torch.from_numpy(to_model_input(_character().rgba)).unsqueeze(0)
                        .contiguous())
    return poser


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (8, 8)])
def test_depthwise_up_equals_the_transposed_conv(size):
    torch.manual_seed(1)
    conv = nn.ConvTranspose2d(6, 6, 4, 2, 1, groups=6, bias=False).double()
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    up = DepthwiseUp(conv).double()
    assert (up(x) - conv(x)).abs().max().item() < 1e-12
    assert up(x).shape == (2, 6, 2 * size[0], 2 * size[1])


def test_depthwise_up_weight_places_each_tap_once():
    w = torch.arange(16.0).view(1, 1, 4, 4) + 1
    k = depthwise_up_weight(w)
    # Each of the 16 taps lands in exactly one (phase, row, column) of the 4 3x3 kernels.
    assert sorted(k[k != 0].tolist()) == sorted(w.flatten().tolist())


def test_depthwise_up_refuses_other_transposed_convs():
    with pytest.raises(ValueError):
        DepthwiseUp(nn.ConvTranspose2d(4, 8, 4, 2, 1, bias=False))
    with pytest.raises(ValueError):
        DepthwiseUp(nn.ConvTranspose2d(4, 4, 3, 2, 1, groups=4, bias=False))


def test_kernelized_twin_shares_weights_and_leaves_the_original_alone(poser):
    net = poser.editor
    twin = kernelized(net)
    ours = {id(p) for p in net.parameters()}
    assert {id(p) for p in twin.parameters()} <= ours      # no weight copied
    assert not any(isinstance(m, (NormAct, KernelResnetBlock, DepthwiseUp))
                   for m in net.modules())
    assert any(isinstance(m, ResnetBlock) for m in net.modules())
    # Every norm of the twin is fused, every resnet block carries its residual into its norm.
    assert not any(isinstance(m, nn.InstanceNorm2d) and not isinstance(parent, NormAct)
                   for parent in twin.modules() for m in parent.children())
    assert not any(isinstance(m, ResnetBlock) for m in twin.modules())
    acts = [m for m in twin.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    assert acts == []                                      # all folded into a NormAct


def test_separable_up_blocks_become_depthwise_up(poser):
    twin = kernelized(poser.face_morpher)
    assert sum(isinstance(m, DepthwiseUp) for m in twin.modules()) == 3    # 192 -> 24: 3 ups
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in twin.modules())


def test_kernelized_stages_equal_the_plain_stages(poser):
    rng = np.random.default_rng(5)
    pose = torch.from_numpy(random_poses(2, rng))
    plain, fast = StageModules(poser, fused=True), StageModules(poser, fused=True, kernels=True)
    with torch.inference_mode():
        a = plain.frame(*character_inputs(poser, 2), pose)
        b = fast.frame(*character_inputs(poser, 2), pose)
        ref = poser(pose)
    for x, y in zip(a, b):
        assert (x - y).abs().max().item() <= TOL
    assert (b[2] - ref).abs().max().item() <= TOL


def test_whole_frame_graph_path_and_its_cache_on_cpu(poser):
    """The CUDA-graph runner's logic without CUDA (capture=False): the whole-frame call when
    everything moved, per-stage calls from its cached outputs after, the same frames as the
    plain poser, and the static buffers never leak into what the caller holds."""
    staged = StagedPoser(poser, fused=True, kernels=True)
    staged.runner = CudaGraphRunner(staged.modules, capture=False, whole_frame=True)
    rng = np.random.default_rng(9)
    a, fresh = random_poses(1, rng), random_poses(1, rng)
    b = a.copy()
    b[:, P.ROTATION] = fresh[:, P.ROTATION]
    c = b.copy()
    c[:, P.FACE] = fresh[:, P.FACE]
    with torch.inference_mode():
        want = {k: poser(torch.from_numpy(v)) for k, v in (("a", a), ("b", b), ("c", c))}
    ran: dict[str, float] = {}
    out_a = staged(a, ran)
    assert set(ran) == {"frame"}
    held = out_a.clone()
    out_b = staged(b, ran := {})
    assert set(ran) == {"rotator", "editor"}                  # from the frame's cached full image
    out_c = staged(c, ran := {})
    assert set(ran) == {"face_morpher", "rotator", "editor"}  # from the frame's cached eyebrows
    assert torch.equal(out_a, held)                           # later frames left it alone
    for out, key in ((out_a, "a"), (out_b, "b"), (out_c, "c")):
        assert (out - want[key]).abs().max().item() <= TOL
    assert set(STAGE_NAMES) | {"frame"} >= {k[0] for k in staged.runner.calls}


# ---------------------------------------------------------------------- Triton, interpreted

_INTERPRETED = textwrap.dedent("""
    import os, sys
    os.environ["TRITON_INTERPRET"] = "1"
    import torch
    from torch import nn
    import torch.nn.functional as F
    from thacam.model import triton_norm as tn
    torch.manual_seed(0)
    worst = 0.0
    # (N, C, H, W): a bottleneck plane (one kernel), an odd-sized one, and two planes above
    # SMALL_PLANE (chunked statistics; 80x70 leaves a partial last chunk).
    for shape in [(2, 3, 16, 16), (1, 2, 7, 9), (1, 2, 80, 70), (2, 1, 128, 128)]:
        for slope in (None, 0.0, 0.1):
            for residual in (False, True):
                for dtype, tol in ((torch.float32, 2e-5), (torch.float16, 2e-2)):
                    norm = nn.InstanceNorm2d(shape[1], affine=True)
                    with torch.no_grad():
                        norm.weight.uniform_(0.5, 1.5); norm.bias.uniform_(-0.5, 0.5)
                    # An offset mean, as conv outputs have: E[x^2]-E[x]^2 would lose digits.
                    x = (torch.randn(shape) * 2 + 3).to(dtype)
                    r = torch.randn(shape).to(dtype) if residual else None
                    with torch.no_grad():
                        want = norm.float()(x.float())
                        if slope is not None:
                            want = F.leaky_relu(want, slope)
                        if r is not None:
                            want = want + r.float()
                        got = tn.norm_act(x, norm.weight.to(dtype), norm.bias.to(dtype),
                                          norm.eps, slope, r)
                    assert got.dtype == dtype and got.shape == x.shape
                    err = (got.float() - want).abs().max().item()
                    assert err <= tol, (shape, slope, residual, dtype, err)
                    worst = max(worst, err if dtype == torch.float32 else 0.0)
    print("worst float32 error", worst)
    """)


_INTERPRETED_RGBA = textwrap.dedent("""
    import os
    os.environ["TRITON_INTERPRET"] = "1"
    import torch
    from thacam.render.engine import to_rgba8_async
    torch.manual_seed(0)
    # Every 8-bit level's neighbourhood, values outside [-1, 1] (clamped), a partial last block,
    # a batch of two; half and float input.
    levels = torch.linspace(-1.2, 1.2, 2 * 4 * 37 * 29)
    for dtype in (torch.float32, torch.float16):
        out = levels[torch.randperm(levels.numel())].view(2, 4, 37, 29).to(dtype)
        want = to_rgba8_async(out, fused=False).result()
        got = to_rgba8_async(out, fused=True).result()
        assert got.shape == want.shape == (2, 37, 29, 4) and got.dtype == want.dtype
        diff = abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 1, diff.max()
        print(dtype, "levels off by one:", int((diff > 0).sum()), "of", diff.size)
        assert (diff > 0).mean() < 0.002
    print("rgba ok")
    """)

_needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                   reason="Triton not installed")


def _interpret(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TRITON_INTERPRET": "1"})


@_needs_triton
def test_triton_norm_kernels_match_pytorch_in_the_interpreter():
    run = _interpret(_INTERPRETED)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "worst float32 error" in run.stdout


@_needs_triton
def test_triton_rgba_kernel_matches_the_pytorch_conversion_in_the_interpreter():
    run = _interpret(_INTERPRETED_RGBA)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rgba ok" in run.stdout


@_needs_triton
def test_the_exploratory_fused_separable_conv_is_right_before_it_is_timed():
    """scripts/benchmarks/sepconv_triton.py (measured by the GPU run, not shipped) against
    PyTorch's two convolutions, in the interpreter: a wrong kernel must not be timed."""
    run = subprocess.run([sys.executable, "scripts/benchmarks/sepconv_triton.py", "--check"],
                         capture_output=True, text=True, timeout=600, cwd=REPO,
                         env={**os.environ, "TRITON_INTERPRET": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert float(run.stdout.split(":")[-1]) < 1e-4


def test_a_failing_triton_function_falls_back_once_and_for_good(caplog):
    from thacam.model import kernels
    path = "builtins:divmod"        # stands in for a kernel that cannot compile on this card
    try:
        with caplog.at_level("WARNING"):
            assert kernels.run_triton(path, 7) is None          # raised: PyTorch takes over
            assert kernels.run_triton(path, 7, 2) is None       # not tried again, not said again
        assert [r.getMessage().count("failed") for r in caplog.records] == [1]
        assert kernels.run_triton("thacam.model.no_such_module:f") is None
    finally:
        kernels._triton_fns.pop(path, None)
        kernels._triton_fns.pop("thacam.model.no_such_module:f", None)
