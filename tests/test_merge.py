"""Several face sources at once (thacam.sources.merge): two real UDP sources (iFacialMocap and
VMC) fed packets built from MediaPipe's faces of a real clip, and the real webcam path (a clip
played as the camera, tracked by MediaPipe) whose face goes away; the command line's errors.

Timing figures (takeover after the preferred source's last packet) are printed with -s.
CI budget: ~20 s on 2 cores (three real-time runs of 2-4 s, two of them with MediaPipe).
"""

from __future__ import annotations

import bisect
import dataclasses
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from thacam.capture import CameraSettings, now_ms
from thacam.cli import main
from thacam.errors import SourceError, UserError
from thacam.sources import FaceSource, SourceContext
from thacam.sources.ifacialmocap import IFacialMocapFaces
from thacam.sources.merge import MergedFaces, MergeSettings, parse_channels
from thacam.sources.vmc import VmcFaces
from thacam.sources.webcam import WebcamFaces
from thacam.tracking import BLENDSHAPE_NAMES, FaceObservation

from network_fixtures import CLIP, Sender, clip_faces, free_port  # noqa: F401
from test_ifacialmocap import packet as phone_packet
from test_vmc import packet as vmc_packet

# How a second tracker beside the monitor reads the same head: turned, chin up, tilted.
SIDE = (12.0, 5.0, -3.0)
STALE_S = MergeSettings().stale_s


def seen_from_side(obs: FaceObservation) -> FaceObservation:
    return dataclasses.replace(obs, yaw=obs.yaw + SIDE[0], pitch=obs.pitch + SIDE[1],
                               roll=obs.roll + SIDE[2])


class Streams:
    """A phone (iFacialMocap) and a desktop tracker (VMC, seen from the side) streaming the
    clip's faces at 60 Hz, face i to both at once; the phone can be put to sleep."""

    def __init__(self, faces, phone_port: int, vmc_port: int | None, phone_packets=None):
        self.phone_packets = phone_packets or [phone_packet(o) for o in faces]
        self.vmc_packets = [vmc_packet(seen_from_side(o)) for o in faces]
        self.phone, self.vmc = Sender(phone_port), vmc_port and Sender(vmc_port)
        self.phone_on = threading.Event()
        self.phone_on.set()
        self.sent: list[tuple[float, int]] = []          # (now_ms, face index)
        self.phone_sent: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.done.is_set():
            k = i % len(self.vmc_packets)
            self.sent.append((now_ms(), k))
            if self.phone_on.is_set():
                self.phone_sent.append(self.phone.send(self.phone_packets[k % len(self.phone_packets)]))
            if self.vmc:
                self.vmc.send(self.vmc_packets[k])
            i += 1
            time.sleep(1 / 60)

    def face_at(self, t_ms: float) -> int:
        """The face sent last at or before ``t_ms``."""
        k = bisect.bisect_right([t for t, _ in self.sent], t_ms)
        return self.sent[max(k - 1, 0)][1]

    def __enter__(self) -> "Streams":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(2)
        self.phone.close()
        if self.vmc:
            self.vmc.close()


def read(merged: MergedFaces, seconds: float, rows: list) -> None:
    """Merged samples for ``seconds``: (now_ms, which source drives each part, sample)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sample = merged.next(timeout=0.05)
        if sample is not None:
            rows.append((now_ms(), merged.drivers, sample))


def first_after(rows, t_ms: float, pred):
    return next((r for r in rows if r[0] >= t_ms and pred(r)), None)


# ------------------------------------------------------------------------ failover over UDP

@pytest.mark.parametrize("align", [True, False])
def test_the_phone_drives_the_other_takes_over_when_it_sleeps_and_it_takes_back(clip_faces,
                                                                                 align):
    phone = IFacialMocapFaces(0, host="127.0.0.1")
    desk = VmcFaces(0, host="127.0.0.1")
    merged = MergedFaces([phone, desk], ["ifacialmocap", "vmc"], MergeSettings(align=align))
    rows: list = []
    with merged, Streams(clip_faces, phone.port, desk.port) as streams:
        read(merged, 1.0, rows)
        streams.phone_on.clear()                # the phone sleeps
        t_sleep = now_ms()
        read(merged, STALE_S + 0.5, rows)
        streams.phone_on.set()                  # and wakes
        t_wake = now_ms()
        read(merged, 0.5, rows)
        shown = merged.status_rows()      # what the panel lists: each source, who drives
    assert [(r["connected"], r["face"], r["drives"]) for r in shown] == [
        (True, True, ["head", "eyes", "brows", "mouth"]), (True, True, [])]
    faces = [r for r in rows if r[2].obs is not None]
    assert len(faces) > 100 and len(faces) == len(rows)     # never a moment without a face
    before = [r for r in faces if 200 < r[0] - rows[0][0] and r[0] < t_sleep]
    assert before and all(r[1]["head"] == 0 for r in before)
    last_phone = max(t for t in streams.phone_sent if t < t_sleep + 50)
    took = first_after(rows, t_sleep, lambda r: r[1]["head"] == 1)
    assert took is not None, "the desktop tracker never took over"
    takeover = took[0] - last_phone
    # From the phone's last packet: the stale window plus at most a few packets of the other.
    assert STALE_S * 1000 <= takeover <= STALE_S * 1000 + 80, takeover
    assert all(r[1] == {c: 1 for c in r[1]} for r in faces if took[0] <= r[0] < t_wake)
    first_back = min(t for t in streams.phone_sent if t >= t_wake)
    back = first_after(rows, t_wake, lambda r: r[1]["head"] == 0)
    assert back is not None and back[0] - first_back < 30, "the phone did not take back"
    assert all(r[1]["head"] == 0 for r in faces if r[0] >= back[0])
    # The head on handover: the desk's angles against the face the clip had then.
    desk_rows = [r for r in faces if r[1]["head"] == 1]
    residual = np.array([[r[2].obs.yaw - clip_faces[streams.face_at(r[2].obs.t_ms)].yaw,
                          r[2].obs.pitch - clip_faces[streams.face_at(r[2].obs.t_ms)].pitch,
                          r[2].obs.roll - clip_faces[streams.face_at(r[2].obs.t_ms)].roll]
                         for r in desk_rows])
    print(f"\nalign={align}: takeover {takeover:.0f} ms after the phone's last packet "
          f"(stale window {STALE_S * 1000:.0f} ms), take-back {back[0] - first_back:.1f} ms "
          f"after its first; desk angles - clip's while it drove: median "
          f"{np.round(np.median(residual, axis=0), 2)} deg")
    if align:
        # learnt while both saw the face: the head goes on from where the phone left it
        assert np.abs(np.median(residual, axis=0)).max() < 0.5
        assert merged.alignment[1].offset == pytest.approx(SIDE, abs=0.5)
    else:
        assert np.median(residual, axis=0) == pytest.approx(SIDE, abs=0.5)


# ----------------------------------------------------------- the real webcam path, face lost

class Recorded(FaceSource):
    """A real source, passed through, each sample it hands out noted with the time."""

    def __init__(self, inner: FaceSource):
        self.inner = inner
        self.description = inner.description
        self.samples: list[tuple[float, object]] = []

    def open(self):
        self.inner.open()
        return self

    def close(self):
        self.inner.close()

    def wake(self):
        self.inner.wake()

    def next(self, timeout):
        sample = self.inner.next(timeout)
        if sample is not None:
            self.samples.append((now_ms(), sample))
        return sample

    @property
    def connected(self):
        return self.inner.connected


def _clip_with_a_gap(faces_dir: Path, path: Path, face: int, gap: int) -> Path:
    """``face`` frames of the clip, ``gap`` black ones, the next ``face`` frames."""
    cap = cv2.VideoCapture(str(faces_dir / f"{CLIP}.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = [cap.read()[1] for _ in range(2 * face)]
    cap.release()
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for bgr in frames[:face] + [np.zeros_like(frames[0])] * gap + frames[face:]:
        out.write(bgr)
    out.release()
    return path


def _webcam(path: Path, weights: Path) -> Recorded:
    ctx = SourceContext(CameraSettings(source=str(path), mirror=False), weights)
    return Recorded(WebcamFaces.from_spec(None, ctx))


def _wait_for_face(merged: MergedFaces, rows: list, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not any(r[1]["head"] == 0 for r in rows):
        assert time.monotonic() < end, "the webcam never saw the face"
        read(merged, 0.1, rows)


def test_the_webcam_losing_the_face_hands_over_at_once_and_the_mesh_goes_with_it(
        clip_faces, faces_dir, landmarker_model, tmp_path):
    clip = _clip_with_a_gap(faces_dir, tmp_path / "gap.mp4", 30, 20)      # 1.2 s, 0.8 s, 1.2 s
    cam = _webcam(clip, landmarker_model.parent)
    phone = IFacialMocapFaces(0, host="127.0.0.1")
    merged = MergedFaces([cam, phone], ["webcam", "ifacialmocap"])
    rows: list = []
    with merged, Streams(clip_faces, phone.port, None):
        _wait_for_face(merged, rows)
        read(merged, 3.5, rows)
    lost = next(t for t, s in cam.samples if t >= rows[0][0] and s.obs is None)
    took = first_after(rows, lost, lambda r: r[1]["head"] == 1)
    back_t = next(t for t, s in cam.samples if t > took[0] and s.obs is not None)
    back = first_after(rows, back_t, lambda r: r[1]["head"] == 0)
    print(f"\nwebcam lost the face: the phone drove {took[0] - lost:.1f} ms later; the webcam "
          f"took back {back[0] - back_t:.1f} ms after its first face")
    # No stale window to wait out: the webcam's own sample says the face is gone.
    assert took[0] - lost < 50 and back[0] - back_t < 50
    faces = [r for r in rows if r[2].obs is not None]
    assert len(faces) == len(rows)
    for _, drivers, sample in faces:
        mesh = sample.obs.landmarks.shape[0]
        # the webcam's mesh rides with the webcam's face, never with the phone's
        assert mesh == (478 if drivers["head"] == 0 else 0), (drivers, mesh)
        assert (sample.frame is not None) == (drivers["head"] == 0)


def test_parts_of_the_face_from_different_sources_and_each_part_falls_back(
        clip_faces, faces_dir, landmarker_model, tmp_path):
    """Head, eyes and brows from the webcam, the mouth from the phone (which opens it wide and
    turns 30 deg, which nothing but the mouth may show); the phone sleeps, the webcam's mouth
    and its mesh come back."""
    cap = cv2.VideoCapture(str(faces_dir / f"{CLIP}.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS)
    clip = tmp_path / "c.mp4"
    ok, bgr = cap.read()
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), fps, bgr.shape[1::-1])
    for _ in range(100):
        out.write(bgr)
        ok, bgr = cap.read()
    out.release()
    cap.release()
    cam = _webcam(clip, landmarker_model.parent)
    phone = IFacialMocapFaces(0, host="127.0.0.1")
    specs = ["webcam", f"ifacialmocap:{phone.port}"]
    merged = MergedFaces([cam, phone], specs, channels=parse_channels("mouth=ifacialmocap",
                                                                      specs))
    wide = b"jawOpen&90|eyeBlink_L&0|eyeBlink_R&0|=head#0,30,0,0,0,0|"
    rows: list = []
    with merged, Streams(clip_faces, phone.port, None, [wide]) as streams:
        _wait_for_face(merged, rows)
        read(merged, 1.0, rows)
        streams.phone_on.clear()
        t_sleep = now_ms()
        read(merged, STALE_S + 0.6, rows)
    mixed = [r for r in rows if r[0] < t_sleep and r[1] == {"head": 0, "eyes": 0, "brows": 0,
                                                            "mouth": 1}]
    alone = [r for r in rows if r[1] == {c: 0 for c in r[1]} and r[0] > t_sleep + STALE_S * 1000]
    assert len(mixed) > 20 and len(alone) > 5
    for _, _, s in mixed:
        bs = s.obs.blendshapes
        assert bs["jawOpen"] == pytest.approx(0.9) and abs(s.obs.yaw) < 15   # mouth only
        assert s.obs.landmarks.shape[0] == 0        # the webcam's lip gap must not open it
    # eyes and brows: exactly what the webcam read at some moment (the phone sends zeros there)
    upper = [i for i, n in enumerate(BLENDSHAPE_NAMES) if n.startswith(("eye", "brow"))]
    webcam_read = {s.obs.blendshapes.array[upper].tobytes() for _, s in cam.samples if s.obs}
    for _, _, s in mixed:
        assert s.obs.blendshapes.array[upper].tobytes() in webcam_read
        assert s.obs.blendshapes.array[upper].sum() > 0.05
    # the phone asleep: the webcam's own mouth, and its mesh, come back
    webcam_read = {s.obs.blendshapes.array.tobytes() for _, s in cam.samples if s.obs}
    for _, _, s in alone:
        assert s.obs.blendshapes.array.tobytes() in webcam_read
        assert s.obs.landmarks.shape[0] == 478


# ------------------------------------------------------------------------- the command line

def test_channels_name_parts_and_sources_that_exist():
    specs = ["webcam", "ifacialmocap", "vmc:1", "vmc:2"]
    assert parse_channels("head=webcam, mouth=ifacialmocap,eyes=vmc:2", specs) == \
        {"head": 0, "mouth": 1, "eyes": 3}
    for text, words in (("nose=webcam", "nose=webcam' is not PART=NAME"),
                        ("mouth=openseeface", "openseeface is not one of the --source values"),
                        ("mouth=vmc", "vmc is given twice as --source: name it as NAME:ARG"),
                        ("head=webcam,head=vmc:1", "head is given twice")):
        with pytest.raises(UserError, match=words):
            parse_channels(text, specs)


@pytest.mark.parametrize("sources, words", [
    (["ifacialmocap", "kinect"], "--source kinect: not a face source; choose one of webcam"),
    (["vmc:40123", "ifacialmocap:40123"],
     "--source vmc:40123 and --source ifacialmocap:40123 both listen on UDP port 40123"),
    (["ifacialmocap", "webcam:/no/such.mp4"], "/no/such.mp4: no such file or camera"),
    (["ifacialmocap", "ifacialmocap"], "--source ifacialmocap is given twice"),
    (["ifacialmocap", "mic"], "add the microphone with --mic instead"),
    (["ifacialmocap", "vmc", "--source-channels", "mouth=webcam"],
     "webcam is not one of the --source values"),
])
def test_bad_source_lists_are_one_line_and_exit_2_before_anything_loads(sources, words, tmp_path,
                                                                        samples_dir, capsys):
    (tmp_path / "p.toml").write_text("")
    argv = ["--character", str(samples_dir / "crypko_00.png"), "--profile",
            str(tmp_path / "p.toml")]
    for s in sources:
        argv += [s] if s.startswith("--") or "=" in s else ["--source", s]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("thacam: error: ") and words in err[0], err


def test_track_records_from_two_sources_and_a_port_in_use_is_one_line(clip_faces, tmp_path,
                                                                      capsys):
    phone_port, desk_port = free_port(), free_port()
    out = tmp_path / "p.jsonl"
    with Streams(clip_faces, phone_port, desk_port):
        assert main(["track", "--source", f"ifacialmocap:{phone_port}", "--source",
                     f"vmc:{desk_port}", "--frames", "30", "--out", str(out),
                     "--calibrate-frames", "0"]) == 0
    rows = out.read_text().splitlines()
    assert len(rows) == 30 and all('"face": true' in r for r in rows)
    capsys.readouterr()
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("0.0.0.0", desk_port))
    try:
        assert main(["track", "--source", f"ifacialmocap:{phone_port}", "--source",
                     f"vmc:{desk_port}", "--frames", "3", "--out", str(out)]) == 2
    finally:
        busy.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot listen on UDP port {desk_port}" in err[0], err
    # the source that did open was closed again: its port is free
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("0.0.0.0", phone_port))


@pytest.mark.parametrize("sources", [["vmc:{busy}"], ["ifacialmocap:{free}", "vmc:{busy}"]])
def test_a_port_in_use_fails_the_live_run_before_the_model_loads(sources, samples_dir, tmp_path,
                                                                 capsys, monkeypatch):
    import thacam.render.engine as engine

    def loaded(*args, **kw):
        raise AssertionError("the model loaded before the port was checked")
    monkeypatch.setattr(engine.Renderer, "__init__", loaded)
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("0.0.0.0", 0))
    port = busy.getsockname()[1]
    argv = ["--character", str(samples_dir / "crypko_00.png"), "--profile",
            str(tmp_path / "p.toml")]
    for spec in sources:
        argv += ["--source", spec.format(busy=port, free=free_port())]
    (tmp_path / "p.toml").write_text("")
    try:
        assert main(argv) == 2
    finally:
        busy.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot listen on UDP port {port}" in err[0], err


def test_a_source_that_cannot_open_closes_the_ones_that_did():
    first = IFacialMocapFaces(0, host="127.0.0.1")
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    second = VmcFaces(busy.getsockname()[1], host="127.0.0.1")
    try:
        with pytest.raises(SourceError, match="cannot listen on UDP port"):
            MergedFaces([first, second]).open()
    finally:
        busy.close()
    assert first._sock is None and first._thread is None


def test_the_profile_reaches_the_merged_source_and_the_mic_wraps_it(monkeypatch):
    from thacam.app import live_source
    from thacam.profile import Profile
    from thacam.settings.codec import set_raw
    from thacam.sources import audio as audio_mod
    from thacam.sources.audio import MicFaces
    monkeypatch.setattr(audio_mod, "input_devices", lambda: [(0, "Test Mic", 48000.0)])
    monkeypatch.setattr(audio_mod, "_sounddevice",
                        lambda: type("sd", (), {"default": type("d", (), {"device": (0, 0)})}))
    profile = set_raw(Profile(), "sources.stale_s", 0.2, source="test")
    profile = set_raw(profile, "sources.channels", "mouth=vmc", source="test")
    heard = live_source(["ifacialmocap:0", "vmc:0"], profile, mic="")
    assert isinstance(heard, MicFaces) and isinstance(heard.inner, MergedFaces)
    merged = heard.inner
    assert merged.settings.stale_s == 0.2 and merged.order["mouth"] == [1, 0]
    assert [r["description"] for r in heard.status_rows()] == [
        "ifacialmocap on UDP port 0", "vmc on UDP port 0"]
    assert heard.description.endswith("+ microphone Test Mic")
