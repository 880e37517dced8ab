"""Loading official THA3 checkpoints: safe unpickling, key clean-up, strict key/shape checks.

The official .pt files are plain state dicts whose keys already match thacam's module names, so
there is no remapping beyond stripping wrapper prefixes (``module.`` from DataParallel,
``_orig_mod.`` from torch.compile). Nothing is ever loaded with ``weights_only=False``.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import IncompatibleCheckpoint, MissingWeights

__all__ = ["load_state_dict_file", "load_official"]

log = logging.getLogger(__name__)

_PREFIXES = ("module.", "_orig_mod.")
_SHOW = 5  # how many offending keys an error names


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``weights_only=True`` and return a clean {key: tensor} dict.

    Raises:
        MissingWeights: the file does not exist.
        IncompatibleCheckpoint: truncated/corrupt, needs unsafe unpickling, or is not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeights(path, "file not found")
    # Every checkpoint torch has written since 1.6 (the official THA3 files included) is a zip
    # archive (a truncated one still starts like one); anything else is a damaged download or another kind of file, and torch's legacy
    # loader would misreport it as needing unsafe unpickling.
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise IncompatibleCheckpoint(path, "not a PyTorch checkpoint (not a zip archive: "
                                     "damaged, or another kind of file)",
                                     "delete it and run `thacam fetch`")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise IncompatibleCheckpoint(
                path, "it contains Python objects that only unsafe unpickling "
                "(weights_only=False) would load, and thacam refuses to execute pickled code",
                "use the official THA3 files (`thacam fetch`)") from None
        raise IncompatibleCheckpoint(path, f"corrupt checkpoint ({exc})",
                                     "delete it and run `thacam fetch`") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        # torch's own text is a paragraph about its internals; the kind of failure is enough.
        raise IncompatibleCheckpoint(path, f"truncated or corrupt checkpoint "
                                     f"({type(exc).__name__})",
                                     "delete it and run `thacam fetch`") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise IncompatibleCheckpoint(path, "not a state dict of tensors",
                                     "use the official THA3 files (`thacam fetch`)")
    clean = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        clean[key] = value
    return clean


def _names(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def load_official(path: Path, module: nn.Module, network: str = "") -> nn.Module:
    """Load an official checkpoint into ``module`` with strict key and shape checks.

    Raises:
        MissingWeights, IncompatibleCheckpoint: with the file, the network and the offending keys.
    """
    path = Path(path)
    state = load_state_dict_file(path)
    expected = module.state_dict()
    what = f"not a THA3 {network} checkpoint" if network else "checkpoint does not fit"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_names(unexpected)}")
        raise IncompatibleCheckpoint(path, f"{what}: {'; '.join(parts)}",
                                     "check that the file sits in the right variant folder, or "
                                     "run `thacam fetch`")
    wrong = [f"{k} is {tuple(state[k].shape)}, expected {tuple(v.shape)}"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise IncompatibleCheckpoint(path, f"{what}: wrong shapes: {_names(wrong)}",
                                     "check that the file sits in the right variant folder "
                                     "(standard vs separable), or run `thacam fetch`")
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        # A NaN weight renders an all-transparent or all-zero frame without any other error.
        raise IncompatibleCheckpoint(path, f"{what}: NaN or infinite values in "
                                     f"{_names(broken)}", "delete it and run `thacam fetch`")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    log.debug("loaded %s from %s", network or type(module).__name__, path)
    return module
