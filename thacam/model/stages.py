"""THA3's four per-frame stages as tensor-in/tensor-out modules, and the runner protocol.

The poser's per-frame work (model/poser.py: Poser.stages) cut where its inputs change at
different rates, so that each piece can be cached or run by another engine:

    combiner      (background, eyebrow layer, pose[EYEBROW])         -> (N,4,128,128)
    face_morpher  (face crop with the eyebrows pasted, pose[FACE])   -> (N,4,192,192)
    rotator       (full image, pose[ROTATION])                       -> warped, grid at 256
    editor        (full image, warped, grid, pose[ROTATION])         -> (N,4,512,512)

:class:`StageModules` holds them (what an engine exports: model/openvino.py traces them),
:class:`StageRunner` is what runs one by name (:class:`TorchRunner` here; the CUDA-graph runner
and StagedPoser, which caches and chains them, are in model/fast.py).

Must not import cv2, mediapipe, openvino, or model/fast.py (fast and openvino build on this).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import pose as P
from .fused import FusedCombiner, FusedEditor, FusedFaceMorpher
from .kernels import kernelized
from .poser import EYEBROW_IN_FACE, FACE_CROP, IMAGE_SIZE, ROTATOR_SIZE, Poser

__all__ = ["STAGE_NAMES", "StageModules", "StageRunner", "TorchRunner", "character_inputs",
           "with_eyebrows", "with_face"]

STAGE_NAMES = ("combiner", "face_morpher", "rotator", "editor")


def character_inputs(poser: Poser, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The per-character inputs of the stages for a batch of ``n``: background and eyebrow
    layers, the image and its face crop, as contiguous copies (exported graphs and static
    CUDA-graph buffers want real memory, not an expand() view)."""
    return tuple(t.expand(n, -1, -1, -1).contiguous() for t in (
        poser.background_layer, poser.eyebrow_layer, poser.character,
        poser.character[:, :, FACE_CROP[0], FACE_CROP[1]]))


def with_eyebrows(face_crop: Tensor, eyebrows: Tensor) -> Tensor:
    """The face morpher's input: the face crop with the morphed eyebrows pasted in."""
    face_in = face_crop.clone()
    face_in[:, :, EYEBROW_IN_FACE[0], EYEBROW_IN_FACE[1]] = eyebrows
    return face_in


def with_face(image: Tensor, face: Tensor) -> Tensor:
    """The full image with the morphed face pasted back into its crop."""
    full = image.clone()
    full[:, :, FACE_CROP[0], FACE_CROP[1]] = face
    return full


def _resize(x: Tensor, size: int) -> Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------ stage modules

class CombinerStage(nn.Module):
    def __init__(self, poser: Poser, fused: bool = False):
        super().__init__()
        net = poser.eyebrow_morphing_combiner
        self.net = FusedCombiner(net) if fused else net

    def forward(self, background: Tensor, eyebrow: Tensor, pose_eyebrow: Tensor) -> Tensor:
        return self.net(background, eyebrow, pose_eyebrow)


class FaceStage(nn.Module):
    def __init__(self, poser: Poser, fused: bool = False):
        super().__init__()
        net = poser.face_morpher
        self.net = FusedFaceMorpher(net) if fused else net

    def forward(self, face_in: Tensor, pose_face: Tensor) -> Tensor:
        return self.net(face_in, pose_face)


class RotatorStage(nn.Module):
    def __init__(self, poser: Poser):
        super().__init__()
        self.net = poser.two_algo_face_body_rotator

    def forward(self, full: Tensor, rotation: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(_resize(full, ROTATOR_SIZE), rotation)


class EditorStage(nn.Module):
    def __init__(self, poser: Poser, fused: bool = False, fuse_heads: bool = True):
        super().__init__()
        self.net = FusedEditor(poser.editor, fuse_heads) if fused else poser.editor

    def forward(self, full: Tensor, warped_half: Tensor, grid_half: Tensor,
                rotation: Tensor) -> Tensor:
        return self.net(full, _resize(warped_half, IMAGE_SIZE), _resize(grid_half, IMAGE_SIZE),
                        rotation)


class StageModules(nn.Module):
    """The four per-frame stages as tensor-in/tensor-out modules (what backends export).

    ``fused`` swaps in the equal-but-faster forms of model/fused.py (separable variant only);
    ``kernels`` then runs them in the GPU form of model/kernels.py (fused norm kernels,
    transposed depthwise convs as plain ones), sharing the weights.
    """

    def __init__(self, poser: Poser, fused: bool = False, kernels: bool = False):
        super().__init__()
        self.fused = fused = fused and poser.variant == "separable"
        self.kernels = kernels
        stages = [CombinerStage(poser, fused), FaceStage(poser, fused), RotatorStage(poser),
                  EditorStage(poser, fused)]
        if kernels:
            stages = [kernelized(m) for m in stages]
        self.combiner, self.face_morpher, self.rotator, self.editor = stages
        # Exported graphs trace the editor with one conv per output head: OpenVINO fuses each
        # head's tanh/sigmoid into its conv, which beats one stacked conv split afterwards
        # (editor 244 -> 220 ms in an interleaved A/B on the 2-core VM). Same weights, same maths.
        self.editor_export = (EditorStage(poser, fused, fuse_heads=False) if fused and not kernels
                              else self.editor)

    def export_module(self, stage: str) -> nn.Module:
        """The module an exported backend traces for ``stage``."""
        return self.editor_export if stage == "editor" else getattr(self, stage)

    def frame(self, background: Tensor, eyebrow: Tensor, image: Tensor, face_crop: Tensor,
              pose: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """All four stages for a pose that changed everywhere: (eyebrows, full image, output).

        One function so that a CUDA-graph runner captures a whole frame as one graph; the
        eyebrows and the face-morphed image come back for the stage cache of later frames.
        """
        eyebrows = self.combiner(background, eyebrow, pose[:, P.EYEBROW])
        full = with_face(image, self.face_morpher(with_eyebrows(face_crop, eyebrows),
                                                  pose[:, P.FACE]))
        rotation = pose[:, P.ROTATION]
        warped, grid = self.rotator(full, rotation)
        return eyebrows, full, self.editor(full, warped, grid, rotation)


class StageRunner(Protocol):
    """Runs one named stage on torch tensors (on the poser's device) and returns torch tensors."""

    name: str

    def __call__(self, stage: str, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]: ...


class TorchRunner:
    name = "torch"

    def __init__(self, modules: StageModules):
        self.modules = modules

    def __call__(self, stage: str, *inputs: Tensor):
        with torch.inference_mode():
            return getattr(self.modules, stage)(*inputs)
