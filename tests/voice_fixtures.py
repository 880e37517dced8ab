"""Speech synthesised at test time: espeak-ng's Japanese voice saying the five vowels.

Voices: ``base`` (espeak-ng's default Japanese voice), ``high`` (pitch 90) and ``female`` (the
f3 variant). Each vowel is "ああああ" etc. (a long held vowel, ~0.6 s). No microphone anywhere:
the tests feed these samples to the same code the microphone's callback runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from thacam.lipsync import SAMPLE_RATE, VOWELS, resample

KANA = {"a": "ああああ", "i": "いいいい", "u": "うううう", "e": "ええええ", "o": "おおおお"}
VOICES = {"base": ["-v", "ja"], "high": ["-v", "ja", "-p", "90"], "female": ["-v", "ja+f3"]}


def need_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        msg = "espeak-ng not found (Debian/Ubuntu: apt install espeak-ng; scripts/setup --test)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit mono WAV -> float32 at lipsync.SAMPLE_RATE."""
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0
        return resample(x, w.getframerate())


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


@pytest.fixture(scope="session")
def voices(tmp_path_factory) -> dict[tuple[str, str], np.ndarray]:
    """{(voice, vowel): samples at SAMPLE_RATE} for every voice and vowel."""
    exe = need_espeak()
    d = tmp_path_factory.mktemp("voices")
    out = {}
    for voice, args in VOICES.items():
        for v in VOWELS:
            path = d / f"{voice}_{v}.wav"
            subprocess.run([exe, *args, "-w", str(path), KANA[v]], check=True)
            out[voice, v] = read_wav(path)
    return out


@pytest.fixture(scope="session")
def sentence(voices, tmp_path_factory) -> tuple[Path, list[tuple[float, float, str]]]:
    """A WAV of 0.5 s silence, then each base vowel followed by 0.7 s of silence; and the
    (start_ms, end_ms, vowel) of each vowel's sound."""
    gap = np.zeros(int(0.7 * SAMPLE_RATE), np.float32)
    parts, spans, t = [np.zeros(SAMPLE_RATE // 2, np.float32)], [], 500.0
    for v in VOWELS:
        x = voices["base", v]
        loud = np.flatnonzero(np.abs(x) > 0.01)
        spans.append((t + loud[0] * 1000.0 / SAMPLE_RATE, t + loud[-1] * 1000.0 / SAMPLE_RATE, v))
        parts += [x, gap]
        t += (x.size + gap.size) * 1000.0 / SAMPLE_RATE
    path = write_wav(tmp_path_factory.mktemp("sentence") / "voice.wav", np.concatenate(parts))
    return path, spans


def lag_ms(heard: np.ndarray, said: np.ndarray) -> float:
    """How late ``said``'s first loud 0.25 s shows up in ``heard`` (both at SAMPLE_RATE)."""
    start = int(np.flatnonzero(np.abs(said) > 0.05)[0])
    snippet = said[start:start + SAMPLE_RATE // 4]
    corr = np.correlate(heard[:start + SAMPLE_RATE], snippet, "valid")
    return (int(np.argmax(corr)) - start) * 1000.0 / SAMPLE_RATE
