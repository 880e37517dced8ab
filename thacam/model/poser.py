"""The THA3 poser: the five networks chained, with the crops named.

    image (1,4,512,512) in [-1,1], linear RGB, straight alpha
      │ crop EYEBROW_CROP (128x128)                                  ── once per character ──
      ▼ eyebrow_decomposer → eyebrow layer, background layer
      ▼ eyebrow_morphing_combiner + pose[EYEBROW]        → (N,4,128,128)
      │ paste into FACE_CROP (192x192) at EYEBROW_IN_FACE
      ▼ face_morpher + pose[FACE]                        → (N,4,192,192)
      │ paste back into the full image; bilinear down to 256
      ▼ two_algo_face_body_rotator + pose[ROTATION]      → warped (N,4,256,256), grid (N,2,256,256)
      │ both bilinear up to 512
      ▼ editor + pose[ROTATION]                          → (N,4,512,512)

The eyebrow decomposition depends on the character only, so :meth:`Poser.set_character` runs it
once; a frame never compares images or syncs with the GPU to find out whether it changed.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import pose as P
from ..weights import NETWORK_FILES, variant_dir
from .checkpoint import load_official
from .networks import build_network

__all__ = ["Poser", "NETWORK_NAMES", "EYEBROW_CROP", "FACE_CROP", "EYEBROW_IN_FACE"]

NETWORK_NAMES = tuple(f.removesuffix(".pt") for f in NETWORK_FILES)

IMAGE_SIZE = 512
# (rows, cols) of the 128x128 box around the eyebrows in the 512x512 character.
EYEBROW_CROP = (slice(64, 192), slice(192, 320))
# (rows, cols) of the 192x192 face box in the character; the eyebrow box sits inside it at:
FACE_CROP = (slice(32, 224), slice(160, 352))
EYEBROW_IN_FACE = (slice(32, 160), slice(32, 160))
ROTATOR_SIZE = 256


def _resize(x: Tensor, size: int) -> Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class Poser(nn.Module):
    def __init__(self, variant: str = "separable"):
        super().__init__()
        if variant not in ("separable", "standard"):
            raise ValueError(f"variant must be 'separable' or 'standard', got {variant!r}")
        self.variant = variant
        self.eyebrow_decomposer = build_network("eyebrow_decomposer", variant)
        self.eyebrow_morphing_combiner = build_network("eyebrow_morphing_combiner", variant)
        self.face_morpher = build_network("face_morpher", variant)
        self.two_algo_face_body_rotator = build_network("two_algo_face_body_rotator", variant)
        self.editor = build_network("editor", variant)
        self.character: Tensor | None = None
        self.eyebrow_layer: Tensor | None = None
        self.background_layer: Tensor | None = None

    @classmethod
    def from_folder(cls, folder: Path, variant: str = "separable") -> "Poser":
        """Build and load the official weights from one variant folder (five .pt files)."""
        poser = cls(variant)
        for name in NETWORK_NAMES:
            load_official(Path(folder) / f"{name}.pt", getattr(poser, name), name)
        return poser.eval().requires_grad_(False)

    @classmethod
    def load(cls, weights_dir: Path, variant: str = "separable_float") -> "Poser":
        family = variant.split("_")[0]
        return cls.from_folder(variant_dir(weights_dir, variant), family)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.inference_mode()
    def set_character(self, image: Tensor) -> None:
        """Take the (1,4,512,512) character and run the per-character work once."""
        if image.dim() == 3:
            image = image.unsqueeze(0)
        if tuple(image.shape) != (1, 4, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"expected a (1, 4, 512, 512) image, got {tuple(image.shape)}")
        image = image.to(self.device, self.dtype)
        out = self.eyebrow_decomposer(image[:, :, EYEBROW_CROP[0], EYEBROW_CROP[1]])
        self.character = image
        self.eyebrow_layer = out["eyebrow_layer"]
        self.background_layer = out["background_layer"]

    def forward(self, pose: Tensor) -> Tensor:
        """(N,45) pose -> (N,4,512,512) image in [-1,1] (linear RGB, straight alpha)."""
        return self.stages(pose)["output"]

    def stages(self, pose: Tensor) -> dict[str, Tensor]:
        """Every intermediate output by name (used by forward, the oracle tests and the bench)."""
        if self.character is None:
            raise RuntimeError("call set_character() before posing")
        if pose.dim() == 1:
            pose = pose.unsqueeze(0)
        n = pose.shape[0]
        pose = pose.to(self.device, self.dtype)
        image = self.character.expand(n, -1, -1, -1)

        eyebrows = self.eyebrow_morphing_combiner(
            self.background_layer.expand(n, -1, -1, -1),
            self.eyebrow_layer.expand(n, -1, -1, -1), pose[:, P.EYEBROW])      # (N,4,128,128)

        face_in = image[:, :, FACE_CROP[0], FACE_CROP[1]].clone()             # (N,4,192,192)
        face_in[:, :, EYEBROW_IN_FACE[0], EYEBROW_IN_FACE[1]] = eyebrows
        face = self.face_morpher(face_in, pose[:, P.FACE])                    # (N,4,192,192)

        full = image.clone()
        full[:, :, FACE_CROP[0], FACE_CROP[1]] = face                         # (N,4,512,512)
        rotation = pose[:, P.ROTATION]
        warped_half, grid_half = self.two_algo_face_body_rotator(
            _resize(full, ROTATOR_SIZE), rotation)                            # (N,4|2,256,256)
        output = self.editor(full, _resize(warped_half, IMAGE_SIZE),
                             _resize(grid_half, IMAGE_SIZE), rotation)        # (N,4,512,512)
        return {
            "eyebrow_layer": self.eyebrow_layer, "background_layer": self.background_layer,
            "eyebrow_morphed": eyebrows, "face_morphed": face, "face_morphed_full": full,
            "rotator_warped": warped_half, "rotator_grid_change": grid_half, "output": output,
        }
