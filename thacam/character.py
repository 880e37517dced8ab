"""Character images: load, check, and convert to what THA3 expects.

THA3 needs a 512x512 RGBA image whose non-character pixels are (0,0,0,0), upright, with the head
roughly inside the 128x128 box centred in the top half. Loading enforces the hard rules (size,
alpha) with a one-line error naming ``thacam prepare``, the command that fixes an image; checking
compares the head with the official samples (faces.py measures it).

Must not import torch, cv2 or prepare (prepare builds on this module).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import CharacterError
from .faces import (FACE_CX_RANGE, FACE_CY_RANGE, FACE_W_RANGE, SIZE, FaceFinder, face_problems,
                    on_white, silhouette_face)

__all__ = ["Character", "load_character", "open_image", "srgb_to_linear", "linear_to_srgb",
           "to_model_input", "prepare_hint", "check_character", "character_advice",
           "touching_edges"]

log = logging.getLogger(__name__)

# Pillow's own bomb check trips at ~179 Mpixel; thacam never needs more than a big illustration.
MAX_PIXELS = 64_000_000


def prepare_hint(path: Path | str) -> str:
    return f"run `thacam prepare {path}` to make a valid character"


@dataclass(frozen=True)
class Character:
    """A checked character: RGBA uint8 (512, 512, 4), transparent pixels zeroed."""

    rgba: np.ndarray
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.path.stem if self.path else "character"


def open_image(path: Path) -> Image.Image:
    """Open and decode any picture Pillow reads, refusing what is not one.

    Raises:
        CharacterError: missing, a folder, empty, not an image, damaged or truncated, or over
            MAX_PIXELS (a possible decompression bomb).
    """
    if not path.exists():
        raise CharacterError(path, "file not found", "check the path")
    if path.is_dir():
        raise CharacterError(path, "is a folder, not an image", "give the path of a PNG file")
    if path.stat().st_size == 0:
        raise CharacterError(path, "file is empty", "export the character again as a PNG")
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()  # decode now, so a truncated file fails here and not later
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CharacterError(path, f"image is too large (over {MAX_PIXELS // 1_000_000} Mpixel, "
                             "a possible decompression bomb)",
                             "scale it down in an image editor, then run `thacam prepare`") from None
    except UnidentifiedImageError:
        raise CharacterError(path, "not an image Pillow can read",
                             "give a PNG, WebP, JPEG or similar image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise CharacterError(path, f"image file is damaged or truncated ({exc})",
                             "export the character again as a PNG") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    return img


def load_character(path: Path | str) -> Character:
    """Load a 512x512 RGBA character and zero the colour of fully transparent pixels.

    Raises:
        CharacterError: not an image, truncated, too large, no alpha, wrong size.
    """
    path = Path(path)
    img = open_image(path)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if not has_alpha:
        raise CharacterError(path, f"image has no alpha channel (mode {img.mode})",
                             prepare_hint(path))
    if img.size != (SIZE, SIZE):
        raise CharacterError(path, f"image is {img.size[0]}x{img.size[1]}, THA3 needs 512x512",
                             prepare_hint(path))
    rgba = np.array(img.convert("RGBA"), dtype=np.uint8)
    if not rgba[..., 3].any():
        raise CharacterError(path, "image is fully transparent", "check that it is the right file")
    rgba[rgba[..., 3] == 0] = 0
    return Character(rgba, path)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1.0 / 2.4) - 0.055)


def to_model_input(rgba: np.ndarray) -> np.ndarray:
    """uint8 (H,W,4) sRGB -> float32 (4,H,W) in [-1,1], linear RGB, as THA3 was trained.

    Computed in float64 and cast once, exactly like the reference, so outputs match bit for bit.
    """
    x = rgba.astype(np.float64) / 255.0
    x[rgba[..., 3] == 0] = 0.0
    x[..., :3] = srgb_to_linear(x[..., :3])
    return (x.transpose(2, 0, 1) * 2.0 - 1.0).astype(np.float32)


# --------------------------------------------------------------------------- placement checks

# Slack around the samples' face ranges (faces.py). Looser than what `thacam prepare` guarantees
# (12 px, 15%): hand-made characters that THA3 animates well vary more than the samples do, and a
# warning on every run would be noise.
CHECK_SLACK_PX = 24.0
CHECK_SLACK = 0.25


def touching_edges(alpha: np.ndarray, min_pixels: int = 3, level: int = 16) -> tuple[str, ...]:
    """The sides ("top", "left", "right", "bottom") the character's pixels touch.

    A few faint pixels (anti-aliasing, a stray hair) do not count: at least ``min_pixels`` on the
    outermost row or column with alpha >= ``level`` (uint8) do.
    """
    a = alpha if alpha.dtype == np.uint8 else np.clip(alpha * 255, 0, 255)
    sides = {"top": a[0], "left": a[:, 0], "right": a[:, -1], "bottom": a[-1]}
    return tuple(name for name, line in sides.items() if int((line >= level).sum()) >= min_pixels)


def check_character(character: Character, landmarker: Path | None = None) -> list[str]:
    """What about a loaded character differs from what THA3 expects (empty list: nothing).

    Checks colour left in transparent pixels (read from the file: loading zeroes it), the
    character running off the top or sides, and the face position and size against the official
    samples (MediaPipe's face detector; skipped when the model file or mediapipe is missing).
    Running off the bottom is normal (a bust) and not reported.
    """
    problems: list[str] = []
    if character.path is not None and Path(character.path).is_file():
        try:
            raw = np.asarray(open_image(Path(character.path)).convert("RGBA"))
            if raw.shape == character.rgba.shape:
                clear = raw[..., 3] == 0
                n = int((clear & raw[..., :3].any(axis=2)).sum())
                # A few stray pixels (the official samples have 3-225) are harmless: it is the
                # whole background left under zero alpha that tells of a careless export.
                if n > 0.01 * max(int(clear.sum()), 1):
                    problems.append(f"{n} fully transparent pixels carry colour (THA3 expects "
                                    "(0,0,0,0) there; thacam zeroes them when loading)")
        except CharacterError:  # it loaded a moment ago; a file changing under us is not ours
            pass
    cut = [s for s in touching_edges(character.rgba[..., 3]) if s != "bottom"]
    if cut:
        problems.append(f"the character touches the {' and '.join(cut)} edge of the frame "
                        "(cut off; THA3 animates a whole head and shoulders)")
    problems += _head_problems(character, landmarker)
    return problems


def _head_problems(character: Character, landmarker: Path | None) -> list[str]:
    from .weights import DEFAULT_WEIGHTS_DIR
    task = Path(landmarker) if landmarker else DEFAULT_WEIGHTS_DIR / "face_landmarker.task"
    if not task.is_file():
        log.debug("no %s: the head position check is skipped", task)
        return []
    rgba = character.rgba.astype(np.float32) / 255.0
    alpha = rgba[..., 3]
    try:
        finder = FaceFinder(task)
    except ImportError as exc:  # mediapipe missing: the check is a courtesy, not a requirement
        log.debug("head position check skipped (%s)", exc)
        return []
    with finder:
        faces = finder.find(on_white(rgba[..., :3] * alpha[..., None], alpha))
    # The best face near the top half; the detector also fires weakly on chests.
    faces = [f for f in faces if f.cy < SIZE * 0.6]
    face = faces[0] if faces else None
    where = (f"samples: centre x {FACE_CX_RANGE[0]:.0f}-{FACE_CX_RANGE[1]:.0f}, y "
             f"{FACE_CY_RANGE[0]:.0f}-{FACE_CY_RANGE[1]:.0f}, width "
             f"{FACE_W_RANGE[0]:.0f}-{FACE_W_RANGE[1]:.0f} px")
    if face is not None:
        bad = face_problems(face, CHECK_SLACK_PX, CHECK_SLACK)
        if bad:
            return [f"the head is not where THA3 expects it: {'; '.join(bad)} ({where})"]
        return []
    # No face found: judge the silhouette's head estimate, loosely (it is a rough guess).
    guess = silhouette_face(alpha)
    bad = face_problems(guess, 2 * CHECK_SLACK_PX, 2 * CHECK_SLACK)
    if bad:
        return [f"no face found, and the head (judged by the silhouette) is not where THA3 "
                f"expects it: {'; '.join(bad)} ({where})"]
    return []


def character_advice(character: Character, problems: list[str]) -> str:
    """The message shown when a character does not conform: what is wrong and the fix."""
    import shlex
    name = str(character.path) if character.path else "the character"
    lines = [f"{name} may not animate well:"]
    lines += [f"  - {p}" for p in problems]
    if character.path:
        out = Path(character.path).with_name(Path(character.path).stem + "_prepared.png")
        lines.append(f"  fix: thacam prepare {shlex.quote(str(character.path))} --out "
                     f"{shlex.quote(str(out))}")
    return "\n".join(lines)
