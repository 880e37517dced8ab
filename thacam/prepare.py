"""Prepare stage: any picture of a character -> a valid THA3 character (`thacam prepare`).

THA3 was trained on 512x512 RGBA images whose non-character pixels are (0,0,0,0), with the head
where the official samples have theirs. Users have illustrations of any size, often without
transparency. This stage:

1. decodes any common format (EXIF orientation honoured; 16-bit, palette, LA, CMYK handled; bombs,
   corrupt, empty and non-image files refused with a CharacterError);
2. keeps a real alpha channel (zeroing the colour of fully transparent pixels), or removes a flat
   background: flood fill from the borders within a colour tolerance, then a soft, colour-unmixed
   edge. A background too busy for that is refused, never written half-removed;
3. finds the face with MediaPipe's face detector (the ``face_detector.tflite`` inside
   ``face_landmarker.task``) and scales/translates the picture so the face box lands on the mean
   of the boxes the same detector finds on the official samples (faces.FACE_TARGET); the
   silhouette (top of the head, head width) stands in, with a warning, when no face is found;
4. never cuts the character at the top or sides (it shrinks instead), pads/crops to 512x512, and
   detects the face again on the result to refine the placement and to report it.

Everything works on premultiplied float32 RGBA so resampling never bleeds background colour into
the edge. The face detector, the face target and the silhouette guess live in faces.py (the
character check uses them too). Must not import torch or thacam.render.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageOps

from .character import open_image, touching_edges
from .errors import CharacterError
from .faces import (FACE_CX_RANGE, FACE_CY_RANGE, FACE_TARGET, FACE_W_RANGE, SIZE, FaceBox,
                    FaceFinder, face_problems, on_white, silhouette_box, silhouette_face)

__all__ = [
    "Placement", "Background", "PrepareOptions", "PrepareReport", "Prepared", "Decoded",
    "read_image", "remove_background", "prepare_image", "compare_image", "parse_head_box",
    "default_out_path", "compare_path", "to_uint8",
]

log = logging.getLogger(__name__)

# Larger inputs are reduced first: the output only needs a ~86 px face, and a 64 Mpixel float
# image would cost a gigabyte.
WORK_MAX_SIDE = 2048
# Pixels kept clear between the character and the top/left/right edges of the output.
EDGE_MARGIN = 4
# How far the face centre may move off the target (px) before the character is shrunk instead:
# the official samples' own face centres spread over ~20 px.
MAX_SHIFT_X = 12.0
MAX_SHIFT_Y = 8.0
# Background removal: share of the border that must be one flat colour. Below REFUSE the
# background is called busy and nothing is written; below WARN the result is written with a
# warning to check it.
BORDER_REFUSE = 0.5
BORDER_WARN = 0.85
# Colour tolerance (0..1 RGB distance) of the flood fill: adapted to the border's noise (JPEG,
# paper texture) within these bounds.
TOL_MIN = 10 / 255
TOL_MAX = 40 / 255
# Median distance of the near-dominant border pixels from that colour above which the border is
# texture or a photo, not a flat colour with JPEG noise (flat art, even saved as JPEG at quality
# 50, measures 0 levels; the skimage photos hubble, coffee, rocket, chelsea, cat 8-15).
NOISE_REFUSE = 6 / 255
# Less of the frame than this visible means the placement put the character out of frame (an
# official sample covers 20-40 % of it).
MIN_VISIBLE = 0.01
# An alpha channel counts as real when at least this share of pixels is mostly transparent.
REAL_ALPHA_SHARE = 0.01


# ------------------------------------------------------------------------------------ types

@dataclass(frozen=True)
class Placement:
    """out = scale * p + (tx, ty), p in work-image pixels (corner convention)."""

    scale: float
    tx: float
    ty: float

    def forward(self, box: FaceBox) -> FaceBox:
        return FaceBox(box.x * self.scale + self.tx, box.y * self.scale + self.ty,
                       box.size * self.scale, box.score)

    def inverse(self, box: FaceBox) -> FaceBox:
        return FaceBox((box.x - self.tx) / self.scale, (box.y - self.ty) / self.scale,
                       box.size / self.scale, box.score)


@dataclass(frozen=True)
class Background:
    """What happened to the background."""

    kind: str                      # "alpha" (kept the image's own) | "removed" (flat colour)
    colour: tuple[int, int, int] | None = None
    border_share: float = 1.0      # share of border pixels within tolerance of `colour`
    tolerance: float = 0.0         # flood-fill tolerance used (0..255 RGB distance)
    cleared_share: float = 0.0     # share of the picture made transparent


@dataclass(frozen=True)
class PrepareOptions:
    scale: float | None = None     # output px per input px; None = from the face (auto)
    head_box: FaceBox | None = None  # the face box in input pixels, overriding detection


@dataclass(frozen=True)
class PrepareReport:
    source: str
    source_size: tuple[int, int]
    source_mode: str
    background: Background
    zeroed: int                    # transparent pixels whose colour was zeroed
    placed_by: str                 # "face" | "silhouette" | "head-box"
    face_in_input: FaceBox | None  # the face box used, in input pixels
    transform: Placement           # input px -> output px
    face_out: FaceBox | None       # the face box in the prepared image (see face_measured)
    touching: tuple[str, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    face_measured: bool = True     # face_out is the detector's (False: the silhouette's guess)

    @property
    def scale(self) -> float:
        """Output pixels per input pixel."""
        return self.transform.scale

    @property
    def face_ok(self) -> bool:
        return self.face_out is not None and not face_problems(self.face_out)

    def lines(self) -> list[str]:
        """The check report, one line per check, tagged ok / warn."""
        def tag(ok: bool) -> str:
            return "ok  " if ok else "warn"

        w, h = self.source_size
        out = [f"     input       {self.source} ({w}x{h}, {self.source_mode})"]
        bg = self.background
        if bg.kind == "alpha":
            out.append(f"{tag(True)} alpha       kept the image's alpha channel"
                       + (f"; zeroed the colour of {self.zeroed} transparent pixels"
                          if self.zeroed else ""))
        else:
            c = "#%02x%02x%02x" % bg.colour if bg.colour else "?"
            out.append(f"{tag(bg.border_share >= BORDER_WARN)} background  removed flat {c} "
                       f"({bg.border_share:.0%} of the border, tolerance {bg.tolerance:.0f}); "
                       f"{bg.cleared_share:.0%} of the picture cleared, edges softened")
        src = {"face": "face detector", "silhouette": "silhouette (no face found)",
               "head-box": "--head-box"}[self.placed_by]
        fi = self.face_in_input
        out.append(f"{tag(self.placed_by != 'silhouette')} placed by   {src}"
                   + (f": face box {fi.text()} in the input" if fi else "")
                   + f", scale {self.scale:.3g}")
        tx, ty, tw = FACE_TARGET
        if self.face_out is None:
            out.append(f"{tag(False)} head box    no face found in the prepared image "
                       f"(target centre {tx:.0f},{ty:.0f} width {tw:.0f})")
        else:
            f = self.face_out
            how = f"score {f.score:.2f}" if self.face_measured else "estimated, not detected"
            out.append(f"{tag(self.face_ok and self.face_measured)} head box    face centre "
                       f"{f.cx:.0f},{f.cy:.0f} width "
                       f"{f.size:.0f} ({how}); target {tx:.0f},{ty:.0f} width "
                       f"{tw:.0f}, samples x {FACE_CX_RANGE[0]:.0f}-{FACE_CX_RANGE[1]:.0f} "
                       f"y {FACE_CY_RANGE[0]:.0f}-{FACE_CY_RANGE[1]:.0f} "
                       f"width {FACE_W_RANGE[0]:.0f}-{FACE_W_RANGE[1]:.0f}")
        cut = [s for s in self.touching if s != "bottom"]
        edge = ("touches the " + ", ".join(cut) + " edge (cut off)" if cut
                else "clear of the top and sides")
        if "bottom" in self.touching:
            edge += "; runs off the bottom (fine for a bust)"
        out.append(f"{tag(not cut)} edges       {edge}")
        out.extend(f"warn {w}" for w in self.warnings)
        return out


@dataclass(frozen=True)
class Prepared:
    rgba: np.ndarray               # uint8 (512, 512, 4), (0,0,0,0) outside the character
    report: PrepareReport


# --------------------------------------------------------------------------------- decoding

@dataclass(frozen=True)
class Decoded:
    rgb: np.ndarray                # float32 (H, W, 3), 0..1, straight colour
    alpha: np.ndarray | None       # float32 (H, W), 0..1; None: the file has no alpha
    mode: str                      # the file's pixel format, as Pillow names it
    size: tuple[int, int]          # the picture's (width, height), orientation applied
    factor: float                  # rgb pixels per picture pixel (<1: reduced on decoding)


def read_image(path: Path | str, max_side: int = WORK_MAX_SIDE) -> Decoded:
    """Decode any picture Pillow reads into float32 RGB and alpha (or None), in 0..1.

    EXIF orientation is applied; 16-bit greys keep their range (Pillow's own conversion clips
    them); palette, LA, CMYK and the rest go through Pillow's conversions. Pictures larger than
    ``max_side`` are reduced by a whole factor while still 8-bit (premultiplied when they have
    alpha), so a 60 Mpixel scan never becomes gigabytes of floats.

    Raises:
        CharacterError: missing, empty, not an image, damaged, too large, unusual pixel format.
    """
    path = Path(path)
    img = open_image(path)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as exc:  # a damaged EXIF block must not lose the picture itself
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", path, exc)
    mode, size = img.mode, img.size
    has_alpha = (mode in ("RGBA", "RGBa", "LA", "La", "PA")
                 or (mode in ("P", "L", "RGB") and "transparency" in img.info))
    factor = 1
    if max(size) > max_side:
        factor = math.ceil(max(size) / max_side)
        if has_alpha:  # premultiplied, so transparent pixels' colour does not bleed in
            img = img.convert("RGBa").reduce(factor).convert("RGBA")
        else:
            try:
                img = img.reduce(factor)
            except ValueError:  # a mode reduce() does not take (palette, 1-bit, 16-bit, ...)
                img = img.convert("I" if mode.startswith("I;16") else "RGB").reduce(factor)
    alpha = None
    try:
        mode_now = img.mode
        if mode_now.startswith("I;16") or mode_now == "I":
            grey = np.asarray(img, dtype=np.float32)
            top = 65535.0 if mode_now.startswith("I;16") or grey.max() > 255 else 255.0
            rgb = np.repeat((np.clip(grey, 0, top) / top)[..., None], 3, axis=2)
        elif mode_now == "F":
            grey = np.asarray(img, dtype=np.float32)
            grey = grey / 255.0 if grey.max() > 1.0 else grey
            rgb = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2)
        else:
            arr = np.asarray(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255
            rgb = arr[..., :3]
            if has_alpha:
                alpha = arr[..., 3]
    except (ValueError, OSError) as exc:
        raise CharacterError(path, f"cannot convert pixels of mode {mode} to RGB ({exc})",
                             "save it as an 8-bit RGB or RGBA PNG in an image editor") from None
    if rgb.shape[0] < 16 or rgb.shape[1] < 16:
        raise CharacterError(path, f"image is only {rgb.shape[1]}x{rgb.shape[0]} pixels",
                             "give a picture of the character at least 256 pixels tall")
    return Decoded(np.ascontiguousarray(rgb), alpha, mode, size, 1.0 / factor)


# ------------------------------------------------------------------------------- background

def _border_pixels(rgb: np.ndarray, width: int = 2) -> np.ndarray:
    return np.concatenate([rgb[:width].reshape(-1, 3), rgb[-width:].reshape(-1, 3),
                           rgb[width:-width, :width].reshape(-1, 3),
                           rgb[width:-width, -width:].reshape(-1, 3)])


def _dominant_colour(border: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """The border's most common colour, its noise, the tolerance that calls for, and its share.

    Colours are binned 16 levels per channel; the fullest bin seeds the colour, refined as the
    median of the pixels near it. Noise is the median distance of those pixels (robust: the
    character's pixels on the border do not inflate it).
    """
    q = np.clip((border * 16).astype(np.int32), 0, 15)
    keys = q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]
    mode = np.bincount(keys).argmax()
    colour = np.median(border[keys == mode], axis=0)
    for _ in range(2):
        near = np.linalg.norm(border - colour, axis=1) < 0.1
        colour = np.median(border[near], axis=0)
    dist = np.linalg.norm(border - colour, axis=1)
    noise = float(np.median(dist[dist < 0.1])) if (dist < 0.1).any() else 0.0
    tol = float(np.clip(4.0 * noise + 6 / 255, TOL_MIN, TOL_MAX))
    return colour, noise, tol, float((dist <= tol).mean())


def remove_background(rgb: np.ndarray, path: object = "image",
                      ) -> tuple[np.ndarray, np.ndarray, Background, list[str]]:
    """Remove a flat background: returns (premultiplied RGB, alpha, Background, warnings).

    The pixels within tolerance of the border's dominant colour that connect to the border become
    transparent (a flood fill from every border pixel). A 2-pixel band around that region gets a
    soft alpha by un-mixing: each band pixel is taken as alpha * foreground + (1 - alpha) *
    background, with the foreground colour borrowed from the nearest solid pixels, which also
    removes the background's halo from anti-aliased outlines. Enclosed background (between an
    arm and the body) is kept: it cannot be told from white clothing.

    Raises:
        CharacterError: the border is not mostly one flat colour (busy background), or nothing
            of the picture would be left.
    """
    colour, noise, tol, share = _dominant_colour(_border_pixels(rgb))
    editor = ("cut the character out in an image editor (GIMP, Krita, Photoshop or an online "
              "background remover), save it as a PNG with transparency, and run `thacam prepare` "
              "on that")
    if share < BORDER_REFUSE:
        raise CharacterError(path, f"the background is too busy to remove: only {share:.0%} of "
                             "the border is one flat colour (a photo, a gradient or texture, or "
                             "a character filling the frame; thacam removes flat backgrounds "
                             "only)", editor)
    if noise > NOISE_REFUSE:
        raise CharacterError(path, f"the background is too busy to remove: the border's colour "
                             f"varies by {noise * 255:.0f} levels (a photo or texture; thacam "
                             "removes flat backgrounds only)", editor)
    warnings = []
    if share < BORDER_WARN:
        warnings.append(f"only {share:.0%} of the border is the flat background colour: check "
                        "that nothing of the character was removed (or cut it out by hand)")
    dist = np.linalg.norm(rgb - colour, axis=2)
    like = (dist <= tol).astype(np.uint8)
    _, labels = cv2.connectedComponents(like, connectivity=8)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge_labels = edge_labels[edge_labels != 0]
    bg = np.isin(labels, edge_labels) & (like > 0)
    cleared = float(bg.mean())
    if cleared > 0.995 or (~bg).sum() < 64:
        raise CharacterError(path, "removing the flat background leaves nothing of the picture",
                             "check that it is the right file")

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    band = cv2.dilate(bg.astype(np.uint8), kernel, iterations=2).astype(bool) & ~bg
    solid = ~bg & ~band
    # Foreground colour near each band pixel: the mean of solid pixels within 2 px.
    sw = cv2.blur(solid.astype(np.float32), (5, 5))
    fg = cv2.blur(rgb * solid[..., None], (5, 5)) / np.maximum(sw, 1e-6)[..., None]
    fg = np.where((sw > 0)[..., None], fg, rgb)
    diff = fg - colour
    den = (diff * diff).sum(axis=2)
    unmixed = ((rgb - colour) * diff).sum(axis=2) / np.maximum(den, 1e-6)
    # Where the foreground is close to the background colour, un-mixing is ill-posed: ramp alpha
    # on the distance instead.
    ramp = (dist - tol) / (2 * tol)
    a_band = np.clip(np.where(den > 0.01, unmixed, ramp), 0.0, 1.0)
    alpha = np.where(solid, 1.0, np.where(band, a_band, 0.0)).astype(np.float32)
    # Premultiplied foreground: c = a*f + (1-a)*bg  =>  a*f = c - (1-a)*bg.
    prem = np.clip(rgb - (1.0 - alpha)[..., None] * colour, 0.0, None)
    prem = np.minimum(prem, alpha[..., None]).astype(np.float32)
    prem[~(alpha > 0)] = 0.0
    alpha = _drop_specks(alpha)
    prem[alpha == 0] = 0.0
    rgb8 = tuple(int(round(float(c) * 255)) for c in colour)
    return prem, alpha, Background("removed", rgb8, share, tol * 255, cleared), warnings


def _drop_specks(alpha: np.ndarray) -> np.ndarray:
    """Clear tiny isolated blobs (JPEG noise, dust) left outside the character."""
    mask = (alpha > 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return alpha
    min_area = max(20, int(alpha.size * 2e-5))
    small = np.nonzero(stats[1:, cv2.CC_STAT_AREA] < min_area)[0] + 1
    if small.size:
        alpha = alpha.copy()
        alpha[np.isin(labels, small)] = 0.0
    return alpha


# --------------------------------------------------------------------------------- placement

def _warp(prem: np.ndarray, alpha: np.ndarray, p: Placement, size: int = SIZE,
          ) -> tuple[np.ndarray, np.ndarray]:
    """Resample premultiplied RGBA into a size x size canvas with placement ``p``.

    Reductions go through INTER_AREA first (anti-aliased); the remaining near-1 scale and the
    sub-pixel shift go through warpAffine. Corner-convention coordinates throughout.
    """
    rgba = np.dstack([prem, alpha])
    h, w = alpha.shape
    rx = ry = p.scale
    if p.scale < 1.0:
        nw, nh = max(1, round(w * p.scale)), max(1, round(h * p.scale))
        rgba = cv2.resize(rgba, (nw, nh), interpolation=cv2.INTER_AREA)
        rx, ry = p.scale * w / nw, p.scale * h / nh
    m = np.array([[rx, 0.0, p.tx + 0.5 * rx - 0.5], [0.0, ry, p.ty + 0.5 * ry - 0.5]])
    interp = cv2.INTER_CUBIC if p.scale > 1.05 else cv2.INTER_LINEAR
    out = cv2.warpAffine(rgba, m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(0, 0, 0, 0))
    a = np.clip(out[..., 3], 0.0, 1.0)
    a[a < 0.5 / 255] = 0.0
    rgb = np.clip(out[..., :3], 0.0, a[..., None])
    return rgb, a


def _fit(face: FaceBox, box: tuple[int, int, int, int], scale: float | None,
         ) -> tuple[Placement, bool]:
    """Placement putting ``face`` (work px) on the target without cutting top or sides.

    Returns the placement and whether the character had to be shrunk to fit.
    """
    tcx, tcy, tw = FACE_TARGET
    x0, y0, x1, _ = box
    s = tw / face.size if scale is None else scale
    shrunk = False
    if scale is None:
        m = EDGE_MARGIN
        limits = [(SIZE - 2 * m) / max(x1 - x0, 1)]
        if face.cx > x0:
            limits.append((tcx + MAX_SHIFT_X - m) / (face.cx - x0))
        if x1 > face.cx:
            limits.append((SIZE - m - (tcx - MAX_SHIFT_X)) / (x1 - face.cx))
        if face.cy > y0:
            limits.append((tcy + MAX_SHIFT_Y - m) / (face.cy - y0))
        s_max = min(limits)
        if s > s_max * 1.0001:
            shrunk = s > s_max * 1.01
            s = s_max
    tx, ty = tcx - s * face.cx, tcy - s * face.cy
    m = EDGE_MARGIN
    if s * x0 + tx < m:
        tx = m - s * x0
    elif s * x1 + tx > SIZE - m:
        tx = SIZE - m - s * x1
    if s * y0 + ty < m:
        ty = m - s * y0
    return Placement(s, tx, ty), shrunk


def _pick(faces: list[FaceBox], box: tuple[int, int, int, int]) -> FaceBox | None:
    """The most confident face whose centre is in the upper part of the silhouette.

    The detector also fires, weakly, on chests and folds (scores 0.30-0.35 on three samples,
    always below the real face); a face sits in the top 55% of a character's silhouette.
    """
    x0, y0, x1, y1 = box
    for f in faces:
        if x0 <= f.cx <= x1 and y0 <= f.cy <= y0 + 0.55 * (y1 - y0) and f.size < 1.2 * (x1 - x0):
            return f
    return None


def _locate(finder: FaceFinder, prem: np.ndarray, alpha: np.ndarray,
            box: tuple[int, int, int, int], guess: FaceBox) -> FaceBox | None:
    """Search for the face in a few views of the work image; best face in work pixels.

    The detector expects a face of roughly the samples' size in a 512 image, so views are built
    around the silhouette's guess (at three zooms, covering its error) plus the whole character.
    """
    views = []
    for zoom in (1.0, 0.7, 1.4):
        g = FaceBox.around(guess.cx, guess.cy, guess.size / zoom)
        views.append(_fit(g, box, None)[0] if zoom == 1.0 else
                     Placement(FACE_TARGET[2] / g.size, FACE_TARGET[0] - FACE_TARGET[2] / g.size
                               * g.cx, FACE_TARGET[1] - FACE_TARGET[2] / g.size * g.cy))
    x0, y0, x1, y1 = box
    s = (SIZE - 32) / max(x1 - x0, y1 - y0)
    views.append(Placement(s, SIZE / 2 - s * (x0 + x1) / 2, 16 - s * y0))
    best: FaceBox | None = None
    for p in views:
        rgb, a = _warp(prem, alpha, p)
        faces = [p.inverse(f) for f in finder.find(on_white(rgb, a))]
        f = _pick(faces, box)
        if f is not None and (best is None or f.score > best.score):
            best = f
    return best


# Views for _refine: (zoom, dx, dy) around the target placement. The detector's box jitters by up
# to ~10% in size and ~10 px in position between nearly identical views (it sees a 128x128
# input), so the face is measured in several and the median kept.
# A face must be found again in this many of them to count as one.
MIN_REFINE_HITS = 4
_JITTER = ((1.0, 0, 0), (0.92, 4, 3), (1.08, -4, -3), (0.96, -3, 4), (1.04, 3, -4),
           (0.88, 0, -2), (1.12, 0, 2))


def _refine(finder: FaceFinder, prem: np.ndarray, alpha: np.ndarray, face: FaceBox,
            ) -> tuple[FaceBox, int]:
    """Re-measure ``face`` (work px) in views at the target scale, where the samples were
    measured: the median box and in how many of the views the detector found it again."""
    tcx, tcy, tw = FACE_TARGET
    found = []
    for zoom, dx, dy in _JITTER:
        s = tw / face.size * zoom
        p = Placement(s, tcx + dx - s * face.cx, tcy + dy - s * face.cy)
        rgb, a = _warp(prem, alpha, p)
        expect = p.forward(face)
        near = [f for f in finder.find(on_white(rgb, a))
                if abs(f.cx - expect.cx) < 0.5 * expect.size
                and abs(f.cy - expect.cy) < 0.5 * expect.size]
        if near:
            found.append(p.inverse(near[0]))
    if not found:
        return face, 0
    cx, cy, size = (float(np.median([getattr(f, k) for f in found])) for k in ("cx", "cy", "size"))
    return FaceBox.around(cx, cy, size, max(f.score for f in found)), len(found)


def _settle(finder: FaceFinder, prem: np.ndarray, alpha: np.ndarray, face: FaceBox,
            rounds: int = 3) -> FaceBox | None:
    """Refine ``face`` until it stops moving; None when it is not a stable face.

    A chance hit (a chest, a fold, a hand) vanishes when the view moves, or drifts as it is
    re-measured (it grows with each zoom); a real face is found again in place.
    """
    for _ in range(rounds):
        refined, hits = _refine(finder, prem, alpha, face)
        if hits < MIN_REFINE_HITS:
            return None
        moved = max(abs(refined.cx - face.cx), abs(refined.cy - face.cy)) / face.size
        grown = abs(refined.size / face.size - 1)
        log.debug("face %s -> %s (%d views, moved %.2f, size %+.2f)", face, refined, hits,
                  moved, grown)
        face = refined
        if moved < 0.08 and grown < 0.08:
            return face
    return None


def _closest_to_target(faces: list[FaceBox]) -> FaceBox | None:
    tcx, tcy, tw = FACE_TARGET
    near = [f for f in faces if abs(f.cx - tcx) < tw and abs(f.cy - tcy) < tw]
    return max(near, key=lambda f: f.score) if near else None


# ------------------------------------------------------------------------------------ driver

def parse_head_box(text: str) -> FaceBox:
    """``X,Y,SIZE`` (input pixels; X,Y = top-left corner) -> FaceBox.

    Raises:
        ValueError: not three numbers, or SIZE not positive.
    """
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise ValueError(f"--head-box {text!r}: expected X,Y,SIZE (three numbers)")
    try:
        x, y, size = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--head-box {text!r}: expected X,Y,SIZE (three numbers)") from None
    if not size > 0 or not all(math.isfinite(v) for v in (x, y, size)):
        raise ValueError(f"--head-box {text!r}: SIZE must be a positive number")
    return FaceBox(x, y, size)


def default_out_path(image: Path) -> Path:
    return image.with_name(image.stem + "_prepared.png")


def compare_path(out: Path) -> Path:
    return out.with_name(out.stem + ".compare.png")


def prepare_image(path: Path | str, landmarker_task: Path,
                  options: PrepareOptions = PrepareOptions()) -> Prepared:
    """Turn the picture at ``path`` into a valid THA3 character, with a report of the checks.

    Raises:
        CharacterError: unreadable picture, busy background, fully transparent picture.
        MissingWeights: no face_landmarker.task.
    """
    path = Path(path)
    dec = read_image(path)
    rgb, alpha, f_in = dec.rgb, dec.alpha, dec.factor
    warnings: list[str] = []

    # Transparency: a real alpha channel is kept; an opaque one is treated as no alpha.
    zeroed = 0
    if alpha is not None and alpha.max() == 0:
        raise CharacterError(path, "image is fully transparent", "check that it is the right "
                             "file")
    if alpha is not None and (alpha < 0.5).mean() < REAL_ALPHA_SHARE:
        log.info("%s: the alpha channel is (almost) fully opaque; removing the background", path)
        alpha = None
    if alpha is not None:
        zeroed = int(((alpha == 0) & (rgb.max(axis=2) > 0)).sum())
        prem = (rgb * alpha[..., None]).astype(np.float32)
        alpha = alpha.astype(np.float32)
        background = Background("alpha")
    else:
        prem, alpha, background, bg_warn = remove_background(rgb, path)
        warnings += bg_warn
    if not (alpha > 0.05).any():
        raise CharacterError(path, "nothing of the character is left (all transparent)",
                             "check that it is the right file")
    # Work image = the silhouette's box (plus a margin) at work resolution.
    bx0, by0, bx1, by1 = silhouette_box(alpha)
    pad = 4
    cx0, cy0 = max(0, bx0 - pad), max(0, by0 - pad)
    prem = np.ascontiguousarray(prem[cy0:by1 + pad, cx0:bx1 + pad])
    alpha = np.ascontiguousarray(alpha[cy0:by1 + pad, cx0:bx1 + pad])
    box = silhouette_box(alpha)

    def to_input(f: FaceBox) -> FaceBox:
        return FaceBox((f.x + cx0) / f_in, (f.y + cy0) / f_in, f.size / f_in, f.score)

    def to_work(f: FaceBox) -> FaceBox:
        return FaceBox(f.x * f_in - cx0, f.y * f_in - cy0, f.size * f_in, f.score)

    user_scale = None if options.scale is None else options.scale / f_in
    with FaceFinder(landmarker_task) as finder:
        if options.head_box is not None:
            face, placed_by = to_work(options.head_box), "head-box"
        else:
            guess = silhouette_face(alpha)
            face = _locate(finder, prem, alpha, box, guess)
            placed_by = "face"
            if face is not None:
                face = _settle(finder, prem, alpha, face)
            if face is None:
                face, placed_by = guess, "silhouette"
                warnings.append("no face found: placed by the silhouette (top of the head and "
                                "its width); check the result, or give the face box with "
                                "--head-box X,Y,SIZE")
        placement, shrunk = _fit(face, box, user_scale)
        out_rgb, out_a = _warp(prem, alpha, placement)
        if placed_by == "silhouette":
            # The detector found no stable face anywhere; whatever it fires on now is not one.
            face_out = placement.forward(face)
        else:
            face_out = _closest_to_target(finder.find(on_white(out_rgb, out_a)))
    if shrunk:
        warnings.append("shrunk the character so nothing is cut at the top or sides: the head "
                        "is smaller than THA3 expects")

    rgba = to_uint8(out_rgb, out_a)
    visible = int((rgba[..., 3] >= 16).sum())
    if visible < MIN_VISIBLE * SIZE * SIZE:
        raise CharacterError(path, f"almost nothing of the character lands in the 512x512 frame "
                             f"({visible} visible pixels)", "use --scale auto (or a smaller "
                             "factor) and check --head-box X,Y,SIZE (the square around the face)")
    touching = touching_edges(rgba[..., 3])
    if placed_by == "head-box" and face_out is None:
        warnings.append("no face found in the prepared image: THA3 may not animate it")
    elif placed_by != "silhouette" and face_out is not None and face_problems(face_out):
        warnings.append("the face is not where THA3 expects it ("
                        + "; ".join(face_problems(face_out)) + ")")
    report = PrepareReport(
        source=str(path), source_size=dec.size, source_mode=dec.mode,
        background=background, zeroed=zeroed, placed_by=placed_by,
        face_in_input=to_input(face),
        transform=Placement(placement.scale * f_in, placement.tx - placement.scale * cx0,
                            placement.ty - placement.scale * cy0),
        face_out=face_out,
        touching=touching, warnings=tuple(warnings), face_measured=placed_by != "silhouette")
    return Prepared(rgba, report)


def to_uint8(prem: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Premultiplied float RGBA -> straight uint8 RGBA with (0,0,0,0) where alpha rounds to 0."""
    a8 = np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8)
    rgb = prem / np.maximum(alpha, 1e-6)[..., None]
    rgb8 = np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)
    rgba = np.dstack([rgb8, a8])
    rgba[a8 == 0] = 0
    return rgba


# ----------------------------------------------------------------------------------- picture

def _checker(h: int, w: int, cell: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    light = ((yy // cell + xx // cell) % 2 == 0)
    return np.where(light[..., None], 235, 200).astype(np.float32)


def compare_image(source: Path | str, prepared: Prepared, height: int = SIZE) -> np.ndarray:
    """A side-by-side RGB picture: the input as given | the prepared character on a checkerboard,
    with the target face box (green) and the face found (orange) drawn on it."""
    dec = read_image(source)
    h, w = dec.rgb.shape[:2]
    k = min(height / h, 2 * height / w)  # a very wide input is capped at twice the height
    size = (max(1, round(w * k)), max(1, round(h * k)))
    rgb = cv2.resize(dec.rgb, size, interpolation=cv2.INTER_AREA)
    if dec.alpha is not None:
        a = cv2.resize(dec.alpha, size, interpolation=cv2.INTER_AREA)[..., None]
        rgb = rgb * a * 255 + _checker(size[1], size[0]) * (1 - a)
    else:
        rgb = rgb * 255
    before = np.full((height, size[0], 3), 255.0, np.float32)
    top = (height - size[1]) // 2
    before[top:top + size[1]] = rgb
    after = prepared.rgba.astype(np.float32)
    a = after[..., 3:] / 255
    after = after[..., :3] * a + _checker(SIZE, SIZE) * (1 - a)
    after_img = Image.fromarray(np.clip(after + 0.5, 0, 255).astype(np.uint8))
    if height != SIZE:
        after_img = after_img.resize((height, height), Image.LANCZOS)
    draw = ImageDraw.Draw(after_img)
    r = height / SIZE
    tcx, tcy, tw = FACE_TARGET
    draw.rectangle([(tcx - tw / 2) * r, (tcy - tw / 2) * r, (tcx + tw / 2) * r,
                    (tcy + tw / 2) * r], outline=(40, 170, 60), width=2)
    f = prepared.report.face_out
    if f is not None:
        draw.rectangle([f.x * r, f.y * r, (f.x + f.size) * r, (f.y + f.size) * r],
                       outline=(240, 120, 20), width=2)
    gap = 8
    canvas = np.full((height, size[0] + gap + height, 3), 255, np.uint8)
    canvas[:, :size[0]] = np.clip(before + 0.5, 0, 255).astype(np.uint8)
    canvas[:, size[0] + gap:] = np.asarray(after_img)
    return canvas
