"""Sound as a face source: the microphone source fed through its own callback with recorded
speech (no microphone needed), recordings read with PyAV, `thacam track --audio`, mic-only mode
in the live pipeline, the error when no input device exists. CI budget: ~5 s, no models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from thacam.cli import main
from thacam.errors import AudioUnavailable
from thacam.lipsync import SAMPLE_RATE, VOWELS, LipSyncSettings, templates_from
from thacam.sources import SourceContext, create_source
from thacam.sources import audio as audio_mod
from thacam.sources.audio import MicFaces, read_audio
from voice_fixtures import lag_ms, read_wav, sentence, voices  # noqa: F401


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
