"""Lip sync: sound -> how open the mouth is and which vowel it makes -> mouth_aaa ... mouth_ooo.

Per audio block (``block_ms``, at most 32 ms):

* **open**: the block's level in dBFS above a noise floor (the quietest recent level, never below
  ``noise_floor_db``), through a gate ramp (``gate_db`` .. ``full_db`` above the floor) and an
  attack/release follower (``attack_ms``/``release_ms``), so syllables open fast and close
  without flicker;
* **vowel**: uLipSync's method (hecomi/uLipSync): pre-emphasis, a Hamming window over the last
  ``WINDOW`` samples, a mel filterbank, the log, a DCT, and 12 MFCCs (c1..c12; c0 is the level,
  which ``open`` already has). The nearest of five A/I/U/E/O templates by cosine distance wins,
  softly: weights fall off with the distance over ``vowel_softness``;
* **speaker normalisation** (cepstral mean normalisation, ``vowel_adapt_s``): before the cosine,
  the block's MFCCs lose a running mean of the speaker's voiced blocks and the templates lose
  theirs, so what every vowel of a voice (and a microphone) shares, its spectral tilt and
  colouring, no longer counts; only how the vowels differ from each other. The running mean
  starts at the templates' own mean (worth ``PRIOR_S`` of voice), so the first syllable is
  heard as without it, and follows the speaker over the next seconds of speech. A steady held
  vowel moves the mean straight towards itself, which keeps its direction from the mean: held
  vowels are heard as at the start.

The shipped templates are made here, not recorded: textbook formants of the Japanese vowels
(``_FORMANTS``) voiced by a formant synthesiser (glottal source, lip radiation, F1..F5) at
several vocal-tract lengths and pitches, analysed like any voice and averaged. They suit most
voices roughly; ``thacam voice calibrate`` records the user's own five vowels into the profile's
``[lipsync]`` templates, which then replace them.

How the audio's mouth and the webcam's combine (``blend``), see :func:`blend_mouth`.

Pure numpy + thacam.pose. Must not import torch, cv2, mediapipe or sounddevice.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np

from .pose import Pose
from .retarget import ramp
from .settings import Settings, setting

__all__ = ["LipSyncSettings", "Speech", "LipSync", "VOWELS", "MOUTH_PARAMS", "SAMPLE_RATE",
           "BLEND_MODES", "mfcc", "default_templates", "templates_from", "blend_mouth",
           "analyse", "resample", "heard_vowel", "calibrate"]

SAMPLE_RATE = 16000             # every input is analysed at this rate (as uLipSync does)
PRIOR_S = 0.5                   # the templates' mean weighs as much as this much voice (s)
WINDOW = 512                    # 32 ms: long enough for two pitch periods of a low voice
N_MFCC = 12
N_MEL = 26
VOWELS = ("a", "i", "u", "e", "o")
MOUTH_PARAMS = ("mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee", "mouth_ooo")
BLEND_MODES = ("auto", "audio", "face", "max")

# (F1, F2, F3) Hz, average adult Japanese vowels (Keating & Huffman 1984; Hirahara & Kato 1992
# report values within ~10% of these for male speakers; female ones are ~15% higher).
_FORMANTS = {"a": (750, 1200, 2600), "i": (300, 2300, 3000), "u": (350, 1300, 2400),
             "e": (480, 1900, 2600), "o": (500, 850, 2500)}

tunable = functools.partial(setting, live=True)


def _template(help: str):
    return tunable((), -1.0, 1.0, help=help)


@dataclass(frozen=True)
class LipSyncSettings(Settings):
    """Lip sync from the microphone or a recording's sound: level gate, envelope, vowel
    templates, and how the audio's mouth combines with the webcam's."""

    block_ms: float = setting(
        20.0, 5.0, 32.0, help="audio block (ms) analysed at a time; smaller = less latency, more "
        "CPU (takes effect at the next start)")
    noise_floor_db: float = tunable(
        -60.0, -100.0, -10.0, help="level (dBFS) always counted as silence; the floor also "
        "follows the quietest recent level above it")
    floor_rise_db_s: float = tunable(
        1.0, 0.0, 20.0, help="how fast (dB per second) the tracked floor creeps up in steady "
        "sound (0 = fixed at noise_floor_db)")
    gate_db: float = tunable(
        12.0, 0.0, 60.0, help="level above the floor where the mouth starts to open")
    full_db: float = tunable(
        30.0, 1.0, 80.0, help="level above the floor for a fully open mouth")
    gain: float = tunable(
        1.0, 0.0, 4.0, help="openness multiplier after the gate (clipped at max_open)")
    max_open: float = tunable(1.0, 0.0, 1.0, help="most the mouth opens from sound")
    attack_ms: float = tunable(
        40.0, 1.0, 500.0, help="time constant (ms) of the mouth opening as sound starts")
    release_ms: float = tunable(
        120.0, 1.0, 2000.0, help="time constant (ms) of the mouth closing as sound stops")
    pre_emphasis: float = tunable(
        0.97, 0.0, 0.99, help="pre-emphasis before the MFCCs (lifts the formants over the pitch)")
    vowel_softness: float = tunable(
        0.05, 0.001, 1.0, help="cosine distance over which a farther vowel template loses "
        "weight (small = the nearest vowel alone)")
    vowel_ms: float = tunable(
        30.0, 1.0, 500.0, help="time constant (ms) of the vowel weights' smoothing")
    vowel_adapt_s: float = tunable(
        2.0, 0.0, 60.0, help="time constant (s of voice) of the speaker's running mean MFCC, "
        "taken off before matching the templates (centred on their own mean): adapts the "
        "vowels to the voice and microphone; 0 = off (raw cosine, as uLipSync)")
    blend: str = tunable(
        "auto", choices=BLEND_MODES, help="webcam mouth + audio mouth: auto = the audio leads "
        "while voiced, the face while silent; audio = the audio's mouth only; face = the "
        "face's mouth, the audio's only while no face is seen; max = the larger of each shape. "
        "With no face seen the audio drives the mouth alone in every mode")
    blend_lead: float = tunable(
        0.2, 0.01, 1.0, help="(blend = auto) audio openness at which the audio fully leads")
    template_a: tuple[float, ...] = _template(
        "the user's A: 12 MFCCs (unit length) from `thacam voice calibrate`; empty = built in")
    template_i: tuple[float, ...] = _template("the user's I (as template_a)")
    template_u: tuple[float, ...] = _template("the user's U (as template_a)")
    template_e: tuple[float, ...] = _template("the user's E (as template_a)")
    template_o: tuple[float, ...] = _template("the user's O (as template_a)")

    def check(self) -> None:
        if not self.gate_db < self.full_db:
            raise self._bad("full_db", f"full_db = {self.full_db!r} must be greater than "
                            f"gate_db = {self.gate_db!r} (the ramp would be empty)")
        for v in VOWELS:
            t = getattr(self, f"template_{v}")
            if t and len(t) != N_MFCC:
                raise self._bad(f"template_{v}", f"expected {N_MFCC} numbers (or none), got "
                                f"{len(t)}; run `thacam voice calibrate` again")

    @property
    def calibrated(self) -> bool:
        return all(getattr(self, f"template_{v}") for v in VOWELS)

    def templates(self) -> np.ndarray:
        """(5, 12) unit rows: the calibrated templates where all five are set, else built in."""
        if self.calibrated:
            return _unit(np.array([getattr(self, f"template_{v}") for v in VOWELS], np.float64))
        return default_templates(self.pre_emphasis)

    def with_templates(self, templates: np.ndarray) -> "LipSyncSettings":
        rows = _unit(np.asarray(templates, np.float64))
        return replace(self, **{f"template_{v}": tuple(round(float(x), 5) for x in row)
                                for v, row in zip(VOWELS, rows)})


@dataclass(frozen=True)
class Speech:
    """One audio block's analysis. ``t_ms`` is when the block ended (source clock)."""

    t_ms: float
    open: float                         # 0..1 after gate, gain and envelope
    vowels: tuple[float, ...]           # weights over a, i, u, e, o, summing to 1
    level_db: float                     # the block's level (dBFS)
    voiced: bool                        # above the gate this block

    def mouth(self) -> dict[str, float]:
        """mouth_aaa .. mouth_ooo: the openness shared out by the vowel weights."""
        return {name: self.open * w for name, w in zip(MOUTH_PARAMS, self.vowels)}


# --------------------------------------------------------------------------------- features

def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=4)
def _mel_bank(n_fft: int = WINDOW, sr: int = SAMPLE_RATE, n_mel: int = N_MEL) -> np.ndarray:
    def mel(f):
        return 1127.0 * np.log1p(np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * np.expm1(np.asarray(m) / 1127.0)
    # 80 Hz - 7.6 kHz: below is the pitch's own energy, above the anti-alias roll-off.
    edges = hz(np.linspace(mel(80.0), mel(7600.0), n_mel + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    bank = np.zeros((n_mel, freqs.size))
    for k in range(n_mel):
        lo, mid, hi = edges[k:k + 3]
        bank[k] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return bank


@functools.lru_cache(maxsize=1)
def _dct() -> np.ndarray:
    n = np.arange(N_MEL)
    return np.array([np.cos(math.pi * k * (2 * n + 1) / (2 * N_MEL)) for k in range(1, N_MFCC + 1)])


def mfcc(window: np.ndarray, pre_emphasis: float = 0.97) -> np.ndarray:
    """12 MFCCs (c1..c12) of one window of SAMPLE_RATE audio, as a unit vector (level-free)."""
    x = np.asarray(window, np.float64)[-WINDOW:]
    if x.size < WINDOW:
        x = np.pad(x, (WINDOW - x.size, 0))
    x = np.append(x[0], x[1:] - pre_emphasis * x[:-1]) * np.hamming(WINDOW)
    power = np.abs(np.fft.rfft(x)) ** 2
    logmel = np.log10(_mel_bank() @ power + 1e-10)
    return _unit(_dct() @ logmel)


def _level_db(block: np.ndarray) -> float:
    return 10.0 * math.log10(float(np.mean(np.square(block, dtype=np.float64))) + 1e-12)


def resample(samples: np.ndarray, rate: float, to: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float audio at ``rate`` -> ``to`` Hz (linear; the formants sit far below Nyquist)."""
    x = np.asarray(samples, np.float32)
    if int(rate) == to or x.size == 0:
        return x
    n = int(round(x.size * to / rate))
    return np.interp(np.arange(n) * (rate / to), np.arange(x.size), x).astype(np.float32)


# The built-in templates average synthetic voices over these vocal-tract lengths (formants scaled:
# a long adult tract .. a child's) and pitches (low male .. high female), so they suit no one voice.
_TRACT_SCALES = (0.9, 1.0, 1.1, 1.2)
_PITCHES = (110.0, 180.0, 250.0)
# F4, F5 (Hz) and the bandwidths (Hz) of F1..F5: a textbook cascade synthesiser's defaults.
_HIGH_FORMANTS = (3500.0, 4500.0)
_BANDWIDTHS = (80.0, 100.0, 150.0, 250.0, 300.0)


def _synth_vowel(formants: Sequence[float], f0: float = 120.0, seconds: float = 0.1
                 ) -> np.ndarray:
    """A steady vowel, as a sum of its voice's harmonics: a glottal source (-12 dB/octave), the
    lips' radiation (+6 dB/octave) and five two-pole formant resonators (F4, F5 fixed)."""
    h = np.arange(1, int(7800.0 / f0) + 1)
    w = 2 * np.pi * h * f0 / SAMPLE_RATE
    z = np.exp(-1j * w)
    response = (1 - z) / (1 - 0.99 * z) ** 2
    for f, bw in zip((*formants, *_HIGH_FORMANTS), _BANDWIDTHS):
        r = math.exp(-math.pi * bw / SAMPLE_RATE)
        a1 = 2 * r * math.cos(2 * math.pi * f / SAMPLE_RATE)
        response = response * (1 - a1 + r * r) / (1 - a1 * z + r * r * z * z)
    t = np.arange(int(seconds * SAMPLE_RATE))
    x = np.abs(response) @ np.cos(w[:, None] * t + np.angle(response)[:, None])
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@functools.lru_cache(maxsize=4)
def default_templates(pre_emphasis: float = 0.97) -> np.ndarray:
    """(5, 12): the built-in templates, from synthetic vowels at textbook formants, averaged over
    vocal-tract lengths and pitches."""
    return np.stack([_unit(np.mean([
        templates_from(_synth_vowel([s * f for f in _FORMANTS[v]], f0), pre_emphasis)
        for s in _TRACT_SCALES for f0 in _PITCHES], axis=0)) for v in VOWELS])


def templates_from(samples: np.ndarray, pre_emphasis: float = 0.97) -> np.ndarray:
    """One vowel's template: the mean MFCC over its loud windows (SAMPLE_RATE audio)."""
    x = np.asarray(samples, np.float32)
    hop = WINDOW // 2
    frames = [x[i:i + WINDOW] for i in range(0, x.size - WINDOW + 1, hop)]
    if not frames:
        raise ValueError("too little audio for a vowel template")
    levels = np.array([_level_db(f) for f in frames])
    loud = [f for f, lv in zip(frames, levels) if lv >= levels.max() - 15.0]
    return _unit(np.mean([mfcc(f, pre_emphasis) for f in loud], axis=0))


# --------------------------------------------------------------------------------- analyser

class LipSync:
    """Audio in (any block size, SAMPLE_RATE mono float) -> one Speech per ``block_ms``."""

    def __init__(self, settings: LipSyncSettings | None = None):
        self.settings = (settings or LipSyncSettings()).validate()
        self._set_templates(self.settings.templates())
        self.block = max(1, int(round(self.settings.block_ms * SAMPLE_RATE / 1000.0)))
        self.reset()

    def _set_templates(self, templates: np.ndarray) -> None:
        self._templates = templates
        self._prior = templates.mean(axis=0)
        self._centred = _unit(templates - self._prior)

    def reset(self) -> None:
        self._ring = np.zeros(WINDOW, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._floor: float | None = None
        self._open = 0.0
        self._vowels = np.array([1.0, 0, 0, 0, 0])
        self._voiced = False
        self._t_ms = 0.0
        self._mean = self._prior.copy()     # the speaker's running mean MFCC
        self._heard = 0                     # voiced blocks it has seen

    def apply_settings(self, settings: LipSyncSettings) -> None:
        """Live tuning; the block size keeps its value until the next start."""
        self.settings = replace(settings, block_ms=self.settings.block_ms).validate()
        self._set_templates(self.settings.templates())    # the speaker's mean stays theirs

    def feed(self, samples: np.ndarray, t_ms: float | None = None) -> list[Speech]:
        """Append audio; returns a Speech for each whole block completed. ``t_ms`` is the time
        of the first sample given (default: right after the last one fed)."""
        x = np.asarray(samples, np.float32).reshape(-1)
        if t_ms is not None:
            self._t_ms = t_ms - self._pending.size * 1000.0 / SAMPLE_RATE
        buf = np.concatenate([self._pending, x])
        out = []
        n = buf.size // self.block
        for k in range(n):
            out.append(self._step(buf[k * self.block:(k + 1) * self.block]))
        self._pending = buf[n * self.block:]
        return out

    def _step(self, block: np.ndarray) -> Speech:
        s = self.settings
        dt_ms = block.size * 1000.0 / SAMPLE_RATE
        self._t_ms += dt_ms
        self._ring = np.concatenate([self._ring, block])[-WINDOW:]
        level = _level_db(block)
        # Starting at the fixed floor, not at the first level: a recording may open mid-word.
        floor = self._floor if self._floor is not None else s.noise_floor_db
        floor = min(level, floor + s.floor_rise_db_s * dt_ms / 1000.0)
        self._floor = floor
        above = level - max(floor, s.noise_floor_db)
        target = min(s.max_open, s.gain * ramp(above, s.gate_db, s.full_db))
        voiced = above > s.gate_db
        tau = s.attack_ms if target > self._open else s.release_ms
        self._open += (target - self._open) * (1.0 - math.exp(-dt_ms / tau))
        if voiced:
            d = self._distances(mfcc(self._ring, s.pre_emphasis), dt_ms)
            w = np.exp(-(d - d.min()) / s.vowel_softness)
            w /= w.sum()
            # A syllable after silence starts on its own vowel, not on the last one's.
            k = 1.0 - math.exp(-dt_ms / s.vowel_ms) if self._voiced else 1.0
            self._vowels += (w - self._vowels) * k
        self._voiced = voiced
        vowels = self._vowels / self._vowels.sum()
        return Speech(self._t_ms, float(self._open), tuple(float(v) for v in vowels), level,
                      voiced)


    def _distances(self, c: np.ndarray, dt_ms: float) -> np.ndarray:
        """Cosine distances of one voiced block's MFCCs to the five templates."""
        adapt_s = self.settings.vowel_adapt_s
        if adapt_s <= 0.0:
            return 1.0 - self._templates @ c
        # An exponential mean that starts as the mean of the prior (PRIOR_S of voice) and the
        # blocks heard so far, then forgets over adapt_s.
        self._heard += 1
        k = max(1.0 - math.exp(-dt_ms / (1000.0 * adapt_s)),
                1.0 / (PRIOR_S * 1000.0 / dt_ms + self._heard))
        self._mean += (c - self._mean) * k
        return 1.0 - self._centred @ _unit(c - self._mean)


def analyse(samples: np.ndarray, settings: LipSyncSettings | None = None,
            t0_ms: float = 0.0) -> Iterator[Speech]:
    """A whole recording (SAMPLE_RATE mono) -> its Speech blocks, in order."""
    sync = LipSync(settings)
    yield from sync.feed(samples, t0_ms)


def heard_vowel(samples: np.ndarray, settings: LipSyncSettings | None = None) -> str | None:
    """The vowel most voiced blocks of a recording are heard as (None: nothing voiced)."""
    votes = [int(np.argmax(s.vowels)) for s in analyse(samples, settings) if s.voiced]
    return VOWELS[max(set(votes), key=votes.count)] if votes else None


def mixed_confusion(vowels: dict[str, np.ndarray], settings: LipSyncSettings | None = None,
                    rounds: int = 4, seed: int = 0, gap_s: float = 0.2) -> np.ndarray:
    """How one analyser hears mixed speech: the five recordings (keyed a, i, u, e, o) ``rounds``
    times in shuffled orders, ``gap_s`` of silence apart, as a microphone hears a speaker (the
    speaker normalisation needs the mix). (5, 5) counts of voiced blocks, said x heard."""
    rng = np.random.default_rng(seed)
    gap = np.zeros(int(gap_s * SAMPLE_RATE), np.float32)
    parts, labels = [], []
    for _ in range(rounds):
        for i in rng.permutation(len(VOWELS)):
            x = vowels[VOWELS[i]]
            parts += [x, gap]
            labels += [np.full(x.size, i), np.full(gap.size, -1)]
    label = np.concatenate(labels)
    table = np.zeros((len(VOWELS), len(VOWELS)), int)
    for s in analyse(np.concatenate(parts), settings):
        said = label[min(int(s.t_ms * SAMPLE_RATE / 1000) - 1, label.size - 1)]
        if s.voiced and said >= 0:
            table[said, int(np.argmax(s.vowels))] += 1
    return table


def calibrate(recordings: dict[str, np.ndarray], settings: LipSyncSettings
              ) -> LipSyncSettings:
    """The user's five held vowels (SAMPLE_RATE audio, keyed a, i, u, e, o) -> settings whose
    templates are theirs.

    Raises:
        ValueError: a vowel is missing or too short.
    """
    missing = [v for v in VOWELS if v not in recordings]
    if missing:
        raise ValueError(f"no recording of {', '.join(missing)}")
    return settings.with_templates(np.stack(
        [templates_from(recordings[v], settings.pre_emphasis) for v in VOWELS]))


# --------------------------------------------------------------------------------- blending

def blend_mouth(pose: Pose, speech: Speech | None, face: bool,
                settings: LipSyncSettings) -> Pose:
    """The mouth to render from the pose's own (the webcam's, or idle's) and the audio's.

    The rule (``blend``): with no face seen, the audio's mouth alone. With a face: ``auto``
    weighs the audio by how open it is (fully at ``blend_lead``), so the audio leads while voiced
    and the webcam's mouth shows while silent (a smile, a pout); ``audio`` always the audio's;
    ``face`` always the webcam's; ``max`` the larger of the two per shape. No speech (no audio
    source): the pose as it is.
    """
    if speech is None or (face and settings.blend == "face"):
        return pose
    audio = speech.mouth()
    out = pose.copy()
    for name in MOUTH_PARAMS:
        own = pose[name]
        if not face or settings.blend == "audio":
            out[name] = audio[name]
        elif settings.blend == "max":
            out[name] = max(own, audio[name])
        else:
            w = ramp(speech.open, 0.0, settings.blend_lead)
            out[name] = own + w * (audio[name] - own)
    return out
