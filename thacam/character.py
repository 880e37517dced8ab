"""Character images: load, check, and convert to what THA3 expects.

THA3 needs a 512x512 RGBA image whose non-character pixels are (0,0,0,0), upright, with the head
roughly inside the 128x128 box centred in the top half. Loading enforces the hard rules (size,
alpha) with a one-line error naming ``thacam prepare``, the command that fixes an image.

Must not import torch.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import CharacterError

__all__ = ["Character", "load_character", "srgb_to_linear", "linear_to_srgb", "to_model_input",
           "SIZE", "prepare_hint"]

log = logging.getLogger(__name__)

SIZE = 512
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


def _open(path: Path) -> Image.Image:
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
    img = _open(path)
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
