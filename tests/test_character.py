"""Character images: each bad input gives its one-line message and exit code 2 (no traceback)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from thacam.character import load_character, to_model_input
from thacam.cli import main
from thacam.errors import CharacterError


def _rgba(size=512, alpha=255):
    a = np.zeros((size, size, 4), np.uint8)
    a[100:400, 150:350] = (200, 120, 90, alpha)
    return a


def _noise():
    return np.random.default_rng(0).integers(0, 256, (512, 512, 4), dtype=np.uint8)


def _write(path, array, mode=None, **kw):
    Image.fromarray(array, mode).save(path, **kw)
    return path


def _bomb(path):
    # A valid 9000x9000 PNG (81 Mpixel, over thacam's 64 Mpixel limit): tiny on disk.
    Image.new("L", (9000, 9000)).save(path)
    return path


CASES = [
    ("not_an_image.png", lambda p: p.write_text("hello, I am text"), "not an image Pillow can read"),
    ("empty.png", lambda p: p.write_bytes(b""), "file is empty"),
    ("truncated.png", lambda p: p.write_bytes(_write(p, _noise()).read_bytes()[:30000]),
     "damaged or truncated"),
    ("no_alpha.png", lambda p: _write(p, _rgba()[..., :3]), r"no alpha channel \(mode RGB\).*thacam prepare"),
    ("small.png", lambda p: _write(p, _rgba(256)), r"256x256, THA3 needs 512x512.*thacam prepare"),
    ("bomb.png", _bomb, "too large.*decompression bomb"),
    ("missing.png", lambda p: None, "file not found"),
    ("clear.png", lambda p: _write(p, np.zeros((512, 512, 4), np.uint8)), "fully transparent"),
]


@pytest.mark.parametrize("name,make,message", CASES, ids=[c[0] for c in CASES])
def test_bad_character_is_one_line_exit_2(tmp_path, capsys, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(CharacterError, match=message):
        load_character(path)
    code = main(["pose", "--character", str(path), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("thacam: error: ") and name in lines[0], err
    assert "Traceback" not in err


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    path = _write(tmp_path / "rgb.png", _rgba()[..., :3])
    proc = subprocess.run([sys.executable, "-m", "thacam.cli", "pose", "--character", str(path),
                           "--out", str(tmp_path / "o.png")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "no alpha channel" in proc.stderr


def test_transparent_pixels_are_zeroed_and_palette_alpha_accepted(tmp_path):
    a = _rgba()
    a[0:10, 0:10] = (255, 0, 255, 0)  # coloured but fully transparent: THA3 needs (0,0,0,0)
    ch = load_character(_write(tmp_path / "c.png", a))
    assert (ch.rgba[0:10, 0:10] == 0).all() and (ch.rgba[150, 200] == (200, 120, 90, 255)).all()
    x = to_model_input(ch.rgba)
    assert x.shape == (4, 512, 512) and x.dtype == np.float32
    assert (x[:, 0, 0] == -1).all()  # (0,0,0,0) maps to -1 everywhere
    # A WebP with alpha loads like a PNG.
    webp = tmp_path / "c.webp"
    Image.fromarray(a).save(webp, lossless=True)
    assert load_character(webp).rgba.shape == (512, 512, 4)


def test_pose_cli_rejects_bad_parameters(tmp_path, capsys, samples_dir):
    sample = samples_dir / "crypko_00.png"
    for args, msg in [(["--set", "eye_wnk_left=1"], "did you mean 'eye_wink_left'"),
                      (["--set", "head_x=2"], r"head_x=2.0 is out of range.*\[-1, 1\]")]:
        code = main(["pose", "--character", str(sample), "--out", str(tmp_path / "o.png"), *args])
        err = capsys.readouterr().err
        assert code == 2 and __import__("re").search(msg, err), err
