"""The OpenVINO engine: THA3's per-frame stages (model/stages.py) as OpenVINO graphs for the CPU.

OpenVINO runs THA3's float32 graph 3-5x faster than eager PyTorch on an AVX2 CPU (its depthwise
convolutions and normalisations are fused and blocked for the cache). ``openvino`` is installed
by default where it ships wheels; when it is missing or anything fails thacam falls back to
PyTorch with one warning per process.

The exported graphs are built once per machine (a tracing conversion takes a minute or two) and
kept under ``~/.cache/thacam/openvino/<key>/``, where the key covers the weights' bytes, the
OpenVINO and PyTorch versions and this module's export format; a stale or foreign folder is never
reused. Only float32 on the CPU is exported: OpenVINO computes f32 on AVX2-only CPUs (bf16 there
is emulated and very slow), and its results differ from PyTorch's by summation order only
(PSNR far above 40 dB; the bench prints it).

Raises ExportError (thacam.errors) when the engine cannot run here; model/fast.py's select_runner
catches it and falls back. Must not import cv2, mediapipe or model/fast.py; imports openvino
lazily.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import ExportError
from .stages import STAGE_NAMES, StageModules

__all__ = ["openvino_version", "cache_root", "weights_key", "OpenVinoRunner", "EXPORT_FORMAT"]

log = logging.getLogger(__name__)

# Bump when the exported graphs' inputs, outputs or conversion options change.
EXPORT_FORMAT = 4


def openvino_version() -> str | None:
    try:
        import openvino
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return None
    return getattr(openvino, "__version__", None) or openvino.get_version()


def cache_root() -> Path:
    """~/.cache/thacam (or $THACAM_CACHE, or $XDG_CACHE_HOME/thacam)."""
    if os.environ.get("THACAM_CACHE"):
        return Path(os.environ["THACAM_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "thacam"


def weights_key(modules: StageModules, runtime_version: str) -> str:
    """A digest of every weight byte and the versions that shape the exported graph."""
    h = hashlib.sha256()
    h.update(f"format={EXPORT_FORMAT};runtime={runtime_version};torch={torch.__version__};"
             f"fused={modules.fused}".encode())
    for name, t in sorted(modules.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _example_inputs(n: int) -> dict[str, tuple[Tensor, ...]]:
    # Shapes only matter (batch is dynamic in the exported graph); values keep the trace tame.
    def z(*shape):
        return torch.zeros(n, *shape)
    return {
        "combiner": (z(4, 128, 128), z(4, 128, 128), z(12)),
        "face_morpher": (z(4, 192, 192), z(27)),
        "rotator": (z(4, 512, 512), z(6)),
        "editor": (z(4, 512, 512), z(4, 256, 256), z(2, 256, 256), z(6)),
    }


def _convert(modules: StageModules, folder: Path,
             progress: Callable[[str, int, int], None] | None) -> None:
    """Trace every stage into OpenVINO IR under ``folder`` (written to a temp folder, renamed)."""
    import openvino as ov
    examples = _example_inputs(1)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        for i, stage in enumerate(STAGE_NAMES):
            if progress:
                progress(stage, i, len(STAGE_NAMES))
            example = examples[stage]
            shapes = [ov.PartialShape([-1] + list(x.shape[1:])) for x in example]
            with torch.no_grad():
                model = ov.convert_model(modules.export_module(stage).eval(),
                                         example_input=example, input=shapes)
            # compress_to_fp16 defaults to True: that would round the float32 weights.
            ov.save_model(model, str(tmp / f"{stage}.xml"), compress_to_fp16=False)
        if progress:
            progress("done", len(STAGE_NAMES), len(STAGE_NAMES))
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "editor.xml").exists():  # another process won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class OpenVinoRunner:
    """Runs the four stages as compiled OpenVINO models (one compile per batch size)."""

    name = "openvino"

    def __init__(self, modules: StageModules, threads: int = 0,
                 progress: Callable[[str, int, int], None] | None = None,
                 cache_dir: Path | None = None):
        version = openvino_version()
        if version is None:
            raise ExportError("the openvino package is not installed (pip install openvino)")
        p = next(modules.parameters())
        if p.device.type != "cpu" or p.dtype != torch.float32:
            raise ExportError("the OpenVINO backend runs float32 on the CPU only")
        import openvino as ov
        self.core = ov.Core()
        self.threads = threads if threads > 0 else torch.get_num_threads()
        key = weights_key(modules, version)
        self.folder = (cache_dir or cache_root() / "openvino") / key
        if not all((self.folder / f"{s}.xml").exists() for s in STAGE_NAMES):
            log.warning("building the OpenVINO model for this machine (once; 1-3 minutes) "
                        "into %s", self.folder)
            _convert(modules, self.folder, progress)
        self.models = {s: self.core.read_model(str(self.folder / f"{s}.xml"))
                       for s in STAGE_NAMES}
        self.compiled: dict[tuple[str, tuple], object] = {}

    def _request(self, stage: str, inputs: list[np.ndarray]):
        shapes = tuple(x.shape for x in inputs)
        key = (stage, shapes)
        req = self.compiled.get(key)
        if req is None:
            import openvino as ov
            model = self.models[stage].clone()
            model.reshape({model.inputs[i]: ov.PartialShape(list(s))
                           for i, s in enumerate(shapes)})
            compiled = self.core.compile_model(model, "CPU", {
                "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": "f32"})
            req = self.compiled[key] = compiled.create_infer_request()
        return req

    def __call__(self, stage: str, *inputs: Tensor):
        arrays = [np.ascontiguousarray(x.detach().numpy(), dtype=np.float32) for x in inputs]
        req = self._request(stage, arrays)
        # share_outputs=False: outputs are kept across frames by the stage cache, so they must
        # not alias the request's buffers that the next inference overwrites.
        result = req.infer(arrays, share_inputs=True, share_outputs=False)
        outs = [torch.from_numpy(np.asarray(result[o])) for o in req.model_outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)
