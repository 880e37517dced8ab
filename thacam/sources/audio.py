"""Sound as a face source: the microphone (``--mic``, ``--source mic``) and recordings' sound.

``MicFaces`` hears a microphone through sounddevice (PortAudio) and turns each block into a
lipsync.Speech in PortAudio's own callback thread (the analysis takes well under a millisecond
a block). Alone it is the mic-only mode: every sample says "no face", so the avatar idles, and
the mouth follows ``speech()``. Wrapped around another source (the webcam) it hands that
source's samples through and adds the sound, which the pipeline blends into the face's mouth
(lipsync.blend_mouth).

Recordings (``thacam track --audio``, a video's own sound) are read with PyAV, which bundles
FFmpeg's libraries: one pip package decodes WAV, MP3, M4A and the sound of any video, with no
system program to install. Must not import torch, cv2 or mediapipe.
"""

from __future__ import annotations

import bisect
import logging
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..capture import Latest, now_ms
from ..errors import AudioUnavailable
from ..lipsync import SAMPLE_RATE, LipSync, LipSyncSettings, Speech, analyse, resample
from . import FaceSample, FaceSource, SourceContext, SourceStats

__all__ = ["MicFaces", "read_audio", "has_audio", "speech_track", "audio_samples",
           "with_speech", "input_devices", "record"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ recordings

def read_audio(path: Path | str) -> np.ndarray:
    """The sound of an audio or video file, mono float32 at lipsync.SAMPLE_RATE.

    Raises:
        AudioUnavailable: no such file, not a media file, or it has no sound.
    """
    import av
    path = Path(path)
    if not path.is_file():
        raise AudioUnavailable(f"--audio {path}: no such file; give a WAV/MP3/M4A or a video "
                               "with sound")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioUnavailable(f"{path}: the file has no sound; give --audio FILE")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            chunks = []
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise AudioUnavailable(f"{path}: cannot read its sound ({exc}); give a WAV/MP3/M4A or "
                               "a video with sound") from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def has_audio(path: Path | str) -> bool:
    """Whether a media file has a sound track (False for what PyAV cannot open)."""
    import av
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return False


def speech_track(samples: np.ndarray, settings: LipSyncSettings | None = None) -> list[Speech]:
    return list(analyse(samples, settings))


def _heard_by(track: Sequence[Speech], ends: list[float], t_ms: float) -> Speech | None:
    """The newest block that ended by ``t_ms`` (what a live run would have heard by then)."""
    k = bisect.bisect_right(ends, t_ms)
    return track[k - 1] if k else None


def audio_samples(track: Sequence[Speech], fps: float = 30.0) -> Iterator[FaceSample]:
    """Sound alone -> a sample every 1/fps s (no face: the animator idles, the sound moves the
    mouth), for the length of the recording."""
    end = track[-1].t_ms if track else 0.0
    n = int(end * fps / 1000.0) + 1
    times = [i * 1000.0 / fps for i in range(n)]
    ends = [s.t_ms for s in track]
    for i, t in enumerate(times):
        yield FaceSample(t, None, i, speech=_heard_by(track, ends, t))


def with_speech(samples: Iterable[FaceSample], track: Sequence[Speech]) -> Iterator[FaceSample]:
    """Face samples with the sound heard by each one's time."""
    ends = [s.t_ms for s in track]
    for sample in samples:
        yield FaceSample(sample.t_ms, sample.obs, sample.index, sample.frame, sample.sense_ms,
                         _heard_by(track, ends, sample.t_ms))


# ------------------------------------------------------------------------------ microphone

def _sounddevice():
    try:
        import sounddevice
    except OSError:         # the module loads, PortAudio itself is missing
        raise AudioUnavailable("the microphone needs the PortAudio library (Debian/Ubuntu: sudo "
                               "apt install libportaudio2; or run scripts/setup)") from None
    return sounddevice


def input_devices() -> list[tuple[int, str, float]]:
    """(index, name, default sample rate) of every device with an input."""
    sd = _sounddevice()
    return [(i, d["name"], float(d["default_samplerate"]))
            for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def _pick_device(arg: str | None) -> tuple[int | None, str, float]:
    devices = input_devices()
    if not devices:
        raise AudioUnavailable("no microphone found (no audio input device); plug one in, or "
                               "check `thacam voice devices`")
    if arg is None or arg == "":
        sd = _sounddevice()
        default = sd.default.device[0]
        for dev in devices:
            if dev[0] == default:
                return dev
        return devices[0]
    for dev in devices:
        if (arg.isdigit() and dev[0] == int(arg)) or arg.lower() in dev[1].lower():
            return dev
    names = "; ".join(f"{i}: {name}" for i, name, _ in devices)
    raise AudioUnavailable(f"--mic {arg}: no such input device; the inputs are: {names}")


class MicFaces(FaceSource):
    """A microphone, alone (``inner`` None: mic-only) or beside another face source."""

    def __init__(self, device: str | None = None, settings: LipSyncSettings | None = None,
                 inner: FaceSource | None = None):
        self.device_arg = device
        self.sync = LipSync(settings)
        self.inner = inner
        self._speech: Latest[Speech] = Latest()
        self._seq = 0
        self._stream = None
        self._rate = float(SAMPLE_RATE)
        self._blocks = 0
        self.device_name = "microphone"

    @classmethod
    def from_spec(cls, arg: str | None, ctx: SourceContext) -> "MicFaces":
        """``--source mic`` (the default input) or ``mic:DEVICE`` (index or part of a name)."""
        return cls(arg, ctx.lipsync)

    @property
    def description(self) -> str:      # type: ignore[override]
        mic = f"microphone {self.device_name}"
        return f"{self.inner.description} + {mic}" if self.inner is not None else mic

    def check(self) -> None:
        _, self.device_name, self._rate = _pick_device(self.device_arg)
        if self.inner is not None:
            self.inner.check()

    def feed(self, samples: np.ndarray, rate: float | None = None) -> list[Speech]:
        """The audio callback's work: samples (mono, at ``rate``) -> the Speech blocks they
        complete, the newest kept for ``speech()``. Tests call it with recorded sound."""
        t_end = now_ms()
        x = resample(np.asarray(samples, np.float32).reshape(-1), rate or self._rate)
        out = self.sync.feed(x, t_end - x.size * 1000.0 / SAMPLE_RATE)
        for s in out:
            self._speech.put(s)
        self._blocks += len(out)
        return out

    def _callback(self, indata, frames, time_info, status) -> None:
        if status:
            log.debug("microphone: %s", status)
        self.feed(indata[:, 0], self._rate)

    def open(self) -> "MicFaces":
        sd = _sounddevice()
        index, self.device_name, self._rate = _pick_device(self.device_arg)
        block = max(1, int(round(self._rate * self.sync.settings.block_ms / 1000.0)))
        try:
            self._stream = sd.InputStream(device=index, channels=1, samplerate=self._rate,
                                          blocksize=block, dtype="float32",
                                          callback=self._callback)
            self._stream.start()
        except sd.PortAudioError as exc:
            raise AudioUnavailable(f"cannot open the microphone {self.device_name!r} ({exc}); "
                                   "pick another with --mic DEVICE (`thacam voice devices` "
                                   "lists them)") from None
        log.info("microphone: %s at %g Hz, %d-sample blocks", self.device_name, self._rate, block)
        if self.inner is not None:
            self.inner.open()
        return self

    def close(self) -> None:
        try:
            if self._stream is not None:
                self._stream.stop()
                self._stream.close()
                self._stream = None
        finally:
            if self.inner is not None:
                self.inner.close()

    def wake(self) -> None:
        self._speech.wake()
        if self.inner is not None:
            self.inner.wake()

    def next(self, timeout: float) -> FaceSample | None:
        if self.inner is not None:
            sample = self.inner.next(timeout)
            if sample is None:
                return None
            return FaceSample(sample.t_ms, sample.obs, sample.index, sample.frame,
                              sample.sense_ms, self._speech.newest())
        got = self._speech.wait_newer(self._seq, timeout)
        if got is None:
            return None
        self._seq, speech = got
        return FaceSample(speech.t_ms, None, self._seq - 1, speech=speech)

    def speech(self) -> Speech | None:
        return self._speech.newest()

    def apply_settings(self, settings: LipSyncSettings) -> None:
        self.sync.apply_settings(settings)

    @property
    def error(self) -> BaseException | None:      # type: ignore[override]
        return self.inner.error if self.inner is not None else None

    @property
    def connected(self) -> bool:
        return self.inner.connected if self.inner is not None else True

    @property
    def newest_index(self) -> int | None:
        if self.inner is not None:
            return self.inner.newest_index
        return self._speech.seq - 1 if self._speech.seq else None

    @property
    def mirror(self) -> bool:
        return self.inner.mirror if self.inner is not None else False

    def set_mirror(self, mirror: bool) -> bool:
        return self.inner.set_mirror(mirror) if self.inner is not None else False

    def stats(self) -> SourceStats:
        return self.inner.stats() if self.inner is not None else SourceStats(self._blocks)

    def status_rows(self) -> list[dict]:
        return self.inner.status_rows() if self.inner is not None else super().status_rows()


def record(device: str | None, seconds: float) -> np.ndarray:
    """``seconds`` of the microphone, mono float32 at lipsync.SAMPLE_RATE (blocks until done).

    Raises:
        AudioUnavailable: no microphone, or it cannot be opened.
    """
    sd = _sounddevice()
    index, name, rate = _pick_device(device)
    try:
        x = sd.rec(int(seconds * rate), samplerate=rate, channels=1, dtype="float32",
                   device=index)
        sd.wait()
    except sd.PortAudioError as exc:
        raise AudioUnavailable(f"cannot record from the microphone {name!r} ({exc}); pick "
                               "another with --mic DEVICE (`thacam voice devices` lists them)") \
            from None
    return resample(x[:, 0], rate)
