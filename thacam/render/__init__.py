"""Render stage: a character + a Pose -> a 512x512 RGBA frame. This file: its settings only.

:class:`RenderSettings` is what the renderer needs to know (which THA3 networks, on which
device, at which precision, with which CPU engine); it is also the profile's ``[model]`` section,
so profiles, flags and ``--help`` read their choices from here. The renderer itself (torch) is in
``thacam.render.engine``: ``from thacam.render.engine import Renderer``.

Must not import torch (loading a profile must not cost the seconds torch takes), cv2 or mediapipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from ..settings import Settings, setting
from ..weights import DEFAULT_WEIGHTS_DIR

__all__ = ["RenderSettings", "DEVICES", "PRECISIONS", "VARIANTS", "BACKENDS", "KERNELS"]

Variant = Literal["separable", "standard"]
Precision = Literal["auto", "float", "half"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Backend = Literal["auto", "torch", "openvino"]
Kernels = Literal["stock", "fused"]
VARIANTS: tuple[str, ...] = get_args(Variant)
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEVICES: tuple[str, ...] = get_args(Device)
BACKENDS: tuple[str, ...] = get_args(Backend)
KERNELS: tuple[str, ...] = get_args(Kernels)


@dataclass(frozen=True)
class RenderSettings(Settings):
    """Which THA3 networks run, where, and at which precision."""

    variant: Variant = setting(
        "separable", help="THA3 network variant; standard needs the official standard_float "
        "folder.", flag="--variant")
    precision: Precision = setting(
        "auto", help="auto = half on a GPU, float on CPU.", flag="--precision")
    device: Device = setting(
        "auto", help="Where THA3 runs; auto = a GPU when there is one.", flag="--device")
    threads: int = setting(
        0, 0, 256, help="CPU threads for torch; 0 = torch's default.", flag="--threads",
        metavar="N")
    backend: Backend = setting(
        "auto", help="CPU float32 engine; auto = openvino when installed (pip install openvino), "
        "else torch. OpenVINO renders ~1.4-1.8x faster than torch on a CPU; its graphs are built "
        "once per machine (1-3 min).", flag="--backend")
    kernels: Kernels = setting(
        "stock", help="GPU kernels. stock = PyTorch and cuDNN, one CUDA graph per stage (~4 ms a "
        "frame on an H200). fused = thacam's Triton kernels (instance norm + activation + "
        "residual in one pass, transposed depthwise convs as plain ones) and one CUDA graph per "
        "frame; new, not yet measured on a GPU, falls back to stock's ops where Triton cannot "
        "run. No effect on the CPU.", flag="--kernels",
        cli_help="GPU kernels: stock (PyTorch and cuDNN; the measured default) or fused "
        "(thacam's Triton kernels, one CUDA graph per frame; not yet measured on a GPU). No "
        "effect on the CPU.")
    weights_dir: Path = setting(
        DEFAULT_WEIGHTS_DIR, help="Folder with the model files.", profile=False)
    cache: bool = setting(
        True, help="Reuse stage outputs while their pose groups are unchanged (exact; see "
        "model/fast.py).", profile=False)
