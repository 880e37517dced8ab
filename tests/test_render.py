"""The render stage without downloaded weights: THA3's five networks with seeded random init.

A fresh checkout has no model files, so test_model.py (the oracle) and test_bench.py skip there;
these tests still run the whole model/ and render path on random weights: shapes, dtypes, finite
values, determinism, the staged poser against Poser.forward, the exact stage cache, the 8-bit
conversion and, where the optional openvino package is installed, the OpenVINO engine.

CI budget: ~40 s on 2 cores (8 frames of 512x512 on the CPU, one OpenVINO export of ~10 s into a
temporary folder).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thacam import pose as P
from thacam.bench import psnr, random_poses
from thacam.character import Character, to_model_input
from thacam.errors import SettingsError
from thacam.model import Poser
from thacam.model.fast import BACKENDS, StagedPoser
from thacam.render import RenderSettings
from thacam.render import BACKENDS as RENDER_BACKENDS
from thacam.render.engine import PendingFrames, Renderer, to_rgba8, to_rgba8_async

TOL = 1e-4  # float32 PyTorch paths against each other, [-1,1] units


def _character(seed: int = 3) -> Character:
    """A 512x512 RGBA character: smooth random colours in an ellipse with a soft (~1 px) edge,
    (0,0,0,0) outside. Smooth like a drawing: per-pixel noise would make every warp amplify
    float32 rounding into visible differences."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:512, 0:512] / 512.0
    freq = rng.uniform(1.0, 4.0, (3, 2))
    phase = rng.uniform(0.0, 2 * np.pi, 3)
    rgb = np.stack([0.5 + 0.45 * np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + p)
                    for f, p in zip(freq, phase)], axis=-1)
    alpha = np.clip((1.0 - np.hypot((xx - 0.5) / 0.3, (yy - 0.58) / 0.42)) * 100.0, 0.0, 1.0)
    rgba = np.round(np.dstack([rgb, alpha]) * 255).astype(np.uint8)
    rgba[rgba[..., 3] == 0] = 0
    return Character(rgba)


@pytest.fixture(scope="module")
def poser() -> Poser:
    """The separable poser with seeded random weights, its four warp heads scaled down 100x.

    Trained THA3 warps move pixels by a few; random grid heads move them by hundreds, and a
    warp's output moves with its grid times the image's gradient, which turns float32 rounding
    (different summation orders in the staged and fused forms) into 1e-2 differences. Scaled,
    random warps behave like trained ones and the paths agree to ~4e-5.
    """
    torch.manual_seed(0)
    poser = Poser("separable").eval().requires_grad_(False)
    grid_heads = [m for name, m in poser.named_modules()
                  if name.endswith(("_grid_change", ".grid_change_creator"))]
    assert len(grid_heads) == 4
    for head in grid_heads:
        for p in head.parameters():
            p.mul_(0.01)
    # Contiguous like the staged poser's own copies (to_model_input's transpose is not), so both
    # paths run the same convolution kernels.
    image = torch.from_numpy(to_model_input(_character().rgba)).unsqueeze(0).contiguous()
    poser.set_character(image)
    return poser


@pytest.fixture(scope="module")
def poses() -> dict[str, np.ndarray]:
    """a: random, in range; b: a with a new rotation only."""
    rng = np.random.default_rng(11)
    a, fresh = random_poses(1, rng), random_poses(1, rng)
    b = a.copy()
    b[:, P.ROTATION] = fresh[:, P.ROTATION]
    return {"a": a, "b": b}


@pytest.fixture(scope="module")
def plain(poser, poses) -> torch.Tensor:
    """Poser.forward on (a, b) in one batch: (2,4,512,512)."""
    with torch.inference_mode():
        return poser(torch.from_numpy(np.concatenate([poses["a"], poses["b"]])))


def test_poser_output_shape_dtype_and_values(plain):
    assert plain.shape == (2, 4, 512, 512) and plain.dtype == torch.float32
    assert torch.isfinite(plain).all()
    # Random weights still give a picture that depends on the pose (the cache test needs it).
    assert (plain[0] - plain[1]).abs().max().item() > 1e-3


def test_staged_torch_equals_poser_and_the_cache_reruns_only_what_changed(poser, poses, plain):
    staged = StagedPoser.build(poser, "torch")  # the renderer's path: fused stages, cache on
    assert staged.backend == "torch" and staged.modules.fused
    ran: dict[str, float] = {}
    out_a = staged(poses["a"], ran)
    assert set(ran) == {"combiner", "face_morpher", "rotator", "editor"}
    assert (out_a - plain[0:1]).abs().max().item() <= TOL

    # Only the rotation moved: the eyebrow and face stages are reused, exactly.
    out_b = staged(poses["b"], ran := {})
    assert set(ran) == {"rotator", "editor"}
    assert (out_b - plain[1:2]).abs().max().item() <= TOL

    # Nothing moved: nothing runs, and the very same frame comes back.
    again = staged(poses["b"], ran := {})
    assert ran == {} and again is out_b


def test_renderer_on_a_given_poser_is_deterministic(poser, poses, plain):
    settings = RenderSettings(device="cpu", precision="float", backend="torch", cache=False)
    renderer = Renderer(settings, poser=poser)
    assert renderer.description == "separable float32 on cpu"
    with pytest.raises(RuntimeError, match="set_character"):
        renderer.render(P.Pose(poses["a"][0]))
    renderer.set_character(_character())
    batch = [P.Pose(poses["a"][0]), P.Pose(poses["b"][0])]
    first = renderer.render_batch(batch)
    assert first.shape == (2, 512, 512, 4) and first.dtype == np.uint8
    # No cache here: the same poses are computed again and give the same bytes.
    assert renderer.render_batch(batch).tobytes() == first.tobytes()
    # The same frames as the plain poser's, but for float32 rounding at the 8-bit step.
    assert np.abs(first.astype(int) - to_rgba8(plain).astype(int)).max() <= 1


def test_renderer_refuses_a_poser_of_another_variant(poser):
    with pytest.raises(ValueError, match="standard"):
        Renderer(RenderSettings(variant="standard", device="cpu", backend="torch"), poser=poser)


def test_to_rgba8_known_values():
    # Model output in [-1,1] -> [0,1] (clipped) -> sRGB on RGB only; alpha stays linear and
    # straight (not premultiplied). Expected bytes computed by hand from the sRGB formula.
    values = torch.tensor([-1.0, 1.0, 0.0, -0.996, 0.6, 1.5, -3.0])
    out = values.view(1, 1, 1, 7).expand(1, 4, 1, 7).contiguous()    # (N,4,H,W) = (1,4,1,7)
    got = to_rgba8(out)
    assert got.shape == (1, 1, 7, 4) and got.dtype == np.uint8
    # linear 0.5 -> sRGB 0.7354 -> 188; 0.002 -> 12.92 * 0.002 -> 7; 0.8 -> 0.9063 -> 231
    assert got[0, 0, :, 0].tolist() == [0, 255, 188, 7, 231, 255, 0]
    assert got[0, 0, :, 3].tolist() == [0, 255, 128, 1, 204, 255, 0]
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
    # Channels land in the last axis, pixels keep their place.
    rgba = torch.stack([torch.full((2, 3), v) for v in (1.0, -1.0, -1.0, 1.0)]).unsqueeze(0)
    assert to_rgba8(rgba)[0, 1, 2].tolist() == [255, 0, 0, 255]


def test_frames_reach_the_host_contiguous_and_wait_for_their_copy_once():
    out = torch.rand(3, 4, 5, 6) * 2 - 1
    pending = to_rgba8_async(out)
    frames = pending.result()
    assert frames.shape == (3, 5, 6, 4) and frames.flags.c_contiguous
    assert np.array_equal(frames, to_rgba8(out))

    class Event:                     # stands in for the CUDA event of a queued copy
        waits = 0

        def synchronize(self):
            Event.waits += 1
    late = PendingFrames(torch.zeros(1, 2, 2, 4, dtype=torch.uint8), Event())
    assert late.in_flight and not pending.in_flight
    late.result()
    late.result()
    assert Event.waits == 1 and not late.in_flight


def test_render_settings_are_checked_and_agree_with_the_engine():
    assert RenderSettings().backend == "auto"
    assert set(RENDER_BACKENDS) == set(BACKENDS)
    with pytest.raises(SettingsError, match="device"):
        RenderSettings(device="gpu")
    with pytest.raises(SettingsError, match="threads"):
        RenderSettings(threads=-1)


# The export traces the stages with torch.jit, which warns about every shape check it freezes.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_openvino_engine_agrees_with_torch(poser, poses, plain, tmp_path):
    from thacam.model.openvino import OpenVinoRunner
    staged = StagedPoser(poser, fused=True)
    staged.runner = OpenVinoRunner(staged.modules, cache_dir=tmp_path)
    assert sorted(p.name for p in staged.runner.folder.glob("*.xml")) == [
        "combiner.xml", "editor.xml", "face_morpher.xml", "rotator.xml"]
    out = staged(poses["a"])
    assert out.shape == (1, 4, 512, 512) and out.dtype == torch.float32
    assert psnr(out, plain[0:1]) > 60.0
