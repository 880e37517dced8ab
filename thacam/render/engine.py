"""The renderer: a character + a Pose -> a 512x512 RGBA frame (uint8, sRGB, straight alpha).

Owns the choice of device and precision (default: separable variant, half on a GPU, float on
CPU; the settings are thacam.render.RenderSettings) and the colour conversions around the model:
the model works in linear RGB in [-1,1]; the output is mapped to [0,1], clipped, converted
linear->sRGB on RGB only (alpha stays straight) and rounded to 8 bits, as THA3's own apps do.

Must not import cv2 or mediapipe.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch

from ..character import Character, to_model_input
from ..errors import UserError
from ..model import Poser
from ..model.fast import StagedPoser
from ..model.kernels import interpreting, run_triton
from ..pose import Pose
from . import DEVICES, PRECISIONS, RenderSettings

__all__ = ["Renderer", "PendingFrames", "resolve_device", "resolve_precision", "to_rgba8",
           "to_rgba8_async"]

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available to PyTorch here; "
                        "use --device cpu (or auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise UserError("--device mps: Apple's Metal backend is not available here; "
                        "use --device cpu (or auto)")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    if name not in PRECISIONS:
        raise UserError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        # Half is what the paper shipped for GPUs; on CPU float16 convolutions are slow.
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    return torch.float16 if name == "half" else torch.float32


class PendingFrames:
    """Frames on their way to the host; ``result()`` waits for them.

    On CUDA the copy into pinned host memory was only queued behind the model's kernels, so the
    caller can queue the next batch before waiting for this one (the GPU never idles while the
    host encodes). Elsewhere the frames are already there.
    """

    def __init__(self, host: torch.Tensor, ready: "torch.cuda.Event | None" = None):
        self._host = host
        self._ready = ready

    @property
    def in_flight(self) -> bool:
        """Whether the frames may still be on their way (``result()`` would wait)."""
        return self._ready is not None

    def result(self) -> np.ndarray:
        """(N,H,W,4) uint8, C-contiguous (it owns the pinned buffer, which is never reused
        while the array lives)."""
        if self._ready is not None:
            self._ready.synchronize()
            self._ready = None
        return self._host.numpy()


_RGBA8 = "thacam.render.triton_rgba:to_rgba8"


def _rgba8_frames(out: torch.Tensor, fused: bool) -> torch.Tensor:
    if fused and (out.is_cuda or interpreting()):
        frames = run_triton(_RGBA8, out)
        if frames is not None:
            return frames
    x = ((out.float() + 1.0) * 0.5).clamp_(0.0, 1.0)
    rgb = x[:, :3]
    rgb = torch.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * rgb.pow(1.0 / 2.4) - 0.055)
    x = torch.cat([rgb, x[:, 3:4]], dim=1)
    return torch.round(x * 255.0).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def to_rgba8_async(out: torch.Tensor, fused: bool = False) -> PendingFrames:
    """(N,4,H,W) model output in [-1,1] -> (N,H,W,4) uint8 sRGB, straight alpha, on the host.

    The conversion runs where the model ran; one copy a batch crosses to the host, of a
    contiguous uint8 tensor (a quarter of float32's bytes). ``fused``: on CUDA as one Triton
    kernel (render/triton_rgba.py) instead of PyTorch's ~15 elementwise ones.
    """
    frames = _rgba8_frames(out, fused)
    if frames.device.type == "cuda":
        # Pinned memory from PyTorch's caching host allocator: a non_blocking copy from it is a
        # real DMA that does not stall the stream, and freed buffers are reused, not reallocated.
        host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(frames, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
        return PendingFrames(host, ready)
    return PendingFrames(frames.cpu())


def to_rgba8(out: torch.Tensor) -> np.ndarray:
    """(N,4,H,W) model output in [-1,1] -> (N,H,W,4) uint8 sRGB, straight alpha."""
    return to_rgba8_async(out).result()


class Renderer:
    """Loads the poser once; ``set_character`` then ``render(pose)`` per frame."""

    def __init__(self, settings: RenderSettings = RenderSettings(),
                 progress: Callable[[str, int, int], None] | None = None, *,
                 poser: Poser | None = None):
        """``progress(stage, i, n)`` hears of the one-off OpenVINO export (backend openvino/auto).

        ``poser``: an already built Poser to render with (moved to the settings' device and
        precision) instead of loading the official weights from ``settings.weights_dir``; tests
        use it to run random-init networks without any weight file.

        Raises:
            MissingWeights, IncompatibleCheckpoint: the weight files (no ``poser`` given).
            UserError: the device asked for is not available here.
            ValueError: ``poser`` is of another variant than ``settings.variant``.
        """
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_precision(settings.precision, self.device)
        if settings.threads > 0:
            torch.set_num_threads(settings.threads)
        if poser is None:
            precision = "half" if self.dtype == torch.float16 else "float"
            poser = Poser.load(settings.weights_dir, f"{settings.variant}_{precision}")
        elif poser.variant != settings.variant:
            raise ValueError(f"the poser given is THA3 {poser.variant}, the settings ask for "
                             f"{settings.variant}")
        # Half = the float weights cast, as the paper made separable_half; official *_half files
        # are already float16 and cast to themselves.
        self.poser = poser.to(self.device, self.dtype)
        self.staged = StagedPoser.build(self.poser, settings.backend, settings.threads,
                                        cache=settings.cache,
                                        kernels=settings.kernels == "fused", progress=progress)
        self.character: Character | None = None
        log.info("renderer: THA3 %s on %s, %s", settings.variant, self.device,
                 str(self.dtype).removeprefix("torch."))

    @property
    def description(self) -> str:
        return (f"{self.settings.variant} {str(self.dtype).removeprefix('torch.')} "
                f"on {self.device.type}")

    def set_character(self, character: Character) -> None:
        self.character = character
        image = torch.from_numpy(to_model_input(character.rgba)).unsqueeze(0)
        self.staged.set_character(image)

    @torch.inference_mode()
    def render_tensor(self, poses: Sequence[Pose]) -> torch.Tensor:
        values = np.stack([p.values for p in poses]).astype(np.float32)
        return self.staged(values)  # keys its cache on these host values: no GPU sync

    def render(self, pose: Pose) -> np.ndarray:
        """One frame: (512,512,4) uint8."""
        return self.render_batch([pose])[0]

    def render_batch(self, poses: Sequence[Pose]) -> np.ndarray:
        """(N,512,512,4) uint8 for N poses in one batch."""
        return self.render_batch_async(poses).result()

    def render_batch_async(self, poses: Sequence[Pose]) -> PendingFrames:
        """N poses in one batch, queued: on a GPU this returns before the frames are done, so
        the next batch can be queued behind them (offline rendering)."""
        if self.character is None:
            raise RuntimeError("set_character() first")
        return to_rgba8_async(self.render_tensor(poses), self.settings.kernels == "fused")
