"""`thacam prepare`: any picture -> a valid THA3 character, checked the way THA3 sees it.

The official samples are resized, shifted inside a larger canvas and flattened onto a flat colour
(no alpha left), then prepared. The real face detector must find the face in the result where it
finds it in the official samples; the background must be (0,0,0,0) and the character kept whole
(both checked against the sample's own alpha, carried through the reported transform); one
prepared picture is rendered by the real THA3 model. Bad inputs give one line and exit code 2;
a busy photo is refused and nothing is written.

CI time budget: 90 s (measured ~25 s on 2 shared cores; one THA3 render).
"""

from __future__ import annotations

import shlex
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from thacam.character import (Character, character_advice, check_character, load_character,
                              touching_edges)
from thacam.cli import main
from thacam.cli.options import warn_if_not_conforming
from thacam.errors import CharacterError
from thacam.faces import (FACE_CX_RANGE, FACE_CY_RANGE, FACE_TARGET, FACE_W_RANGE, FaceBox,
                          FaceFinder, on_white)
from thacam.pose import Pose
from thacam.prepare import PrepareOptions, compare_path, prepare_image, read_image

# The test's own tolerance, from the issue: centre within 12 px of the samples' range of face
# centres, width within 15% of their range of widths.
SLACK_PX = 12.0
SLACK_W = 0.15


# ----------------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def finder(landmarker_model):
    with FaceFinder(landmarker_model) as f:
        yield f


def _face(finder: FaceFinder, rgba: np.ndarray) -> FaceBox | None:
    """The face the detector finds in a 512x512 RGBA character on white (as the samples were
    measured): the most confident box in the upper 60% (it also fires weakly on chests)."""
    a = rgba[..., 3].astype(np.float32) / 255
    prem = rgba[..., :3].astype(np.float32) / 255 * a[..., None]
    faces = [f for f in finder.find(on_white(prem, a)) if f.cy < 0.6 * 512]
    return faces[0] if faces else None


def _assert_face_placed(face: FaceBox | None) -> None:
    assert face is not None, "the face detector finds no face in the prepared character"
    (x0, x1), (y0, y1), (w0, w1) = FACE_CX_RANGE, FACE_CY_RANGE, FACE_W_RANGE
    assert x0 - SLACK_PX <= face.cx <= x1 + SLACK_PX, face
    assert y0 - SLACK_PX <= face.cy <= y1 + SLACK_PX, face
    assert w0 * (1 - SLACK_W) <= face.size <= w1 * (1 + SLACK_W), face


def _flatten(sample: Path, out: Path, k: float, offset: tuple[int, int],
             colour: tuple[int, int, int], **save) -> float:
    """The sample resized by ~k, placed at ``offset`` in a larger canvas of ``colour``, saved
    without alpha. Returns the exact resize factor."""
    s = Image.open(sample).convert("RGBA")
    n = round(512 * k)
    s = s.resize((n, n), Image.LANCZOS)
    canvas = Image.new("RGBA", (n + offset[0] + 150, n + offset[1] + 120), colour + (255,))
    canvas.alpha_composite(s, offset)
    canvas.convert("RGB").save(out, **save)
    return n / 512


def _warp(mask: np.ndarray, scale: float, tx: float, ty: float, border: float) -> np.ndarray:
    """A sample-space mask carried into the 512 output by out = scale * p + t (corner coords)."""
    m = np.array([[scale, 0, tx + 0.5 * scale - 0.5], [0, scale, ty + 0.5 * scale - 0.5]])
    return cv2.warpAffine(mask.astype(np.float32), m, (512, 512), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def _erode(mask: np.ndarray, px: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.erode(mask.astype(np.uint8), k).astype(bool)


def _outer_background(alpha: np.ndarray) -> np.ndarray:
    """The sample's (near-)transparent pixels connected to its border: what a flood fill can
    reach. Holes enclosed by the character (between arm and body) are not in it."""
    clear = (alpha < 8).astype(np.uint8)
    _, labels = cv2.connectedComponents(clear, connectivity=8)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, edge[edge != 0]) & (clear > 0)


# --------------------------------------------------------------- the target, from the samples

def test_face_target_is_what_the_detector_finds_in_the_samples(finder, samples_dir):
    boxes = []
    for path in sorted(samples_dir.glob("*.png")):
        rgba = np.asarray(Image.open(path).convert("RGBA"))
        face = _face(finder, rgba)
        assert face is not None and face.score >= 0.3, path.name
        boxes.append(face)
    assert len(boxes) == 10
    cx, cy, w = (np.array([getattr(b, k) for b in boxes]) for k in ("cx", "cy", "size"))
    assert np.allclose(FACE_TARGET, (cx.mean(), cy.mean(), w.mean()), atol=0.5)
    assert np.allclose(FACE_CX_RANGE, (cx.min(), cx.max()), atol=0.5)
    assert np.allclose(FACE_CY_RANGE, (cy.min(), cy.max()), atol=0.5)
    assert np.allclose(FACE_W_RANGE, (w.min(), w.max()), atol=0.5)


# -------------------------------------------------------------------------------- placement

# (sample, resize factor, offset in the canvas, background colour): shrunk and enlarged, shifted
# every way, on white and flat colours; crypko_04 wears white on white; lambda_01 is a bust cut
# at the bottom.
PLACEMENT = [
    ("crypko_00", 0.6, (40, 90), (255, 255, 255)),
    ("crypko_04", 1.7, (300, 20), (255, 255, 255)),
    ("crypko_06", 1.0, (120, 300), (80, 140, 200)),
    ("crypko_07", 2.3, (10, 400), (250, 240, 230)),
    ("lambda_01", 0.8, (200, 50), (255, 255, 255)),
]


@pytest.mark.parametrize("name,k,offset,colour", PLACEMENT, ids=[c[0] for c in PLACEMENT])
def test_flattened_sample_is_placed_like_the_samples(finder, landmarker_model, samples_dir,
                                                     tmp_path, name, k, offset, colour):
    src = tmp_path / f"{name}.png"
    k = _flatten(samples_dir / f"{name}.png", src, k, offset, colour)
    prepared = prepare_image(src, landmarker_model)
    rgba, report = prepared.rgba, prepared.report
    assert rgba.shape == (512, 512, 4) and rgba.dtype == np.uint8
    assert report.background.kind == "removed" and report.placed_by == "face"

    _assert_face_placed(_face(finder, rgba))

    # Sample pixels -> output pixels: the sample sits at k * p + offset in the input.
    t = report.transform
    scale, tx, ty = t.scale * k, t.scale * offset[0] + t.tx, t.scale * offset[1] + t.ty
    alpha = np.asarray(Image.open(samples_dir / f"{name}.png").convert("RGBA"))[..., 3]

    # Background: everything a flood fill could reach is (0,0,0,0).
    outer = _erode(_warp(_outer_background(alpha), scale, tx, ty, 1.0) > 0.999, 3)
    assert outer.mean() > 0.3
    assert (rgba[outer] == 0).all(), f"{(rgba[outer, 3] > 0).sum()} background pixels left"
    assert (rgba[rgba[..., 3] == 0] == 0).all(), "colour left in transparent pixels"

    # The character is kept: its solid pixels are solid in the output (white on white too).
    solid = _erode(_warp(_erode(alpha >= 230, 2), scale, tx, ty, 0.0) > 0.999, 2)
    assert solid.sum() > 5000
    assert (rgba[solid, 3] > 127).mean() > 0.99

    # Nothing cut at the top or sides: the sample's silhouette lands inside the frame.
    ys, xs = np.nonzero(alpha >= 16)
    assert scale * xs.min() + tx >= 0 and scale * (xs.max() + 1) + tx <= 512
    assert scale * ys.min() + ty >= 0
    assert not {"top", "left", "right"} & set(touching_edges(rgba[..., 3]))
    assert not {"top", "left", "right"} & set(report.touching)


def _crypko_03_on_white(samples_dir: Path) -> tuple[Image.Image, Image.Image]:
    s = Image.open(samples_dir / "crypko_03.png").convert("RGBA")
    clear = Image.new("RGBA", (700, 640), (0, 0, 0, 0))
    clear.alpha_composite(s, (100, 60))
    white = Image.new("RGBA", clear.size, (255, 255, 255, 255))
    white.alpha_composite(clear)
    return clear, white.convert("RGB")


def _exif_rotated(white: Image.Image, path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the pixels are stored turned left
    white.transpose(Image.ROTATE_90).save(path, exif=exif, quality=92)


FORMATS = {
    "grey16.png": lambda clear, white, p: Image.fromarray(
        np.asarray(white.convert("L")).astype(np.uint16) * 257).save(p),
    "palette.png": lambda clear, white, p: white.convert("P", palette=Image.ADAPTIVE).save(p),
    "la.png": lambda clear, white, p: clear.convert("LA").save(p),
    "cmyk.jpg": lambda clear, white, p: white.convert("CMYK").save(p, quality=92),
    "exif.jpg": lambda clear, white, p: _exif_rotated(white, p),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_formats_decode_and_place(finder, landmarker_model, samples_dir, tmp_path, name):
    clear, white = _crypko_03_on_white(samples_dir)
    path = tmp_path / name
    FORMATS[name](clear, white, path)
    dec = read_image(path)
    assert dec.size == (700, 640)  # EXIF orientation applied: landscape again
    prepared = prepare_image(path, landmarker_model)
    _assert_face_placed(_face(finder, prepared.rgba))
    assert prepared.report.background.kind == ("alpha" if name == "la.png" else "removed")
    corners = prepared.rgba[[0, 0, -1], [0, -1, 0]]
    assert (corners == 0).all()


def test_real_alpha_is_kept_and_transparent_colour_zeroed(landmarker_model, samples_dir,
                                                          tmp_path):
    rgba = np.asarray(Image.open(samples_dir / "crypko_01.png").convert("RGBA")).copy()
    canvas = np.zeros((800, 900, 4), np.uint8)
    canvas[..., :3] = (255, 0, 255)  # junk colour under zero alpha, as careless exports leave
    canvas[150:662, 200:712] = np.where(rgba[..., 3:] > 0, rgba, canvas[150:662, 200:712])
    Image.fromarray(canvas).save(tmp_path / "a.png")
    prepared = prepare_image(tmp_path / "a.png", landmarker_model)
    out, report = prepared.rgba, prepared.report
    assert report.background.kind == "alpha" and report.zeroed > 100_000
    assert (out[out[..., 3] == 0] == 0).all()
    # The alpha itself survives: carried back through the transform it matches the sample's.
    t = report.transform
    expect = _warp(rgba[..., 3] / 255, t.scale, t.scale * 200 + t.tx, t.scale * 150 + t.ty, 0.0)
    assert np.abs(out[..., 3] / 255 - expect).mean() < 0.01


def _blank_face(samples_dir: Path, path: Path) -> FaceBox:
    """crypko_01 with its face painted over, at (200,150) on a transparent canvas; returns the
    true face box (the detector's box on the original sample) in that canvas."""
    rgba = np.asarray(Image.open(samples_dir / "crypko_01.png").convert("RGBA")).copy()
    canvas = np.zeros((800, 900, 4), np.uint8)
    canvas[150:662, 200:712] = rgba
    canvas[150 + 100:150 + 210, 200 + 200:200 + 320, :3] = (200, 160, 150)
    Image.fromarray(canvas).save(path)
    return FaceBox.around(258.5 + 200, 159.5 + 150, 85.0)


def test_no_face_falls_back_to_the_silhouette_with_a_warning(landmarker_model, samples_dir,
                                                             tmp_path):
    true_face = _blank_face(samples_dir, tmp_path / "noface.png")
    report = prepare_image(tmp_path / "noface.png", landmarker_model).report
    assert report.placed_by == "silhouette"
    assert any("no face found" in w and "--head-box" in w for w in report.warnings)
    assert any(line.startswith("warn placed by") for line in report.lines())
    # The silhouette's guess is rough but puts the real face near the target.
    t = report.transform
    cx, cy, w = t.scale * true_face.cx + t.tx, t.scale * true_face.cy + t.ty, t.scale * 85.0
    assert abs(cx - FACE_TARGET[0]) < 30 and abs(cy - FACE_TARGET[1]) < 30
    assert 0.75 < w / FACE_TARGET[2] < 1.35


def test_head_box_overrides_detection(landmarker_model, samples_dir, tmp_path):
    true_face = _blank_face(samples_dir, tmp_path / "noface.png")
    report = prepare_image(tmp_path / "noface.png", landmarker_model,
                           PrepareOptions(head_box=true_face)).report
    assert report.placed_by == "head-box"
    t = report.transform
    assert abs(t.scale * true_face.cx + t.tx - FACE_TARGET[0]) < 0.5
    assert abs(t.scale * true_face.cy + t.ty - FACE_TARGET[1]) < 0.5
    assert abs(t.scale * true_face.size - FACE_TARGET[2]) < 0.5


# ------------------------------------------------------------------------ the command itself

def test_cli_writes_a_character_that_renders(finder, renderer_cpu, landmarker_model, samples_dir,
                                             tmp_path, capsys):
    src = tmp_path / "girl.jpg"
    _flatten(samples_dir / "crypko_02.png", src, 0.45, (20, 20), (255, 255, 255), quality=95)
    out = tmp_path / "girl-ready.png"
    assert main(["prepare", str(src), "--out", str(out), "--show", "--weights",
                 str(landmarker_model.parent)]) == 0
    stdout = capsys.readouterr().out
    for check in ("background", "placed by", "head box", "edges"):
        assert check in stdout
    assert f"wrote {out}" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [src.name, out.name, compare_path(out).name])  # no temp files left behind

    character = load_character(out)  # the file decoded back: 512x512 RGBA
    _assert_face_placed(_face(finder, character.rgba))
    assert check_character(character, landmarker_model) == []
    compare = np.asarray(Image.open(compare_path(out)))
    assert compare.shape[0] == 512 and compare.shape[1] > 1024

    renderer_cpu.set_character(character)
    frame = renderer_cpu.render(Pose.neutral())
    assert frame.shape == (512, 512, 4) and frame.dtype == np.uint8
    drawn, given = frame[..., 3] > 127, character.rgba[..., 3] > 127
    assert (drawn & given).sum() / (drawn | given).sum() > 0.9  # the character, not noise


def test_busy_photo_is_refused_and_nothing_written(tmp_path, capsys, landmarker_model):
    skimage_data = pytest.importorskip("skimage.data")
    src = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(src)
    out = tmp_path / "out.png"
    code = main(["prepare", str(src), "--out", str(out), "--weights",
                 str(landmarker_model.parent)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "too busy" in err[0] and "image editor" in err[0] and "transparency" in err[0]
    assert [p.name for p in tmp_path.iterdir()] == [src.name]


def test_partly_busy_border_is_written_with_a_warning(landmarker_model, samples_dir, tmp_path,
                                                      capsys):
    src = tmp_path / "strip.png"
    _flatten(samples_dir / "crypko_00.png", src, 1.0, (150, 60), (255, 255, 255))
    img = np.asarray(Image.open(src)).copy()
    noise = np.random.default_rng(1).integers(0, 256, (img.shape[0], 60, 3), dtype=np.uint8)
    img[:, :60] = noise  # a busy strip down the left: ~30% of the border
    Image.fromarray(img).save(src)
    assert main(["prepare", str(src), "--out", str(tmp_path / "o.png"), "--weights",
                 str(landmarker_model.parent)]) == 0
    stdout = capsys.readouterr().out
    assert "warn" in stdout and "of the border is the flat background colour" in stdout


def _bomb(path: Path) -> None:
    """A PNG that declares 20000x20000 (400 Mpixel) in a few hundred bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * 20000) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))


def _truncated(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:20000])


BAD = [
    ("corrupt.png", _truncated, "damaged or truncated"),
    ("empty.png", lambda p: p.write_bytes(b""), "file is empty"),
    ("bomb.png", _bomb, "too large.*decompression bomb"),
    ("notes.png", lambda p: p.write_text("not a picture at all\n"), "not an image"),
    ("folder.png", lambda p: p.mkdir(), "is a folder"),
    ("missing.png", lambda p: None, "file not found"),
    ("tiny.png", lambda p: Image.new("RGB", (8, 8)).save(p), "only 8x8 pixels"),
    ("clear.png", lambda p: Image.new("RGBA", (600, 600)).save(p), "fully transparent"),
]


@pytest.mark.parametrize("name,make,message", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_are_one_line_exit_2(tmp_path, capsys, landmarker_model, name, make, message):
    src = tmp_path / name
    make(src)
    with pytest.raises(CharacterError, match=message):
        prepare_image(src, landmarker_model)
    out = tmp_path / "out.png"
    code = main(["prepare", str(src), "--out", str(out)])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("thacam: error:") and name in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["--head-box", "1,2"], "expected X,Y,SIZE"),
    (["--head-box", "1,2,-5"], "SIZE must be a positive"),
    (["--scale", "zero"], "--scale zero"),
    (["--out", "x.jpg"], "writes PNG"),
])
def test_bad_options_are_one_line_exit_2(tmp_path, capsys, argv, message):
    src = tmp_path / "in.png"
    Image.new("RGB", (64, 64), "white").save(src)
    assert main(["prepare", str(src), *argv]) == 2
    assert message in capsys.readouterr().err


def test_never_overwrites_the_input(tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.new("RGB", (64, 64), "white").save(src)
    before = src.read_bytes()
    assert main(["prepare", str(src), "--out", str(src)]) == 2
    assert "never overwrites" in capsys.readouterr().err and src.read_bytes() == before


# --------------------------------------------------------------------- checks on every load

def test_official_samples_pass_the_load_checks(samples_dir, landmarker_model):
    for path in sorted(samples_dir.glob("*.png")):
        assert check_character(load_character(path), landmarker_model) == [], path.name


def test_misplaced_character_gets_the_problems_and_the_fix(samples_dir, landmarker_model,
                                                           tmp_path, capsys):
    small = Image.open(samples_dir / "crypko_00.png").convert("RGBA").resize((300, 300))
    canvas = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
    canvas.alpha_composite(small, (250, -40))
    arr = np.asarray(canvas).copy()
    arr[arr[..., 3] == 0, :3] = 255  # white left under the transparent background
    path = tmp_path / "my char.png"
    Image.fromarray(arr).save(path)
    character = load_character(path)
    problems = check_character(character, landmarker_model)
    text = " ".join(problems)
    assert "touches the top" in text
    assert "transparent pixels carry colour" in text
    assert "where THA3 expects it" in text
    advice = character_advice(character, problems)
    assert f"thacam prepare {shlex.quote(str(path))} --out" in advice
    assert warn_if_not_conforming(character, landmarker_model.parent) == problems
    assert "thacam prepare" in capsys.readouterr().err


def test_checks_need_no_file(samples_dir, landmarker_model):
    # A character made in memory (no path) is checked on its pixels alone.
    rgba = np.asarray(Image.open(samples_dir / "lambda_00.png").convert("RGBA")).copy()
    assert check_character(Character(rgba), landmarker_model) == []
    shifted = np.zeros_like(rgba)
    shifted[:, :-150] = rgba[:, 150:]  # face far left, arm cut by the left edge
    problems = check_character(Character(shifted), landmarker_model)
    assert any("left edge" in p for p in problems)
    assert any("face centre x" in p for p in problems)
