"""Lip sync figures: vowel confusion tables, open/shut accuracy and sound-to-pose latency.

    .venv/bin/python scripts/benchmarks/lipsync.py

Speech is espeak-ng's Japanese voice (needs the espeak-ng program), synthesised here: five held
vowels in three voices (default, pitch 90, the female f3 variant), each vowel heard alone (a
fresh analyser per vowel) and as mixed speech (the five vowels four times over in a shuffled
order, 0.2 s apart, through one analyser, as a microphone hears a speaker: the speaker
normalisation, lipsync.vowel_adapt_s, has voice to adapt to). Latency is measured on the
live path: the microphone's callback (MicFaces.feed: resample 48 kHz -> 16 kHz, envelope, MFCC,
templates) timed per 20 ms block, plus the block itself (PortAudio hands a block over only once it
is full), plus the envelope's delay from a sound's onset to the mouth half open.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from thacam.lipsync import (SAMPLE_RATE, VOWELS, LipSyncSettings, analyse,  # noqa: E402
                            calibrate, mixed_confusion, resample)
from thacam.sources.audio import MicFaces  # noqa: E402

KANA = {"a": "ああああ", "i": "いいいい", "u": "うううう", "e": "ええええ", "o": "おおおお"}
VOICES = {"default": ["-v", "ja"], "high": ["-v", "ja", "-p", "90"], "female": ["-v", "ja+f3"]}


def speak(args: list[str], text: str, folder: Path) -> np.ndarray:
    path = folder / "v.wav"
    subprocess.run(["espeak-ng", *args, "-w", str(path), text], check=True)
    with wave.open(str(path)) as w:
        return resample(np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0,
                        w.getframerate())


def confusion(samples: dict[str, np.ndarray], settings: LipSyncSettings) -> np.ndarray:
    table = np.zeros((5, 5), int)
    for i, v in enumerate(VOWELS):
        for s in analyse(samples[v], settings):
            if s.voiced:
                table[i, int(np.argmax(s.vowels))] += 1
    return table


def mixed(voice: dict[str, np.ndarray], settings: LipSyncSettings, rounds: int = 4,
          seed: int = 0) -> np.ndarray:
    """The confusion table over mixed speech: every voiced block inside a vowel is scored."""
    return mixed_confusion(voice, settings, rounds, seed)


def show(title: str, table: np.ndarray) -> None:
    print(f"\n{title}: {np.trace(table) / table.sum():.0%} of voiced 20 ms blocks right")
    print("said\\heard " + " ".join(f"{v:>4s}" for v in VOWELS))
    for v, row in zip(VOWELS, table):
        print(f"{v:>10s} " + " ".join(f"{n:4d}" for n in row))


def open_shut(voice: dict[str, np.ndarray]) -> None:
    gap = np.zeros(int(0.7 * SAMPLE_RATE), np.float32)
    parts, spans, t = [np.zeros(SAMPLE_RATE // 2, np.float32)], [], 500.0
    for v in VOWELS:
        x = voice[v]
        loud = np.flatnonzero(np.abs(x) > 0.01)
        spans.append((t + loud[0] * 1000 / SAMPLE_RATE, t + loud[-1] * 1000 / SAMPLE_RATE))
        parts += [x, gap]
        t += (x.size + gap.size) * 1000 / SAMPLE_RATE
    track = list(analyse(np.concatenate(parts)))
    # Blocks inside a vowel (past a 60 ms attack) should be open (> 0.3), blocks in silence
    # (past a 500 ms release) shut (< 0.05); the transitions are not scored.
    voiced = [s.open > 0.3 for s in track if any(a + 60 <= s.t_ms <= b for a, b in spans)]
    silent = [s.open < 0.05 for s in track
              if all(not (a <= s.t_ms <= b + 500) for a, b in spans)]
    print(f"\nopen while voiced: {np.mean(voiced):.1%} of {len(voiced)} blocks; shut in silence: "
          f"{np.mean(silent):.1%} of {len(silent)} blocks; overall "
          f"{(sum(voiced) + sum(silent)) / (len(voiced) + len(silent)):.1%}")


def latency() -> None:
    settings = LipSyncSettings()
    mic = MicFaces(settings=settings)
    rate = 48000
    block = int(rate * settings.block_ms / 1000)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, rate * 10).astype(np.float32)
    times = []
    for k in range(0, noise.size, block):
        t0 = time.perf_counter()
        mic.feed(noise[k:k + block], rate)
        times.append((time.perf_counter() - t0) * 1000)
    times = np.array(times[5:])
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    x = np.concatenate([np.zeros(SAMPLE_RATE // 2), tone]).astype(np.float32)
    track = list(analyse(x, settings))
    first = next(s.t_ms for s in track if s.voiced) - 500.0
    half = next(s.t_ms for s in track if s.open >= 0.5) - 500.0
    print(f"\nlatency (block {settings.block_ms:g} ms, attack {settings.attack_ms:g} ms):")
    print(f"  analysis per block (callback: resample + envelope + MFCC + templates): mean "
          f"{times.mean():.2f} ms, p95 {np.percentile(times, 95):.2f} ms, max {times.max():.2f} ms")
    print(f"  sound onset -> first voiced block: {first:.0f} ms after the onset (the block "
          f"holding it ends then)")
    print(f"  block + analysis (the sound -> the newest Speech the render reads): "
          f"{settings.block_ms + np.percentile(times, 95):.1f} ms at p95, "
          f"{settings.block_ms + times.max():.1f} ms at worst")
    print(f"  onset -> mouth half open (envelope attack included): {half:.0f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        voices = {name: {v: speak(args, KANA[v], Path(d)) for v in VOWELS}
                  for name, args in VOICES.items()}
    for name, voice in voices.items():
        show(f"{name} voice, built-in templates", confusion(voice, LipSyncSettings()))
    for name, voice in voices.items():
        show(f"{name} voice, mixed speech, built-in templates", mixed(voice, LipSyncSettings()))
    print("\nmixed speech, built-in templates, without speaker normalisation (vowel_adapt_s = 0) "
          "-> with it:")
    for name, voice in voices.items():
        off, on = (mixed(voice, LipSyncSettings(vowel_adapt_s=a)) for a in (0.0, 2.0))
        print(f"  {name:>8s}: {np.trace(off) / off.sum():.0%} -> {np.trace(on) / on.sum():.0%}")
    base = calibrate(voices["default"], LipSyncSettings())
    for name in ("default", "high", "female"):
        show(f"{name} voice, templates calibrated on the default voice",
             confusion(voices[name], base))
    show("female voice, calibrated on itself",
         confusion(voices["female"], calibrate(voices["female"], LipSyncSettings())))
    for name in ("default", "female"):
        show(f"{name} voice, mixed speech, templates calibrated on the default voice",
             mixed(voices[name], base))
    open_shut(voices["default"])
    latency()


if __name__ == "__main__":
    main()
