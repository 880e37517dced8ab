"""The poser path the renderer runs: THA3's four per-frame stages, exact caching, backends.

:class:`StagedPoser` runs the same maths as :meth:`Poser.stages` (on the torch backend equal to
float32 rounding, <= 1e-4; ``build`` picks the fused forms of model/fused.py) but split into the
four stages of model/stages.py so that

* work whose inputs did not change since the last frame is skipped, exactly: the eyebrow
  combiner's output is reused while ``pose[EYEBROW]`` is unchanged, the face morpher's while the
  eyebrow and ``pose[FACE]`` values are unchanged, and the whole frame while the rotation values
  are too. Keys are the exact bytes of the pose slices of the CPU copy of the pose, so a frame
  never syncs with the GPU to decide. In live use brows often hold still for many frames;
  random benchmark poses never hit.
* each stage can run on another backend: PyTorch (default), an OpenVINO graph exported from the
  same modules (model/openvino.py; CPU float32), or PyTorch with CUDA graphs (static buffers,
  replay; falls back to plain PyTorch when CUDA is absent).

Must not import cv2, mediapipe, or openvino at module level (the export is optional).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .. import pose as P
from .poser import Poser
from .stages import (StageModules, StageRunner, TorchRunner, character_inputs, with_eyebrows,
                     with_face)

__all__ = ["StaticCall", "CudaGraphRunner", "StagedPoser", "BACKENDS", "select_runner"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- CUDA graphs

class StaticCall:
    """One function replayed on preallocated static buffers.

    On CUDA the call is captured once into a CUDA graph (after a warm-up on a side stream, as
    PyTorch requires) and each call copies the inputs into the static input buffers and replays
    it: one launch instead of hundreds. ``capture=False`` keeps the same buffer discipline but
    calls the function eagerly on the static buffers, which is how the logic is tested on CPU.
    The returned tensors ARE the static output buffers: they are overwritten by the next call.
    """

    def __init__(self, fn: Callable[..., Tensor | tuple[Tensor, ...]],
                 example: Sequence[Tensor], capture: bool, pool=None):
        self.fn = fn
        with torch.inference_mode():
            self.inputs = [x.detach().clone() for x in example]
        self.graph = None
        if capture:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):
                    fn(*self.inputs)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=pool), torch.inference_mode():
                out = fn(*self.inputs)
        else:
            with torch.inference_mode():
                out = fn(*self.inputs)
        self.tuple_out = isinstance(out, tuple)
        self.outputs = list(out) if self.tuple_out else [out]

    @torch.inference_mode()
    def __call__(self, *inputs: Tensor):
        for buf, x in zip(self.inputs, inputs):
            if buf.data_ptr() != x.data_ptr():
                buf.copy_(x, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
        else:
            out = self.fn(*self.inputs)
            for buf, o in zip(self.outputs, out if self.tuple_out else (out,)):
                buf.copy_(o)
        return tuple(self.outputs) if self.tuple_out else self.outputs[0]


class CudaGraphRunner:
    """Each stage captured once per input shape into a :class:`StaticCall`.

    ``whole_frame``: StagedPoser also asks for ``frame`` (all four stages as one graph) when the
    pose changed everywhere, one replay instead of four. ``shared_pool``: every graph of this
    runner allocates from one memory pool instead of one pool each. That is safe here because
    the graphs replay one at a time on one stream, and a graph's outputs are either consumed by
    the next stage of the same frame or kept alive by their StaticCall (live memory is never
    handed to another capture); StagedPoser clones the final output.
    """

    name = "torch+cudagraph"

    def __init__(self, modules: StageModules, capture: bool | None = None,
                 whole_frame: bool = False, shared_pool: bool = False):
        self.modules = modules
        self.capture = torch.cuda.is_available() if capture is None else capture
        self.whole_frame = whole_frame
        self.pool = (torch.cuda.graph_pool_handle() if shared_pool and self.capture else None)
        self.calls: dict[tuple, StaticCall] = {}

    def __call__(self, stage: str, *inputs: Tensor):
        key = (stage,) + tuple((tuple(x.shape), x.dtype, x.device) for x in inputs)
        call = self.calls.get(key)
        if call is None:
            # A captured graph has recorded the work but not done it: the first call replays too.
            call = self.calls[key] = StaticCall(getattr(self.modules, stage), inputs, self.capture,
                                                self.pool)
        return call(*inputs)


# ------------------------------------------------------------------------------------ poser

class StagedPoser:
    """Poser.forward, stage by stage, with exact reuse of unchanged stages and a chosen backend.

    ``cache=True`` reuses stage outputs while their pose slices are byte-identical to the last
    call's (for the whole batch). Returned tensors must not be modified in place: the same
    tensor comes back while the pose is unchanged.
    """

    def __init__(self, poser: Poser, runner: StageRunner | None = None, cache: bool = True,
                 fused: bool = False, kernels: bool = False):
        self.poser = poser
        self.modules = StageModules(poser, fused, kernels)
        self.runner: StageRunner = runner or TorchRunner(self.modules)
        self.cache = cache
        self.stage_ms: dict[str, float] = {}
        self._clear()

    @classmethod
    def build(cls, poser: Poser, backend: str = "torch", threads: int = 0, cache: bool = True,
              fused: bool = True, kernels: bool = False,
              progress: Callable[[str, int, int], None] | None = None) -> "StagedPoser":
        """``kernels``: the GPU form (model/kernels.py) and, on CUDA, one graph per frame from
        one shared memory pool. It changes nothing on the CPU engines (OpenVINO exports the
        plain stages; PyTorch on the CPU runs the same ops, rewired)."""
        on_cpu = next(poser.parameters()).device.type == "cpu"
        staged = cls(poser, cache=cache, fused=fused, kernels=kernels and not on_cpu)
        staged.runner = select_runner(staged.modules, backend, threads=threads, progress=progress,
                                      whole_frame=kernels, shared_pool=kernels)
        return staged

    @property
    def backend(self) -> str:
        return self.runner.name

    def _clear(self) -> None:
        self._keys: list[bytes | None] = [None, None, None]
        self._eyebrows = self._full = self._output = None
        self._expanded: dict[int, tuple[Tensor, ...]] = {}

    def set_character(self, image: Tensor) -> None:
        self.poser.set_character(image)
        self._clear()

    def _character_inputs(self, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # Made once per character and batch size.
        got = self._expanded.get(n)
        if got is None:
            got = self._expanded[n] = character_inputs(self.poser, n)
        return got  # background, eyebrow, image, face crop

    def __call__(self, pose: np.ndarray | Tensor, timings: dict[str, float] | None = None
                 ) -> Tensor:
        return self.forward(pose, timings)

    def forward(self, pose: np.ndarray | Tensor, timings: dict[str, float] | None = None
                ) -> Tensor:
        """(N,45) pose (numpy or CPU tensor: the cache keys come from it) -> (N,4,512,512).

        With ``timings`` given, each stage's wall time in ms is stored there (stages skipped by
        the cache are absent); on CUDA that synchronises after each stage, so only the bench
        asks for it.
        """
        p = self.poser
        if p.character is None:
            raise RuntimeError("call set_character() before posing")
        host = pose.detach().cpu().numpy() if isinstance(pose, Tensor) else np.asarray(pose)
        host = np.ascontiguousarray(host.reshape(-1, P.NUM_PARAMS), dtype=np.float32)
        n = host.shape[0]
        dev = torch.from_numpy(host)
        if p.device.type == "cuda":
            dev = dev.pin_memory().to(p.device, p.dtype, non_blocking=True)
        else:
            dev = dev.to(p.device, p.dtype)
        background, eyebrow, image, face_crop = self._character_inputs(n)
        keys = [host[:, P.EYEBROW].tobytes(), host[:, P.FACE].tobytes(),
                host[:, P.ROTATION].tobytes()]
        # A stage is fresh only if its own slice and every earlier one are unchanged.
        same = [False, False, False]
        if self.cache:
            ok = True
            for i in range(3):
                ok = ok and keys[i] == self._keys[i]
                same[i] = ok
        run = self._timed if timings is not None else self._plain
        self._keys = [None, None, None]  # a stage that raises must not leave a stale key behind
        with torch.inference_mode():
            self._run_stages(run, timings, same, dev, background, eyebrow, image, face_crop)
        self._keys = keys if self.cache else [None, None, None]
        return self._output

    def _run_stages(self, run, timings, same, dev, background, eyebrow, image, face_crop):
        graph = isinstance(self.runner, CudaGraphRunner)
        if not same[0] and graph and self.runner.whole_frame:
            self._eyebrows, self._full, out = run(timings, "frame", background, eyebrow, image,
                                                  face_crop, dev)
            self._output = out.clone()
            return
        if not same[0]:
            self._eyebrows = run(timings, "combiner", background, eyebrow, dev[:, P.EYEBROW])
        if not same[1]:
            face = run(timings, "face_morpher", with_eyebrows(face_crop, self._eyebrows),
                       dev[:, P.FACE])
            self._full = with_face(image, face)
        if not same[2]:
            rotation = dev[:, P.ROTATION]
            warped, grid = run(timings, "rotator", self._full, rotation)
            out = run(timings, "editor", self._full, warped, grid, rotation)
            # A CUDA-graph runner returns its static buffer, which the next replay overwrites.
            self._output = out.clone() if graph else out

    def _plain(self, timings, stage: str, *inputs: Tensor):
        return self.runner(stage, *inputs)

    def _timed(self, timings: dict[str, float], stage: str, *inputs: Tensor):
        cuda = self.poser.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = self.runner(stage, *inputs)
        if cuda:
            torch.cuda.synchronize()
        timings[stage] = (time.perf_counter() - t0) * 1000.0
        return out


# --------------------------------------------------------------------------- backend choice

BACKENDS = ("torch", "openvino", "auto")
_warned: set[str] = set()


def _warn_once(key: str, msg: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg, *args)


def select_runner(modules: StageModules, backend: str = "torch", threads: int = 0,
                  cuda_graphs: bool = True,
                  progress: Callable[[str, int, int], None] | None = None,
                  whole_frame: bool = False, shared_pool: bool = False) -> StageRunner:
    """The runner for ``backend``: torch | openvino | auto.

    auto = OpenVINO for float32 on the CPU when the package is installed (silently PyTorch
    otherwise). An explicit ``openvino`` that cannot run warns once per process and falls back
    to PyTorch. On CUDA, PyTorch stages are replayed through CUDA graphs when ``cuda_graphs``
    (``whole_frame`` and ``shared_pool``: see :class:`CudaGraphRunner`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    p = next(modules.parameters())
    if backend in ("openvino", "auto") and p.device.type == "cpu" and p.dtype == torch.float32:
        from ..errors import ExportError
        from .openvino import OpenVinoRunner, openvino_version
        if backend == "openvino" or openvino_version() is not None:
            try:
                return OpenVinoRunner(modules, threads=threads, progress=progress)
            except ExportError as exc:
                _warn_once("openvino", "OpenVINO backend unavailable (%s); using PyTorch", exc)
            except Exception as exc:  # noqa: BLE001 - any export/compile failure: fall back
                _warn_once("openvino", "OpenVINO backend failed (%s: %s); using PyTorch",
                           type(exc).__name__, exc)
    elif backend == "openvino":
        _warn_once("openvino-dev", "the OpenVINO backend runs float32 on the CPU only; "
                   "using PyTorch on %s (%s)", p.device.type, str(p.dtype).removeprefix("torch."))
    if p.device.type == "cuda" and cuda_graphs:
        return CudaGraphRunner(modules, whole_frame=whole_frame, shared_pool=shared_pool)
    return TorchRunner(modules)
