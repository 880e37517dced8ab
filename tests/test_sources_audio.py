"""Sound as a face source: the microphone source fed through its own callback with recorded
speech (no microphone needed), recordings read with PyAV, `thacam track --audio`, mic-only mode
in the live pipeline, the error when no input device exists. CI budget: ~5 s, no models."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from thacam.cli import main
from thacam.errors import AudioUnavailable
from thacam.capture import now_ms
from thacam.lipsync import MOUTH_PARAMS, SAMPLE_RATE, VOWELS, LipSyncSettings, templates_from
from thacam.output import FrameSink
from thacam.pose import Pose
from thacam.sources import FaceSample, FaceSource, SourceContext, create_source
from thacam.sources import audio as audio_mod
from thacam.sources.audio import MicFaces, read_audio
from voice_fixtures import lag_ms, read_wav, sentence, voices, write_wav  # noqa: F401


def test_mic_callback_turns_recorded_speech_into_speech(sentence):
    path, spans = sentence
    x = read_wav(path)
    mic = MicFaces()
    heard = []
    # PortAudio hands 20 ms blocks at 48 kHz; the source resamples and analyses them.
    at48 = np.interp(np.arange(x.size * 3) / 3.0, np.arange(x.size), x).astype(np.float32)
    for k in range(0, at48.size, 960):
        heard += mic.feed(at48[k:k + 960], 48000.0)
    assert len(heard) == pytest.approx(x.size / (0.02 * SAMPLE_RATE), abs=2)
    assert mic.speech() is heard[-1]
    sample = mic.next(0.0)           # mic-only: no face, the newest sound
    assert sample.obs is None and sample.speech is heard[-1]
    assert max(s.open for s in heard) > 0.9 and heard[-1].open < 0.05


def test_read_audio_of_a_wav_and_a_video(tmp_path, sentence):
    path, _ = sentence
    x = read_audio(path)
    assert x.size == pytest.approx(read_wav(path).size, abs=SAMPLE_RATE // 100)
    # A video with the same sound (made with ffmpeg): its own audio track is read.
    video = tmp_path / "talk.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=gray:s=64x64:r=30", "-i", str(path), "-shortest", "-c:v",
                    "libx264", "-c:a", "aac", str(video)], check=True)
    y = read_audio(video)
    assert abs(lag_ms(y, x)) < 30.0        # AAC's priming delay at most
    assert audio_mod.has_audio(video) and not audio_mod.has_audio(tmp_path / "none.mp4")
    with pytest.raises(AudioUnavailable, match="no such file"):
        read_audio(tmp_path / "none.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioUnavailable, match="cannot read"):
        read_audio(tmp_path / "junk.wav")


def test_track_audio_alone_drives_the_mouth(tmp_path, sentence):
    path, spans = sentence
    out = tmp_path / "poses.jsonl"
    assert main(["track", "--audio", str(path), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[1]["t_ms"] == pytest.approx(1000 / 30, abs=0.01)
    assert not any(r["face"] for r in rows)
    mouth = ["mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee", "mouth_ooo"]

    def opening(r):
        return sum(r["pose"][m] for m in mouth)
    for a, b, v in spans:
        mid = [r for r in rows if a + 100 <= r["t_ms"] <= b - 50]
        assert min(opening(r) for r in mid) > 0.3
        # a, i and o come through on the built-in templates (see test_lipsync for u and e).
        if v in "aio":
            assert all(max(mouth, key=lambda m: r["pose"][m]) == f"mouth_{v * 3}" for r in mid)
    silent = [r for r in rows if all(not (a - 50 <= r["t_ms"] <= b + 600) for a, b, _ in spans)]
    assert max(opening(r) for r in silent) < 0.05
    # The idle layer runs meanwhile: the head sways without a face.
    assert np.ptp([r["pose"]["head_y"] for r in rows]) > 0.01


def test_track_audio_with_calibrated_profile_tells_all_vowels(tmp_path, sentence, voices):
    from thacam.profile import Profile, save_profile
    path, spans = sentence
    cal = LipSyncSettings().with_templates(
        np.stack([templates_from(voices["base", v]) for v in VOWELS]))
    profile = tmp_path / "me.toml"
    save_profile(Profile(lipsync=cal), profile)
    out = tmp_path / "poses.jsonl"
    assert main(["track", "--audio", str(path), "--profile", str(profile), "--out",
                 str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for a, b, v in spans:
        mid = [r for r in rows if a + 100 <= r["t_ms"] <= b - 50]
        assert all(max(r["pose"], key=lambda m: r["pose"][m] if m.startswith("mouth_") else -1)
                   == f"mouth_{v * 3}" for r in mid), v


def test_no_input_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(audio_mod, "input_devices", lambda: [])
    source = create_source("mic", SourceContext())
    with pytest.raises(AudioUnavailable, match="no microphone found"):
        source.check()
    monkeypatch.setattr(audio_mod, "input_devices", lambda: [(3, "USB Mic", 44100.0)])
    with pytest.raises(AudioUnavailable, match="3: USB Mic"):
        create_source("mic:Blue", SourceContext()).check()
    mic = create_source("mic:usb", SourceContext())
    mic.check()
    assert mic.device_name == "USB Mic"


def test_live_mic_without_a_device_exits_2_with_one_line(tmp_path, samples_dir):
    # The real PortAudio here: a CI machine has no sound card, so no input device at all.
    run = subprocess.run([sys.executable, "thacam.py", "--character",
                          str(samples_dir / "crypko_00.png"), "--mic", "--output",
                          str(tmp_path / "o.mp4"), "--frames", "1"],
                         capture_output=True, text=True, timeout=120)
    try:
        devices = audio_mod.input_devices()
    except AudioUnavailable:
        devices = []
    if devices:
        pytest.skip("this machine has a microphone: the no-device path cannot be shown")
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert "no microphone found" in last or "PortAudio" in last


class MouthRenderer:
    """A stand-in for THA3 where pixels do not matter: brightness = how open the mouth is."""

    description = "mouth-brightness fake"

    def set_character(self, character) -> None:
        pass

    def render_batch(self, poses):
        out = []
        for pose in poses:
            opening = sum(pose[m] for m in ("mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee",
                                            "mouth_ooo"))
            frame = np.zeros((64, 64, 4), np.uint8)
            frame[..., :3] = int(round(255 * min(1.0, opening)))
            frame[..., 3] = 255
            out.append(frame)
        return out

    def render_batch_async(self, poses):
        # Renderer.render_batch_async's shape: frames already on the host (as on a CPU).
        frames = np.stack(self.render_batch(poses))
        return SimpleNamespace(in_flight=False, result=lambda: frames)


def _decode(path):
    """(video brightness per frame, fps, mono sound at SAMPLE_RATE) of a rendered file."""
    import av
    with av.open(str(path)) as c:
        fps = float(c.streams.video[0].average_rate)
        bright = [float(f.to_ndarray(format="gray").mean()) for f in c.decode(video=0)]
    return np.array(bright), fps, read_audio(path)


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_render_keeps_the_sound_in_sync(tmp_path, sentence, samples_dir, monkeypatch, suffix):
    import thacam.cli.offline as cli_offline
    monkeypatch.setattr(cli_offline, "load_renderer", lambda settings: MouthRenderer())
    path, spans = sentence
    poses, out = tmp_path / "p.jsonl", tmp_path / f"o{suffix}"
    assert main(["track", "--audio", str(path), "--out", str(poses)]) == 0
    assert main(["render", "--character", str(samples_dir / "crypko_00.png"), "--poses",
                 str(poses), "--audio", str(path), "--out", str(out)]) == 0
    bright, fps, sound = _decode(out)
    said = read_wav(path)
    assert fps == pytest.approx(30.0, abs=0.01)
    # The sound starts where the input's does (codec priming aside) and lasts as the frames.
    assert abs(lag_ms(sound, said)) < 30.0
    assert sound.size / SAMPLE_RATE == pytest.approx(bright.size / fps, abs=0.05)
    # Pictures and sound agree: the mouth is open in the frames where the decoded sound is loud.
    for a, b, _ in spans:
        loud = [k for k in range(bright.size) if a + 100 <= k * 1000 / fps <= b - 50]
        level = [np.abs(sound[int(k / fps * SAMPLE_RATE):int((k + 1) / fps * SAMPLE_RATE)]).max()
                 for k in loud]
        assert min(level) > 0.05 and min(bright[loud]) > 70
    quiet = [k for k in range(bright.size)
             if all(not (a - 50 <= k * 1000 / fps <= b + 600) for a, b, _ in spans)]
    assert max(bright[quiet]) < 15


def test_render_to_png_frames_warns_that_they_carry_no_sound(tmp_path, sentence, samples_dir,
                                                              monkeypatch, caplog):
    import thacam.cli.offline as cli_offline
    monkeypatch.setattr(cli_offline, "load_renderer", lambda settings: MouthRenderer())
    path, _ = sentence
    poses = tmp_path / "p.jsonl"
    poses.write_text(json.dumps({"t_ms": 0.0, "face": False, "pose": {}}) + "\n")
    assert main(["render", "--character", str(samples_dir / "crypko_00.png"), "--poses",
                 str(poses), "--audio", str(path), "--out", str(tmp_path / "frames")]) == 0
    assert "carry no sound" in caplog.text
    assert main(["render", "--character", str(samples_dir / "crypko_00.png"), "--poses",
                 str(poses), "--audio", str(tmp_path / "none.wav"), "--out",
                 str(tmp_path / "o.mp4")]) == 2
    assert not (tmp_path / "o.mp4").exists()


def test_render_input_video_uses_and_keeps_its_own_sound(tmp_path, faces_dir, samples_dir,
                                                         landmarker_model, voices, monkeypatch):
    # A real face clip given a voice (ffmpeg), tracked by the real MediaPipe.
    import thacam.cli.offline as cli_offline
    monkeypatch.setattr(cli_offline, "load_renderer", lambda settings: MouthRenderer())
    said = np.concatenate([np.zeros(SAMPLE_RATE // 5, np.float32), voices["base", "a"],
                           np.zeros(SAMPLE_RATE, np.float32)])
    wav = write_wav(tmp_path / "a.wav", said)
    clip = tmp_path / "talk.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(faces_dir / "d0.mp4"), "-i",
                    str(wav), "-t", "1.2", "-c:v", "libx264", "-c:a", "aac", str(clip)],
                   check=True)
    out = tmp_path / "o.mp4"
    assert main(["render", "--character", str(samples_dir / "crypko_00.png"), "--weights",
                 str(landmarker_model.parent), "--calibrate-frames", "0", "--input", str(clip),
                 "--out", str(out)]) == 0
    bright, fps, sound = _decode(out)
    assert bright.size == 30 and fps == pytest.approx(25.0, abs=0.01)
    assert abs(lag_ms(sound, said)) < 30.0
    assert sound.size / SAMPLE_RATE == pytest.approx(30 / 25.0, abs=0.05)
    # The voice opens the mouth while it sounds (0.3-0.75 s) and hands it back to the face after.
    voiced = bright[int(0.3 * fps):int(0.75 * fps)]
    assert min(voiced) > 70, bright


class PlayedMic(MicFaces):
    """The real MicFaces with PortAudio replaced by a thread that plays recorded sound into
    the same callback, in real time, 20 ms at a time at 48 kHz."""

    def __init__(self, sound, inner=None, settings=None):
        super().__init__(None, settings, inner)
        self.sound = np.interp(np.arange(sound.size * 3) / 3.0, np.arange(sound.size),
                               sound).astype(np.float32)
        self._rate = 48000.0
        self._stop = None

    def open(self):
        import threading
        self._stop = threading.Event()

        def play():
            t0 = time.monotonic()
            for k in range(0, self.sound.size, 960):
                if self._stop.wait(max(0.0, t0 + k / 48000.0 - time.monotonic())):
                    return
                self._callback(self.sound[k:k + 960, None], 960, None, None)
        self._player = threading.Thread(target=play, daemon=True)
        self._player.start()
        if self.inner is not None:
            self.inner.open()
        return self

    def close(self):
        self._stop.set()
        self._player.join()
        if self.inner is not None:
            self.inner.close()


class Blank:
    def __init__(self):
        self.poses = []

    def render(self, pose):
        self.poses.append((time.monotonic(), pose))
        return np.zeros((8, 8, 4), np.uint8)


class Keep(FrameSink):
    def send(self, rgba, t_capture_ms):
        pass


def _opening(pose):
    return sum(pose[m] for m in MOUTH_PARAMS)


def test_mic_only_live_run_idles_and_lip_syncs(sentence):
    from thacam.animation import Animator
    from thacam.pipeline import LivePipeline, LiveSettings
    from thacam.retarget import Retargeter
    path, spans = sentence
    sound = read_wav(path)[:int(2.6 * SAMPLE_RATE)]          # silence, a, silence, i
    mic, renderer = PlayedMic(sound), Blank()
    pipeline = LivePipeline(mic, Retargeter(), Animator(seed=1), renderer, [Keep()],
                            LiveSettings(fps=50, stats_every_s=0, first_frame_wait_s=0.0),
                            lipsync=LipSyncSettings())
    t0 = time.monotonic()
    stats = pipeline.run(frames=120)
    assert stats.frames == 120 and stats.faces == 0          # no face ever: mic-only
    rel = [((t - t0) * 1000.0, p) for t, p in renderer.poses]
    (a0, a1, _), (i0, _, _) = spans[0], spans[1]
    during = [p for t, p in rel if a0 + 100 <= t <= a1 - 30]
    before = [p for t, p in rel if t <= a0 - 50]
    after = [p for t, p in rel if a1 + 500 <= t <= i0 - 50]
    assert during and before and after
    assert min(_opening(p) for p in during) > 0.3
    assert max(_opening(p) for p in before + after) < 0.05
    assert all(p["mouth_aaa"] == max(p[m] for m in MOUTH_PARAMS) for p in during)
    assert np.ptp([p["head_y"] for _, p in rel]) > 0.001     # the idle sway runs meanwhile


class SmilingFace(FaceSource):
    """A webcam stand-in: a face every 20 ms whose retargeted mouth is a small pout (uuu)."""

    description = "pouting face"

    def __init__(self):
        self.n = 0

    def next(self, timeout):
        time.sleep(0.02)
        self.n += 1
        return FaceSample(now_ms(), "face", self.n - 1)


class PoutRetargeter:
    def update(self, obs):
        pose = Pose()
        pose["mouth_uuu"] = 0.4
        return pose


def test_webcam_and_mic_blend_audio_leads_while_voiced(sentence):
    from thacam.animation import Animator
    from thacam.pipeline import LivePipeline, LiveSettings
    path, spans = sentence
    sound = read_wav(path)[:int(1.6 * SAMPLE_RATE)]
    mic, renderer = PlayedMic(sound, inner=SmilingFace()), Blank()
    pipeline = LivePipeline(mic, PoutRetargeter(), Animator(seed=1), renderer, [Keep()],
                            LiveSettings(fps=50, stats_every_s=0),
                            lipsync=LipSyncSettings())
    t0 = time.monotonic()
    pipeline.run(frames=70)
    a0, a1, _ = spans[0]
    rel = [((t - t0) * 1000.0, p) for t, p in renderer.poses]
    during = [p for t, p in rel if a0 + 100 <= t <= a1 - 30]
    silent = [p for t, p in rel if 200 <= t <= a0 - 50 or t >= a1 + 600]
    assert during and silent
    assert all(p["mouth_aaa"] > 0.5 and p["mouth_uuu"] < 0.1 for p in during)   # audio leads
    assert all(p["mouth_uuu"] > 0.3 for p in silent)                           # the face's pout
    # blend = face: the webcam's mouth whenever a face is seen.
    pipeline.apply_settings(lipsync=LipSyncSettings(blend="face"))
    renderer.poses.clear()
    mic.sound = mic.sound[:int(0.9 * 48000)]
    pipeline.run(frames=40)
    assert all(p["mouth_aaa"] < 0.05 for _, p in renderer.poses[5:])


def test_mic_without_a_camera_goes_on_alone_and_with_one_wraps_it(monkeypatch, tmp_path,
                                                                  faces_dir, landmarker_model):
    from thacam.app import live_source
    from thacam.profile import Profile
    from thacam.settings.codec import set_raw
    monkeypatch.setattr(audio_mod, "input_devices", lambda: [(0, "Test Mic", 48000.0)])
    monkeypatch.setattr(audio_mod, "_sounddevice",
                        lambda: type("sd", (), {"default": type("d", (), {"device": (0, 0)})}))
    gone = set_raw(Profile(), "camera.source", str(tmp_path / "no-camera.mp4"),
                   source="test")
    alone = live_source("webcam", gone, landmarker_model.parent, mic="")
    assert isinstance(alone, MicFaces) and alone.inner is None
    assert alone.description == "microphone Test Mic"
    cam = set_raw(Profile(), "camera.source", str(faces_dir / "d0.mp4"), source="test")
    both = live_source("webcam", cam, landmarker_model.parent, mic="test")
    assert isinstance(both, MicFaces) and both.inner is not None
    assert both.description.endswith("+ microphone Test Mic")
    assert not isinstance(live_source("webcam", cam, landmarker_model.parent), MicFaces)


def test_voice_calibrate_from_recordings_saves_templates_that_fix_the_voice(tmp_path, voices,
                                                                             capsys):
    from thacam.lipsync import heard_vowel
    from thacam.profile import load_profile
    files = [write_wav(tmp_path / f"{v}.wav", voices["female", v]) for v in VOWELS]
    profile = tmp_path / "me.toml"
    profile.write_text("# my profile\n[lipsync]\ngain = 1.5   # louder\n")
    assert main(["voice", "calibrate", "--profile", str(profile), "--vowels",
                 *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "5/5 told apart" in out and "built-in: 3/5" in out
    text = profile.read_text()
    assert "# my profile" in text and "gain = 1.5   # louder" in text      # the user's file kept
    settings = load_profile(profile).lipsync
    assert settings.calibrated and settings.gain == 1.5
    assert [heard_vowel(voices["female", v], settings) for v in VOWELS] == list(VOWELS)
    assert main(["voice", "calibrate", "--vowels", *map(str, files)]) == 2   # where to save?
    silent = write_wav(tmp_path / "quiet.wav", np.zeros(SAMPLE_RATE, np.float32))
    assert main(["voice", "calibrate", "--profile", str(profile), "--vowels",
                 *map(str, files[:4]), str(silent)]) == 2
    assert "no voice heard in the recording of o" in capsys.readouterr().err


def test_voice_devices_lists_inputs_or_says_there_are_none(monkeypatch, capsys):
    monkeypatch.setattr(audio_mod, "input_devices", lambda: [(2, "USB Mic", 44100.0)])
    assert main(["voice", "devices"]) == 0
    assert "2  USB Mic  (44100 Hz)" in capsys.readouterr().out
    monkeypatch.setattr(audio_mod, "input_devices", lambda: [])
    assert main(["voice", "devices"]) == 1
    assert "no microphone found" in capsys.readouterr().out
